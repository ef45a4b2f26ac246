"""Crawl throughput: our spider + extractor + Postgres pipeline vs a bare Scrapy spider, same run.

A local Substack-like site with N posts (default 600) is served on 127.0.0.1. Two worker
processes crawl it (Scrapy's reactor runs once per process):

- ``ours``: the real ``run_crawl`` on a one-source profile: archive API pages, post pages,
  extraction, the address guard, and upserts into a real embedded Postgres;
- ``bare``: a plain ``scrapy.Spider`` fetching the very same URLs with the same concurrency and
  robots.txt settings, parsing and storing nothing.

Each worker times its own crawl (reactor start to stop). The last line printed is JSON:
``{"pages": ..., "ours_pages_per_s": ..., "bare_pages_per_s": ..., "ratio": ours/bare}``.
Run: ``make bench-crawl`` or ``.venv/bin/python bench/crawl.py --posts 600``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twin.demo.content import Article, load_demo_content
from twin.demo.server import SiteServer
from twin.demo.sites.substack import SubstackSite

PAGE_SIZE = 12  # the archive API page size the extractor asks for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic_posts(n: int) -> list[Article]:
    """N distinct posts made from the sample's real prose (distinct slugs, titles and bodies)."""
    seeds = load_demo_content().substack + load_demo_content().medium
    posts = []
    for i in range(n):
        seed = seeds[i % len(seeds)]
        posts.append(
            Article(
                slug=f"{seed.slug}-{i}",
                title=f"{seed.title} (part {i})",
                body=f"{seed.body}\n\nThis is instalment {i} of the series.",
                published="2025-01-01",
                subtitle=seed.subtitle,
                tags=seed.tags,
            )
        )
    return posts


def worker_ours(base: str, dsn: str) -> dict[str, Any]:
    from twin import wiring
    from twin.adapters.postgres import PostgresDocumentStore, connect, migrate
    from twin.crawler.runner import run_crawl
    from twin.domain.profile import parse_profile
    from twin.settings import Settings

    profile = parse_profile(
        {
            "apiVersion": "llmtwin.dev/v1alpha1",
            "kind": "TwinProfile",
            "metadata": {"name": "bench"},
            "spec": {
                "owner": {"displayName": "Bench"},
                "sources": [{"url": f"{base}/", "platform": "substack"}],
                "crawl": {"maxItems": 100000},
            },
        }
    )
    settings = Settings(crawler={"allowed_networks": ["127.0.0.1/32"], "max_items_per_run": 100000})
    with connect(dsn) as conn:
        migrate(conn)
        store = PostgresDocumentStore(conn)
        start = time.perf_counter()
        result = run_crawl(
            profile,
            store,
            config=settings.crawler,
            options=wiring.extract_options(settings),
            guard=wiring.address_guard(settings),
        )
        elapsed = time.perf_counter() - start
    (report,) = result.reports
    assert report.errors == [], report.errors
    return {"seconds": elapsed, "stored": report.stored, "new": report.new}


def worker_bare(urls: list[str]) -> dict[str, Any]:
    import scrapy
    from scrapy.crawler import CrawlerProcess

    from twin.crawler.runner import scrapy_settings
    from twin.settings import Settings

    ours = scrapy_settings(Settings().crawler)
    same = {
        k: ours[k]
        for k in (
            "USER_AGENT",
            "ROBOTSTXT_OBEY",
            "CONCURRENT_REQUESTS",
            "CONCURRENT_REQUESTS_PER_DOMAIN",
            "DOWNLOAD_DELAY",
            "DOWNLOAD_TIMEOUT",
            "AUTOTHROTTLE_ENABLED",
            "AUTOTHROTTLE_START_DELAY",
            "AUTOTHROTTLE_MAX_DELAY",
            "AUTOTHROTTLE_TARGET_CONCURRENCY",
            "TWISTED_REACTOR",
        )
    }
    fetched = {"pages": 0}

    class Bare(scrapy.Spider):
        name = "bare"

        async def start(self) -> Any:
            for url in urls:
                yield scrapy.Request(url, callback=self.parse, dont_filter=True)

        def parse(self, response: Any) -> None:
            fetched["pages"] += 1

    process = CrawlerProcess({**same, "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False})
    process.crawl(Bare)
    start = time.perf_counter()
    process.start()
    return {"seconds": time.perf_counter() - start, "pages": fetched["pages"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--worker", choices=["ours", "bare"])
    parser.add_argument("--base")
    parser.add_argument("--dsn")
    parser.add_argument("--urls")
    args = parser.parse_args()
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.base, args.dsn)))
        return
    if args.worker == "bare":
        print(json.dumps(worker_bare(json.loads(Path(args.urls).read_text()))))
        return

    from twin.adapters.embedded_postgres import EmbeddedPostgres

    content = load_demo_content()
    content.substack = synthetic_posts(args.posts)
    site = SubstackSite(content, paid_posts=[])
    with tempfile.TemporaryDirectory() as tmp, SiteServer(site) as server:
        pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
        dsn = pg.start()
        try:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            print(f"crawling {args.posts} posts through our spider and pipeline...", file=sys.stderr)
            ours = json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--worker", "ours", "--base", server.base_url, "--dsn", dsn],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                ).stdout.splitlines()[-1]
            )
            # The bare spider fetches exactly the pages ours fetched (robots.txt aside), in the same order.
            pages = [
                r.path + ("?" + "&".join(f"{k}={v[0]}" for k, v in r.query.items()) if r.query else "")
                for r in server.requests
                if r.path != "/robots.txt"
            ]
            urls_file = Path(tmp) / "urls.json"
            urls_file.write_text(json.dumps([server.base_url + p for p in pages]))
            print(f"fetching the same {len(pages)} pages with a bare Scrapy spider...", file=sys.stderr)
            bare = json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--worker", "bare", "--urls", str(urls_file)],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                ).stdout.splitlines()[-1]
            )
        finally:
            pg.stop()
    assert ours["stored"] == args.posts, ours
    assert bare["pages"] == len(pages), bare
    ours_rate = len(pages) / ours["seconds"]
    bare_rate = bare["pages"] / bare["seconds"]
    print(
        json.dumps(
            {
                "pages": len(pages),
                "documents_stored": ours["stored"],
                "ours_seconds": round(ours["seconds"], 3),
                "bare_seconds": round(bare["seconds"], 3),
                "ours_pages_per_s": round(ours_rate, 1),
                "bare_pages_per_s": round(bare_rate, 1),
                "ratio": round(ours_rate / bare_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
