"""LinkedIn posts: log in with the settings' account, render the recent-activity page, read the posts.

LinkedIn shows a member's activity only to signed-in members and builds it in the browser, so the
flow is: the login page (for its CSRF token and cookie) → the login POST → the landing page, which
tells success from failure (a wrong password re-renders the login form with status 200) → the
recent-activity page rendered with JavaScript → one document per post.

Paths are LinkedIn's; scheme and host come from the source URL, so the same code reads the
fixture site (or any host the profile marks as ``platform: linkedin``).

Credentials come from settings only (``TWIN_LINKEDIN__EMAIL`` / ``TWIN_LINKEDIN__PASSWORD``), never
from the profile, and the password appears nowhere but in the login form it is sent with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from parsel import Selector

from twin.domain.documents import Category, ExtractedDocument, Platform
from twin.domain.errors import CredentialsRequired, EmptyExtraction, FetchError, InvalidSourceURL, LoginFailed
from twin.extractors.base import HTML_TYPES, ExtractOptions, Follow, Output, Page

LOGIN_PATH = "/login"
LOGIN_SUBMIT_PATH = "/checkpoint/lg/login-submit"
_ACTIVITY_PATH = "/in/{user}/recent-activity/all/"
# Where LinkedIn sends a visitor it does not consider signed in.
_SIGNED_OUT_PATHS = ("/authwall", "/login", "/uas/login", "/checkpoint/lg/login-submit", "/signup")
_URN_RE = re.compile(r"urn:li:activity:(\d+)")
_TITLE_MAX = 80

STEP_LOGIN = "login"
STEP_LANDING = "landing"
STEP_ACTIVITY = "activity"


def activity_time(activity_id: int) -> datetime:
    """When a post was published: LinkedIn ids carry the Unix time in ms above their low 22 bits."""
    return datetime.fromtimestamp((activity_id >> 22) / 1000, tz=UTC)


def post_title(text: str) -> str:
    """The first sentence of the first line, cut at a word boundary to about 80 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    if len(sentence) <= _TITLE_MAX:
        return sentence
    cut = sentence[: _TITLE_MAX - 1].rsplit(" ", 1)[0] or sentence[: _TITLE_MAX - 1]
    return cut.rstrip(" ,;:-") + "…"


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _user(source_url: str) -> str:
    segments = [s for s in urlsplit(source_url).path.split("/") if s]
    if len(segments) < 2 or segments[0] != "in":
        raise InvalidSourceURL(
            f"{source_url}: expected a LinkedIn profile URL like https://www.linkedin.com/in/<name>"
        )
    return segments[1]


def _login_form(sel: Selector) -> Selector | None:
    forms = sel.xpath("//form[.//input[@name='session_password']]")
    return forms[0] if forms else None


def _post_text(node: Selector) -> str:
    """The post's text as written: ``<br>`` back to line breaks, hashtag links back to plain text."""
    parts: list[str] = []
    for piece in node.xpath(".//text() | .//br"):
        root: Any = piece.root
        parts.append(root if isinstance(root, str) else "\n")
    return "".join(parts).strip()


