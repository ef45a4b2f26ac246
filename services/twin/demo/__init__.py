"""The bundled sample: a fictional owner's writing, served by local sites that mimic each platform.

``make demo``, the tests and the benchmarks crawl these sites on 127.0.0.1 (this machine reaches
no real platform). Each site renders its platform's real page structure from the content in
``content/*.yaml`` on every request, so a test can edit, add or remove an item and re-crawl.
"""
