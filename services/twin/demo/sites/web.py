"""A fixture for the owner's personal blog: the "any other link" case of the crawler.

Real blogs wrap each post in navigation, sidebars, cookie banners, share buttons, comments and
footers. This site does too, so the main-text extraction is exercised rather than bypassed:
``/blog/`` is a listing that advertises ``/blog/feed.xml``; posts live at ``/blog/<slug>.html``.
``/files/alice-moreau-cv.pdf`` is linked from the sidebar and is not HTML.
"""

from __future__ import annotations

import json
from html import escape

from twin.demo.content import Article, DemoContent
from twin.demo.server import Request, Response
from twin.demo.sites.markup import published_at, rfc822, to_html

# Bytes that look like a PDF: the crawler must refuse it on the media type, not choke on it.
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


class WebSite:
    """Serve the owner's blog; renders from ``content`` on every request."""

    def __init__(self, content: DemoContent) -> None:
        self.content = content
        self.blog_title = f"{content.owner} · notes on data and boring systems"

    def respond(self, request: Request) -> Response | None:
        path = request.path
        if path in ("/", "/blog"):
            return Response.redirect("/blog/", status=301)
        if path == "/blog/":
            return Response.html(self._index(request.base_url))
        if path == "/blog/feed.xml":
            return Response.xml(self._feed(request.base_url))
        if path == "/files/alice-moreau-cv.pdf":
            return Response(body=_PDF, content_type="application/pdf")
        if path.startswith("/blog/") and path.endswith(".html"):
            slug = path.removeprefix("/blog/").removesuffix(".html")
            article = next((a for a in self.content.web if a.slug == slug), None)
            if article is not None:
                return Response.html(self._post(article, request.base_url))
        return None

    def _pages(self) -> list[Article]:
        return sorted(self.content.web, key=lambda a: a.published, reverse=True)

    # -- shared chrome ---------------------------------------------------------------------------

    def _head(self, title: str, base_url: str, extra: str = "") -> str:
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/site.css">
<link rel="alternate" type="application/rss+xml" title="{escape(self.blog_title)}" href="/blog/feed.xml">
{extra}
</head><body>
<div class="cookie-banner" role="dialog"><p>This site uses a single cookie to remember that you
dismissed this banner. No tracking, no ads.</p><button>Accept</button><button>Decline</button></div>
<header class="site-header"><a class="brand" href="/blog/">{escape(self.content.owner)}</a>
<nav><ul><li><a href="/blog/">Blog</a></li><li><a href="/talks/">Talks</a></li>
<li><a href="/about/">About</a></li><li><a href="/blog/feed.xml">RSS</a></li></ul></nav></header>"""

    def _sidebar(self) -> str:
        recent = "".join(
            f'<li><a href="/blog/{a.slug}.html">{escape(a.title)}</a></li>' for a in self._pages()
        )
        return f"""<aside class="sidebar"><section class="widget"><h3>About me</h3>
<p>I build data pipelines and small ML systems, and I get paged for them. Opinions are my own and
usually about Postgres.</p><a href="/files/alice-moreau-cv.pdf">Download my CV (PDF)</a></section>
<section class="widget"><h3>Recent posts</h3><ul>{recent}</ul></section>
<section class="widget"><h3>Newsletter</h3><form><input type="email" placeholder="you@example.com">
<button>Subscribe</button></form></section></aside>"""

    def _footer(self) -> str:
        return f"""<footer class="site-footer"><p>© 2025 {escape(self.content.owner)}. Text licensed
CC BY 4.0. Built with a small script and a lot of stubbornness.</p>
<p><a href="/privacy/">Privacy</a> · <a href="/imprint/">Imprint</a></p></footer></body></html>"""

    # -- pages -----------------------------------------------------------------------------------

    def _index(self, base_url: str) -> str:
        items = "".join(
            f"""<li class="post-item"><a href="/blog/{a.slug}.html">{escape(a.title)}</a>
<time datetime="{a.published}">{a.published}</time><p class="summary">{escape(a.subtitle)}</p></li>"""
            for a in self._pages()
        )
        return (
            self._head(self.blog_title, base_url, '<meta property="og:type" content="website">')
            + f"""<div class="layout"><main><h1>Blog</h1><ul class="post-list">{items}</ul></main>
{self._sidebar()}</div>"""
            + self._footer()
        )

    def _post(self, article: Article, base_url: str) -> str:
        url = f"{base_url}/blog/{article.slug}.html"
        when = published_at(article.published).isoformat()
        ld = {
            "@context": "https://schema.org",
            "@type": "BlogPosting",
            "headline": article.title,
            "datePublished": when,
            "author": {"@type": "Person", "name": self.content.owner},
            "mainEntityOfPage": url,
        }
        extra = f"""<link rel="canonical" href="{url}">
<meta property="og:type" content="article">
<meta property="og:title" content="{escape(article.title)}">
<meta name="author" content="{escape(self.content.owner)}">
<meta property="article:published_time" content="{when}">
<meta name="keywords" content="{escape(", ".join(article.tags))}">
<script type="application/ld+json">{json.dumps(ld)}</script>"""
        tags = "".join(
            f'<a class="tag" href="/blog/tags/{escape(t)}/">#{escape(t)}</a>' for t in article.tags
        )
        return (
            self._head(f"{article.title} | {self.content.owner}", base_url, extra)
            + f"""<div class="layout"><main><article class="post">
<header><h1 class="post-title">{escape(article.title)}</h1>
<p class="post-meta">By <span class="author">{escape(self.content.owner)}</span> on
<time datetime="{when}">{article.published}</time></p></header>
<div class="post-content">
{to_html(article.body)}
</div>
<footer class="post-footer"><div class="tags">{tags}</div>
<div class="share">Share this post: <a href="#">Mastodon</a> <a href="#">LinkedIn</a>
<a href="#">Email</a></div>
</footer></article>
<section class="comments" id="comments"><h3>2 comments</h3>
<div class="comment"><p class="comment-author">Sam K.</p><p>Great read, sending this to my whole team
right now. We had the exact same problem last winter.</p></div>
<div class="comment"><p class="comment-author">Priya</p><p>Could you write a follow-up with the
actual configuration values you ended up using?</p></div>
<form class="comment-form"><textarea></textarea><button>Post comment</button></form></section>
</main>
{self._sidebar()}</div>"""
            + self._footer()
        )

    # -- RSS -------------------------------------------------------------------------------------

    def _feed(self, base_url: str) -> str:
        items = "".join(
            f"""<item><title>{escape(a.title)}</title>
<link>{base_url}/blog/{a.slug}.html?utm_source=rss&amp;utm_medium=feed</link>
<guid>{base_url}/blog/{a.slug}.html</guid>
<pubDate>{rfc822(a.published)}</pubDate>
<description>{escape(a.subtitle)}</description></item>"""
            for a in self._pages()
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>{escape(self.blog_title)}</title>
<link>{base_url}/blog/</link>
<description>Notes on data pipelines, Postgres and small ML systems.</description>
{items}
</channel></rss>"""
