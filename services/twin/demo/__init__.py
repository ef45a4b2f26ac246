"""The bundled sample: a fictional owner's writing, served by local sites that mimic each platform.

``make demo``, the tests and the benchmarks crawl these sites on 127.0.0.1 (this machine reaches
no real platform). Each site renders its platform's real page structure from the content in
``content/*.yaml`` on every request, so a test can edit, add or remove an item and re-crawl.

Where this lives, and why: the sites are test and demo data, but ``twin demo`` serves them, so
they ship inside the installed package (``twin.demo``) rather than under ``tests/``. Within the
package only the ``twin demo`` command (``twin.cli.demo``) imports them: the crawler and the
extractors know only the real platforms' surfaces. Pages that only tests need (hostile sites, the
browser-guard probe) live in ``tests/support``. The replicas are written from the platforms'
observed behaviour (feed shapes, JSON-LD types, paywall cuts, API objects), never copied from
their pages.
"""
