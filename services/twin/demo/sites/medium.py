"""A fixture that mimics Medium's public surfaces for one author.

What it copies from the real site, because the extractor depends on exactly these traits:

* ``/feed/@<handle>``: RSS 2.0 with ``content:encoded`` full HTML (starting with the title as
  ``<h3>`` and ending with a tracking pixel), ``dc:creator``, ``pubDate``, links carrying
  ``?source=rss-...`` tracking parameters, and only the 10 most recent stories. Items of stories
  in a publication close with a rule and Medium's "<story> was originally published in
  <publication> on Medium, where people are continuing the conversation..." paragraph.
* ``/@<handle>``: a JavaScript application shell. Stories are listed only after an inline script
  fetches a JSON endpoint, so a crawler without a browser sees no story links at all.
* ``/@<handle>/<slug>-<12 hex id>``: story pages with ``pw-post-body-paragraph`` paragraphs, a
  canonical link, ``article:published_time`` and ``SocialMediaPosting`` JSON-LD (Medium's type for
  a story, not ``Article``). The title (``h1 data-testid="storyTitle"``) and the subtitle
  (``h2.pw-subtitle-paragraph``) carry the same ``data-selectable-paragraph`` marker as the body's
  blocks, as on the real page.
"""

from __future__ import annotations

import json
import re
from html import escape

from twin.demo.content import Article, DemoContent
from twin.demo.server import Request, Response
from twin.demo.sites.markup import published_at, rfc822, stable_hex, to_html

FEED_LIMIT = 10  # Medium's RSS feeds hold only the latest 10 stories
_STORY_PATH = re.compile(r"^/@(?P<handle>[^/]+)/(?P<slug>[a-z0-9-]+)-(?P<id>[0-9a-f]{12})$")


def story_id(slug: str) -> str:
    """Medium ids are 12 hex digits; derive them from the slug so URLs are stable across runs."""
    return stable_hex(f"medium:{slug}", 12)


class MediumSite:
    """Serve the owner's Medium articles; renders from ``content`` on every request."""

    def __init__(self, content: DemoContent) -> None:
        self.content = content

    # -- routing ---------------------------------------------------------------------------------

    def respond(self, request: Request) -> Response | None:
        handle = self.content.handle
        path = request.path
        if path == f"/feed/@{handle}":
            return Response.xml(self._feed(request.base_url))
        if path in (f"/@{handle}", f"/@{handle}/"):
            return Response.html(self._profile_shell())
        if path == f"/_/api/users/@{handle}/stories":
            return Response.json(self._stories_json(request.base_url))
        match = _STORY_PATH.match(path)
        if match and match["handle"] == handle:
            article = self._find(match["slug"], match["id"])
            if article is not None:
                return Response.html(self._story_page(article, request.base_url))
        return None

    # -- helpers ---------------------------------------------------------------------------------

    def _articles(self) -> list[Article]:
        return sorted(self.content.medium, key=lambda a: a.published, reverse=True)

    def _find(self, slug: str, sid: str) -> Article | None:
        for article in self.content.medium:
            if article.slug == slug and story_id(slug) == sid:
                return article
        return None

    def story_url(self, base_url: str, article: Article) -> str:
        return f"{base_url}/@{self.content.handle}/{article.slug}-{story_id(article.slug)}"

    # -- RSS feed --------------------------------------------------------------------------------

    def _feed(self, base_url: str) -> str:
        handle = self.content.handle
        items = []
        for article in self._articles()[:FEED_LIMIT]:
            sid = story_id(article.slug)
            link = f"{self.story_url(base_url, article)}?source=rss-{stable_hex(handle, 12)}------2"
            html = (
                f"<h3>{escape(article.title)}</h3>"
                + to_html(article.body)
                + f'<img src="{base_url}/_/stat?event=post.clientViewed&amp;referrerSource=full_rss'
                f'&amp;postId={sid}" width="1" height="1" alt="">'
            )
            if article.publication:
                html += self._publication_footer(base_url, article)
            categories = "".join(f"<category><![CDATA[{tag}]]></category>" for tag in article.tags)
            items.append(
                f"""<item>
<title><![CDATA[{article.title}]]></title>
<link>{escape(link)}</link>
<guid isPermaLink="false">{base_url}/p/{sid}</guid>
{categories}
<dc:creator><![CDATA[{self.content.owner}]]></dc:creator>
<pubDate>{rfc822(article.published)}</pubDate>
<atom:updated>{published_at(article.published).isoformat()}</atom:updated>
<content:encoded><![CDATA[{html}]]></content:encoded>
</item>"""
            )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:atom="http://www.w3.org/2005/Atom" xmlns:cc="http://cyber.law.harvard.edu/rss/creativeCommonsRssModule.html"
 version="2.0">
