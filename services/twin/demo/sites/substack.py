"""A fixture that mimics a Substack publication served at the site root.

Copied traits the extractor relies on:

* ``/api/v1/archive?sort=new&offset=N&limit=M``: the JSON archive the Substack web app pages
  through (id, title, subtitle, slug, post_date, canonical_url, audience...); an empty list past
  the end.
* ``/p/<slug>``: post pages with ``h1.post-title``, ``h3.subtitle``,
  ``div.available-content div.body.markup`` and NewsArticle JSON-LD. Paid posts show only a
  preview followed by a paywall.
* ``/feed``: RSS with ``content:encoded``. A paid post's item is cut at the paywall the way the
  real feed cuts it: the preview's paragraphs, then a last paragraph holding only a "Read more"
  link to the post, and no paywall marker at all.

Set ``archive_api_enabled = False`` to make the API answer like a blocked request (an HTML
challenge page), or ``archive_api_error`` to an HTTP status to make it fail; either sends crawlers
to the feed. ``feed_content_type`` is the label the feed is served with (some proxies relabel
feeds ``text/html``).
"""

from __future__ import annotations

import json
from html import escape

from twin.demo.content import Article, DemoContent
from twin.demo.server import Request, Response
from twin.demo.sites.markup import blocks, published_at, rfc822, stable_int, to_html

DEFAULT_LIMIT = 12
MAX_LIMIT = 50

# A paid-only post: its page shows a preview and a paywall. Not part of the owner's freely
# readable writing, so it lives here rather than in content/substack.yaml.
PAID_POST = Article(
    slug="exactly-once-delivery-a-paid-deep-dive",
    title="Exactly-Once Delivery: A Paid Deep Dive",
    subtitle="For paying subscribers: the full story of our exactly-once pipeline.",
    published="2025-05-13",
    tags=["streaming", "paid"],
    body=(
        "This is a subscriber-only issue, so thank you for supporting the newsletter.\n\n"
        "Exactly-once delivery is a phrase that makes me reach for my coffee. Here is why.\n\n"
        "## The rest of the story\n\n"
        "The full walkthrough, with the consumer code, the transaction boundaries and the three "
        "incidents that shaped them, continues below for paid subscribers only."
    ),
)
_PREVIEW_BLOCKS = 2  # paragraphs of a paid post shown before the paywall


