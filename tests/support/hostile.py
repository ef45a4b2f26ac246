"""A site of bad pages: each route reproduces one way the web goes wrong."""

from __future__ import annotations

import json

from twin.demo.server import Request, Response

GOOD_ARTICLE = """<!doctype html><html><head><title>A perfectly normal article</title>
<meta name="author" content="Alice Moreau"></head><body><nav>Home · About</nav><main><article>
<h1>A perfectly normal article</h1>
<p>Idempotency is the property that lets you press the button twice without fear. I learned this the
hard way, at three in the morning, with a pager that would not stop buzzing and a queue that would
not stop redelivering.</p>
<p>Every consumer I write now starts from one question: what happens when this message arrives again?
If the answer is anything other than nothing, the design is not finished.</p>
</article></main><footer>© Alice</footer></body></html>"""


# A Medium-shaped author page (crawled with a browser) whose script first requests an internal
# address, with fetch() and with a <script> element, and only then lists the one story. The story
# is reached only if the page was rendered and its script ran on past the refused requests.
PROBING_PROFILE = """<!doctype html><html><head><title>Alice - Medium</title></head><body>
<div id="stories">Loading…</div>
<script>
(async function () {
  const probe = %(probe)s;
  const list = document.getElementById("stories");
  let outcome = "reached";
  try { await fetch(probe, {mode: "no-cors", cache: "no-store"}); } catch (e) { outcome = "refused"; }
  const tag = document.createElement("script");
  tag.src = probe + ".js";
  document.head.appendChild(tag);
  list.setAttribute("data-probe", outcome);
  list.textContent = "";
  const link = document.createElement("a");
  link.href = "/@alice/a-page-whose-script-probes-0123456789ab";
  link.textContent = "A perfectly normal article";
  list.appendChild(link);
})();
</script></body></html>"""
PROBED_STORY_PATH = "/@alice/a-page-whose-script-probes-0123456789ab"
EMPTY_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Stories by Alice on Medium</title><link>/@alice</link>
<description>Stories by Alice on Medium</description></channel></rss>"""


class RecordingSite:
    """An "internal" service: answers anything with 200, so a request that got through is seen
    in :attr:`SiteServer.requests` (the guard's tests assert that list stays empty)."""

    def respond(self, request: Request) -> Response | None:
        return Response(body="internal", content_type="text/plain")


class HostileSite:
    """Routes: /ok, /pdf, /bad-bytes, /huge, /loop/a, /missing, /error, /slow, /internal-redirect,
    /empty. ``broken`` switches /ok itself to a 500 (a site that breaks after a good crawl) and
    ``garbage`` to undecodable bytes. ``/@alice`` (with an empty feed at /feed/@alice and one
    story) is a page whose script requests ``browser_probe``, for the browser's address guard."""

    def __init__(self, huge_bytes: int = 3_000_000, slow_s: float = 4.0, internal_target: str = "") -> None:
        self.huge_bytes = huge_bytes
        self.slow_s = slow_s
        self.internal_target = internal_target
        self.browser_probe = ""  # the internal URL the /@alice page's script requests
        self.broken = False
        self.garbage = False
        self.robots = "User-agent: *\nDisallow: /private/\n"
        self.flaky_failures = 1  # /flaky answers 503 + Retry-After this many times, then the article

    def respond(self, request: Request) -> Response | None:
        path = request.path
        if path == "/robots.txt":
            return Response(body=self.robots, content_type="text/plain")
        if path == "/private/page":
            return Response.html(GOOD_ARTICLE)
        if path == "/flaky":
            if self.flaky_failures > 0:
                self.flaky_failures -= 1
                return Response(status=503, body="busy", headers={"Retry-After": "1"})
            return Response.html(GOOD_ARTICLE)
        if path == "/ok":
            if self.broken:
                return Response(status=500, body="<h1>Internal Server Error</h1>")
            if self.garbage:
                return Response(body=bytes(range(256)) * 40, content_type="text/html; charset=utf-8")
            return Response.html(GOOD_ARTICLE)
        if path == "/pdf":
            return Response(
                body=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", content_type="application/pdf"
            )
        if path == "/bad-bytes":
            return Response(
                body=b"<html><body>" + bytes(range(128, 256)) * 50 + b"</body></html>",
                content_type="text/html; charset=utf-8",
            )
        if path == "/huge":
            return Response.html("<html><body><p>" + "x" * self.huge_bytes + "</p></body></html>")
        if path == "/loop/a":
            return Response.redirect("/loop/b")
        if path == "/loop/b":
            return Response.redirect("/loop/a")
        if path == "/missing":
            return Response.not_found()
        if path == "/error":
            return Response(status=500, body="<h1>Internal Server Error</h1>")
        if path == "/slow":
            return Response(body=GOOD_ARTICLE, delay_s=self.slow_s)
        if path == "/internal-redirect":
            return Response.redirect(self.internal_target)
        if path == "/feed/@alice":
            return Response.xml(EMPTY_FEED)
        if path == "/@alice":
            return Response.html(PROBING_PROFILE % {"probe": json.dumps(self.browser_probe)})
        if path == PROBED_STORY_PATH:
            return Response.html(GOOD_ARTICLE.replace("<h1>", '<h1 data-testid="storyTitle">'))
        if path == "/empty":
            return Response.html("<html><head><title>x</title></head><body></body></html>")
        return None