class LinkedInExtractor:
    platform = Platform.LINKEDIN

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        if not options.linkedin_email or options.linkedin_password is None:
            raise CredentialsRequired(
                "LinkedIn shows posts only to signed-in members: set TWIN_LINKEDIN__EMAIL and "
                "TWIN_LINKEDIN__PASSWORD in the settings (or the crawler's Secret) to crawl "
                f"{source_url}"
            )
        user = _user(source_url)
        return [Follow(url=_site(source_url) + LOGIN_PATH, step=STEP_LOGIN, data={"user": user})]

    def parse(self, page: Page) -> Iterable[Output]:
        if page.status >= 400:
            raise FetchError(f"LinkedIn answered HTTP {page.status} for {page.url}")
        page.require(*HTML_TYPES)
        if page.step == STEP_LOGIN:
            return self._login(page)
        if page.step == STEP_LANDING:
            return self._landing(page)
        if page.step == STEP_ACTIVITY:
            return self._activity(page)
        raise FetchError(f"unknown LinkedIn step {page.step!r}")

    # --- steps -------------------------------------------------------------------------------

    def _activity_follow(self, page: Page) -> Follow:
        user = str(page.data["user"])
        return Follow(
            url=_site(page.source_url) + _ACTIVITY_PATH.format(user=user),
            step=STEP_ACTIVITY,
            render_js=True,
            data={"user": user},
        )

    def _login(self, page: Page) -> list[Output]:
        form = _login_form(Selector(text=page.text))
        if form is None:
            # Already signed in (a session cookie from an earlier source): LinkedIn skips the form.
            return [self._activity_follow(page)]
        if not form.xpath(".//input[@name='loginCsrfParam']"):
            raise FetchError(f"{page.url}: LinkedIn's login form has no loginCsrfParam; the page has changed")
        email, password = page.options.linkedin_email, page.options.linkedin_password
        if not email or password is None:
            raise CredentialsRequired(
                "set TWIN_LINKEDIN__EMAIL and TWIN_LINKEDIN__PASSWORD to log in to LinkedIn"
            )
        # Send every hidden field, as a browser would: the CSRF token is one of several.
        fields = {
            str(i.attrib["name"]): str(i.attrib.get("value", ""))
            for i in form.xpath(".//input[@type='hidden'][@name]")
        }
        fields["session_key"] = email
        fields["session_password"] = password.get_secret_value()
        action = form.attrib.get("action") or LOGIN_SUBMIT_PATH
        return [
            Follow(
                url=urljoin(page.url, action),
                step=STEP_LANDING,
                method="POST",
                form=fields,
                data={"user": page.data["user"]},
            )
        ]

    def _landing(self, page: Page) -> list[Output]:
        sel = Selector(text=page.text)
        path = urlsplit(page.url).path
        if _login_form(sel) is not None:
            reason = " ".join(
                sel.css(
                    "#error-for-password ::text, #error-for-username ::text, [role=alert] ::text"
                ).getall()
            ).strip()
            raise LoginFailed(
                "LinkedIn refused the login from TWIN_LINKEDIN__EMAIL / TWIN_LINKEDIN__PASSWORD"
                + (f": {reason}" if reason else "")
            )
        if path.startswith("/checkpoint/challenge"):
            raise LoginFailed(
                "LinkedIn asked for a verification challenge (captcha, e-mail PIN or 2FA); "
                "sign in once from a browser to clear it"
            )
        return [self._activity_follow(page)]

    def _activity(self, page: Page) -> list[Output]:
        sel = Selector(text=page.text)
        path = urlsplit(page.url).path
        if path.startswith(_SIGNED_OUT_PATHS) or _login_form(sel) is not None:
            raise LoginFailed(
                f"LinkedIn did not accept the session after logging in: {page.url} led to {path}"
            )
        site = _site(page.source_url)
        documents: list[Output] = []
        seen: set[int] = set()
        for update in sel.css("div.feed-shared-update-v2[data-urn]"):
            match = _URN_RE.fullmatch(update.attrib.get("data-urn", ""))
            if not match:
                continue  # an ad or a suggestion: not a post of the member's
            activity_id = int(match.group(1))
            text_node = update.css(".update-components-text span[dir=ltr]")
            if activity_id in seen or not text_node:
                continue
            text = _post_text(text_node[0])
            if not text:
                continue  # a bare repost with no commentary: not the owner's words
            seen.add(activity_id)
            author = " ".join(
                update.css(".update-components-actor__title span[aria-hidden=true] ::text").getall()
            ).strip()
            documents.append(
                ExtractedDocument(
                    canonical_url=f"{site}/feed/update/urn:li:activity:{activity_id}",
                    category=Category.POST,
                    title=post_title(text),
                    content=text,
                    author=author or None,
                    published_at=activity_time(activity_id),
                    metadata={"activity_id": str(activity_id)},
                )
            )
        if not documents and not sel.css(".artdeco-empty-state"):
            # Neither posts nor LinkedIn's "nothing to see" card: the page did not render.
            raise EmptyExtraction(f"{page.url}: no posts rendered (is JavaScript rendering working?)")
        return documents