class SubstackSite:
    """Serve the owner's Substack posts; renders from ``content`` on every request."""

    def __init__(self, content: DemoContent, paid_posts: list[Article] | None = None) -> None:
        self.content = content
        self.paid_posts = [PAID_POST] if paid_posts is None else paid_posts
        self.archive_api_enabled = True
        self.archive_api_error: int | None = None
        self.feed_content_type = "application/rss+xml; charset=utf-8"
        self.publication = "Boring Is a Feature"

    def respond(self, request: Request) -> Response | None:
        path = request.path
        if path == "/api/v1/archive":
            if self.archive_api_error is not None:
                return Response.json('{"error": "internal"}', status=self.archive_api_error)
            if not self.archive_api_enabled:
                return Response.html(
                    "<!doctype html><html><head><title>Just a moment...</title></head>"
                    "<body><p>Checking your browser before accessing the site.</p></body></html>"
                )
            return Response.json(self._archive(request))
        if path == "/feed":
            return Response.xml(self._feed(request.base_url), content_type=self.feed_content_type)
        if path.startswith("/p/"):
            article = self._find(path.removeprefix("/p/").rstrip("/"))
            if article is not None:
                return Response.html(self._post_page(article, request.base_url))
        if path in ("", "/"):
            return Response.html(self._home(request.base_url))
        return None

    # -- helpers ---------------------------------------------------------------------------------

    def _posts(self) -> list[Article]:
        return sorted([*self.content.substack, *self.paid_posts], key=lambda a: a.published, reverse=True)

    def _find(self, slug: str) -> Article | None:
        return next((a for a in self._posts() if a.slug == slug), None)

    def is_paid(self, article: Article) -> bool:
        return any(article.slug == p.slug for p in self.paid_posts)

    def _audience(self, article: Article) -> str:
        return "only_paid" if self.is_paid(article) else "everyone"

    def _preview_html(self, article: Article) -> str:
        preview = blocks(article.body)[:_PREVIEW_BLOCKS]
        return "\n".join(f"<p>{escape(b.text)}</p>" for b in preview)

    def _body_html(self, article: Article) -> str:
        """A post page's body: the whole post, or a paid post's preview and the paywall's marker."""
        if not self.is_paid(article):
            return to_html(article.body)
        return (
            self._preview_html(article)
            + '\n<div class="paywall-jump" data-component-name="PaywallToDOM"></div>'
        )

    def _feed_html(self, article: Article, base_url: str) -> str:
        """A feed item's body: the whole post, or a paid post cut at the paywall as the real feed
        cuts it (the preview, then only a "Read more" link to the post: no marker says "paid")."""
        if not self.is_paid(article):
            return to_html(article.body)
        link = f"{base_url}/p/{article.slug}?utm_source=substack&amp;utm_medium=rss"
        read_more = f'<p><a href="{link}">Read more</a></p>'
        return f"{self._preview_html(article)}\n{read_more}"

    # -- archive API -----------------------------------------------------------------------------

    def _archive(self, request: Request) -> str:
        try:
            offset = max(0, int(request.arg("offset", "0")))
            limit = min(MAX_LIMIT, max(1, int(request.arg("limit", str(DEFAULT_LIMIT)))))
        except ValueError:
            offset, limit = 0, DEFAULT_LIMIT
        page = self._posts()[offset : offset + limit]
        return json.dumps(
            [
                {
                    "id": stable_int(f"substack:{a.slug}"),
                    "publication_id": stable_int("substack:publication", 6),
                    "type": "newsletter",
                    "title": a.title,
                    "subtitle": a.subtitle,
                    "slug": a.slug,
                    "post_date": published_at(a.published).isoformat().replace("+00:00", "Z"),
                    "audience": self._audience(a),
                    "canonical_url": f"{request.base_url}/p/{a.slug}",
                    "description": a.subtitle,
                    "wordcount": len(a.body.split()),
                    "postTags": [{"name": t, "slug": t} for t in a.tags],
                }
                for a in page
            ]
        )

    # -- pages -----------------------------------------------------------------------------------

    def _post_page(self, article: Article, base_url: str) -> str:
        url = f"{base_url}/p/{article.slug}"
        owner = self.content.owner
        ld = {
            "@context": "https://schema.org",
            "@type": "NewsArticle",
            "url": url,
            "mainEntityOfPage": url,
            "headline": article.title,
            "description": article.subtitle,
            "datePublished": published_at(article.published).isoformat(),
            "isAccessibleForFree": not self.is_paid(article),
            "author": [{"@type": "Person", "name": owner, "url": f"{base_url}/@{self.content.handle}"}],
            "publisher": {"@type": "Organization", "name": self.publication},
        }
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(article.title)} - by {escape(owner)}</title>
<link rel="canonical" href="{url}">
<link rel="alternate" type="application/rss+xml" href="{base_url}/feed" title="{escape(self.publication)}">
<meta property="og:type" content="article">
<script type="application/ld+json">{json.dumps(ld)}</script>
</head><body>
<div id="entry"><div class="main-menu"><a href="/">{escape(self.publication)}</a>
<a href="/subscribe" class="button subscribe-btn">Subscribe</a><a href="/account/login">Sign in</a></div>
<article class="typography newsletter-post post">
<div class="post-header">
<h1 class="post-title published">{escape(article.title)}</h1>
<h3 class="subtitle">{escape(article.subtitle)}</h3>
<div class="post-meta"><a href="/@{self.content.handle}">{escape(owner)}</a>
<div class="pencraft">{article.published}</div><div class="like-button">42</div></div>
</div>
<div class="available-content"><div dir="auto" class="body markup">
{self._body_html(article)}
</div></div>
{self._paywall() if self.is_paid(article) else ""}
<div class="subscription-widget"><p>Thanks for reading {escape(self.publication)}! Subscribe for free
to receive new posts and support my work.</p><form><input type="email"><button>Subscribe</button></form></div>
</article>
<div class="comments-section"><h4>Discussion about this post</h4></div>
<footer>© 2025 {escape(owner)} · Privacy · Terms · Collection notice</footer>
</div></body></html>"""

    @staticmethod
    def _paywall() -> str:
        return (
            '<div class="paywall"><h2 class="paywall-title">This post is for paid subscribers</h2>'
            '<a class="button" href="/subscribe">Subscribe</a></div>'
        )

    def _home(self, base_url: str) -> str:
        cards = "".join(
            f'<div class="post-preview"><a href="{base_url}/p/{a.slug}">{escape(a.title)}</a></div>'
            for a in self._posts()
        )
        return (
            f"<!doctype html><html><head><title>{escape(self.publication)}</title>"
            f'<link rel="alternate" type="application/rss+xml" href="{base_url}/feed"></head>'
            f"<body><h1>{escape(self.publication)}</h1>{cards}</body></html>"
        )

    # -- RSS -------------------------------------------------------------------------------------

    def _feed(self, base_url: str) -> str:
        items = "".join(
            f"""<item>
<title><![CDATA[{a.title}]]></title>
<description><![CDATA[{a.subtitle}]]></description>
<link>{base_url}/p/{a.slug}</link>
<guid isPermaLink="false">{base_url}/p/{a.slug}</guid>
<dc:creator><![CDATA[{self.content.owner}]]></dc:creator>
<pubDate>{rfc822(a.published)}</pubDate>
<content:encoded><![CDATA[{self._feed_html(a, base_url)}]]></content:encoded>
</item>"""
            for a in self._posts()
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:atom="http://www.w3.org/2005/Atom" version="2.0">
<channel>
<title><![CDATA[{self.publication}]]></title>
<description><![CDATA[Data pipelines, Postgres and small language models, by {self.content.owner}.]]>
</description>
<link>{base_url}</link>
<generator>Substack</generator>
<atom:link href="{base_url}/feed" rel="self" type="application/rss+xml"/>
{items}
</channel>
</rss>"""
