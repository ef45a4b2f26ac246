"""Collect: ONE Scrapy spider and one persistence pipeline; per-platform pure extractors.

Scrapy is imported lazily by the modules that need it, never by this package's ``__init__``.
"""