<channel>
<title><![CDATA[Stories by {self.content.owner} on Medium]]></title>
<description><![CDATA[Stories by {self.content.owner} on Medium]]></description>
<link>{base_url}/@{handle}?source=rss-{stable_hex(handle, 12)}------2</link>
<generator>Medium</generator>
<atom:link href="{base_url}/feed/@{handle}" rel="self" type="application/rss+xml"/>
{"".join(items)}
</channel>
</rss>"""

    def _publication_footer(self, base_url: str, article: Article) -> str:
        pub = article.publication
        pub_url = f"{base_url}/{pub.lower().replace(' ', '-')}"
        return (
            f'<hr><p><a href="{self.story_url(base_url, article)}">{escape(article.title)}</a> was'
            f' originally published in <a href="{pub_url}">{escape(pub)}</a> on Medium, where people'
            " are continuing the conversation by highlighting and responding to this story.</p>"
        )

    # -- JavaScript profile page -----------------------------------------------------------------

    def _stories_json(self, base_url: str) -> str:
        stories = [
            {
                "id": story_id(a.slug),
                "title": a.title,
                "subtitle": a.subtitle,
                "firstPublishedAt": int(published_at(a.published).timestamp() * 1000),
                "mediumUrl": f"{self.story_url(base_url, a)}?source=user_profile_page---------{i}-------",
            }
            for i, a in enumerate(self._articles())
        ]
        return json.dumps({"payload": {"user": {"username": self.content.handle}, "stories": stories}})

    def _profile_shell(self) -> str:
        handle = self.content.handle
        owner = escape(self.content.owner)
        # The page is empty until the script runs, like Medium's React application.
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{owner} - Medium</title>
<link rel="alternate" type="application/rss+xml" title="RSS" href="/feed/@{handle}">
</head><body>
<div id="root"><div class="loading">Loading…</div></div>
<script>
(async function () {{
  const response = await fetch("/_/api/users/@{handle}/stories");
  const data = await response.json();
  const root = document.getElementById("root");
  root.innerHTML = "";
  const header = document.createElement("h2");
  header.textContent = "{owner}";
  root.appendChild(header);
  for (const story of data.payload.stories) {{
    const card = document.createElement("article");
    const link = document.createElement("a");
    link.href = story.mediumUrl;
    const title = document.createElement("h2");
    title.textContent = story.title;
    link.appendChild(title);
    const subtitle = document.createElement("h3");
    subtitle.textContent = story.subtitle;
    card.appendChild(link);
    card.appendChild(subtitle);
    root.appendChild(card);
  }}
}})();
</script>
</body></html>"""

    # -- story page ------------------------------------------------------------------------------

    def _story_page(self, article: Article, base_url: str) -> str:
        url = self.story_url(base_url, article)
        owner = self.content.owner
        published = published_at(article.published).isoformat()
        ld = {
            "@context": "http://schema.org",
            "@type": "SocialMediaPosting",
            "headline": article.title,
            "description": article.subtitle,
            "url": url,
            "datePublished": published,
            "dateModified": published,
            "author": {"@type": "Person", "name": owner, "url": f"{base_url}/@{self.content.handle}"},
            "publisher": {"@type": "Organization", "name": "Medium"},
            "identifier": story_id(article.slug),
        }
        body = to_html(
            article.body,
            paragraph_attrs='class="pw-post-body-paragraph"',
            block_attrs='data-selectable-paragraph=""',
        )
        tags = "".join(
            f'<a href="{base_url}/tag/{escape(t)}"><div class="tag">{escape(t)}</div></a>'
            for t in article.tags
        )
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(article.title)} | by {escape(owner)} | Medium</title>
<link rel="canonical" href="{url}">
<meta property="og:title" content="{escape(article.title)}">
<meta property="og:type" content="article">
<meta property="article:published_time" content="{published}">
<meta name="author" content="{escape(owner)}">
<script type="application/ld+json">{json.dumps(ld)}</script>
</head><body>
<div id="root">
<nav><a href="/">Medium</a><a href="/m/signin">Sign in</a><button>Write</button></nav>
<div class="meteredContent"><article><div><section><div class="ci bh">
<h1 data-testid="storyTitle" class="pw-post-title" data-selectable-paragraph="">{escape(article.title)}</h1>
<h2 class="pw-subtitle-paragraph" data-selectable-paragraph="">{escape(article.subtitle)}</h2>
<div class="byline"><a data-testid="authorName" href="/@{self.content.handle}">{escape(owner)}</a>
<span>Follow</span><span data-testid="storyReadTime">4 min read</span>
<span data-testid="storyPublishDate">{article.published}</span></div>
<div class="actions"><button>Listen</button><button>Share</button><span>128</span></div>
{body}
</div></section></div></article></div>
<div class="tags">{tags}</div>
<footer><p>Written by {escape(owner)}</p><a href="/about">About</a><a href="/help">Help</a></footer>
</div></body></html>"""
