"""A LinkedIn look-alike: a CSRF-protected login, a session cookie, and a JavaScript-rendered feed.

It reproduces what makes LinkedIn hard to crawl, not its looks: the login form carries a hidden
``loginCsrfParam`` bound to a ``bcookie`` set with the page; a wrong password re-renders the login
page with status 200 (so status codes cannot tell success from failure); the recent-activity page
is an empty shell whose inline script fetches the posts from a cookie-protected JSON endpoint and
builds LinkedIn's own markup (``div.feed-shared-update-v2[data-urn]``). Without JavaScript there
are no posts in the DOM; without the ``li_at`` cookie every member page redirects to the authwall.

Everything is rendered from :class:`~twin.demo.content.DemoContent` on each request, so tests can
edit posts and crawl again.
"""

from __future__ import annotations

import hashlib
import html
import json
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote

from twin.demo.content import DemoContent
from twin.demo.server import Request, Response

LOGIN_PATH = "/login"
LOGIN_SUBMIT_PATH = "/checkpoint/lg/login-submit"
FEED_PATH = "/feed/"
AUTHWALL_PATH = "/authwall"
UPDATES_API_PATH = "/voyager/api/identity/profileUpdatesV2"

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body class="{body_class}">
{body}
</body></html>
"""

# The activity page's script. It mirrors LinkedIn's client: fetch the updates as JSON with the
# session cookie, then build each post's markup; text keeps its line breaks as <br> and hashtags
# become links, which is what the extractor has to undo.
_ACTIVITY_SCRIPT = """
(async function () {
  const list = document.querySelector(".scaffold-finite-scroll__content");
  const resp = await fetch(%(api)s, {credentials: "same-origin", headers: {"accept": "application/json"}});
  if (!resp.ok) { list.setAttribute("data-error", String(resp.status)); return; }
  const data = await resp.json();
  if (data.elements.length === 0) {
    const empty = document.createElement("div");
    empty.className = "artdeco-empty-state";
    empty.textContent = "Nothing to see for now";
    list.appendChild(empty);
  }
  for (const el of data.elements) {
    const update = document.createElement("div");
    update.className = "feed-shared-update-v2 feed-shared-update-v2--minor-logging-bar";
    update.setAttribute("data-urn", el.urn);
    update.setAttribute("role", "article");
    const actor = document.createElement("div");
    actor.className = "update-components-actor";
    const title = document.createElement("span");
    title.className = "update-components-actor__title";
    const name = document.createElement("span");
    name.setAttribute("aria-hidden", "true");
    name.textContent = el.actor.name.text;
    title.appendChild(name);
    actor.appendChild(title);
    update.appendChild(actor);
    const body = document.createElement("div");
    body.className = "feed-shared-inline-show-more-text";
    const textBox = document.createElement("div");
    textBox.className = "update-components-text relative update-components-update-v2__commentary";
    const span = document.createElement("span");
    span.className = "break-words tvm-parent-container";
    const inner = document.createElement("span");
    inner.setAttribute("dir", "ltr");
    el.commentary.text.text.split("\\n").forEach(function (line, i) {
      if (i > 0) inner.appendChild(document.createElement("br"));
      line.split(/(#[\\p{L}\\p{N}_]+)/u).forEach(function (part) {
        if (!part) return;
        if (part.startsWith("#") && part.length > 1) {
          const a = document.createElement("a");
          a.href = %(origin)s + "/feed/hashtag/?keywords=" + encodeURIComponent(part.slice(1));
          a.className = "app-aware-link";
          a.textContent = part;
          inner.appendChild(a);
        } else {
          inner.appendChild(document.createTextNode(part));
        }
      });
    });
    span.appendChild(inner);
    textBox.appendChild(span);
    body.appendChild(textBox);
    update.appendChild(body);
    list.appendChild(update);
  }
})();
"""


def _cookies(request: Request) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(request.headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is just no cookies, as on the real site
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


class LinkedInSite:
    """The fixture. ``email``/``password`` are the only account; ``sessions`` the live ``li_at`` values."""

    def __init__(
        self,
        content: DemoContent,
        email: str = "alice@example.com",
        password: str = "correct horse",  # noqa: S107 - a fixture account, not a secret
    ) -> None:
        self.content = content
        self.email = email
        self.password = password
        self.sessions: set[str] = set()
        # Signs CSRF tokens: the token is derived from the bcookie, so it needs no server state.
        self._secret = secrets.token_hex(16)
        self.login_attempts = 0

    # --- routing -----------------------------------------------------------------------------

    def respond(self, request: Request) -> Response | None:
        path, method = request.path, request.method
        if path in (LOGIN_PATH, "/uas/login") and method == "GET":
            return self._login_get(request)
        if path == LOGIN_SUBMIT_PATH and method == "POST":
            return self._login_submit(request)
        if path == AUTHWALL_PATH:
            return self._authwall(request)
        if path == UPDATES_API_PATH:
            return self._updates(request)
        handle = self.content.handle
        member_pages: dict[str, Callable[[Request], Response]] = {
            FEED_PATH: self._feed,
            f"/in/{handle}/": self._profile,
            f"/in/{handle}/recent-activity/all/": self._activity,
        }
        page = member_pages.get(path if path.endswith("/") else f"{path}/")
        if page is None:
            return None  # robots.txt falls back to the server's allow-all
        return self._member_only(request) or page(request)

    # --- sessions ----------------------------------------------------------------------------

    def _csrf_for(self, bcookie: str) -> str:
        digest = hashlib.sha256(f"{self._secret}:{bcookie}".encode()).hexdigest()
        return f"ajax:{int(digest[:16], 16) % 10**19:019d}"

    def _signed_in(self, request: Request) -> bool:
        return _cookies(request).get("li_at", "") in self.sessions

    def _member_only(self, request: Request) -> Response | None:
        """None when signed in; else LinkedIn's redirect to the authwall, remembering the page."""
        if self._signed_in(request):
            return None
        target = quote(f"{request.base_url}{request.path}", safe="")
        return Response.redirect(
            f"{request.base_url}{AUTHWALL_PATH}?trk=public_profile&sessionRedirect={target}"
        )

    # --- pages -------------------------------------------------------------------------------

    def _page(self, title: str, body: str, body_class: str = "", status: int = 200) -> Response:
        return Response.html(_PAGE.format(title=html.escape(title), body=body, body_class=body_class), status)

    def _login_get(self, request: Request) -> Response:
        # Like LinkedIn, a member who is already signed in is sent straight to the feed.
        if self._signed_in(request):
            return Response.redirect(f"{request.base_url}{FEED_PATH}")
        return self._login_page(request)

    def _login_page(self, request: Request, error: str = "", email: str = "") -> Response:
        bcookie = _cookies(request).get("bcookie") or f"v=2&{secrets.token_hex(16)}"
        csrf = self._csrf_for(bcookie)
        error_html = (
            f'<div id="error-for-password" class="form__label--error" role="alert">{html.escape(error)}</div>'
            if error
            else ""
        )
        body = f"""<main class="app__content">
<h1 class="header__content__heading">Sign in</h1>
<p class="header__content__subheading">Stay updated on your professional world</p>
<form class="login__form" action="{LOGIN_SUBMIT_PATH}" method="post" novalidate>
  <input name="csrfToken" value="{html.escape(csrf)}" type="hidden">
  <input name="session_redirect" value="" type="hidden">
  <input name="loginCsrfParam" value="{html.escape(csrf)}" type="hidden">
  <input name="trk" value="guest_homepage-basic_nav-header-signin" type="hidden">
  <div class="form__input--floating">
    <input id="username" name="session_key" type="email" value="{html.escape(email)}" autocomplete="username">
    <label for="username">Email or phone</label>
  </div>
  <div class="form__input--floating">
    <input id="password" name="session_password" type="password" autocomplete="current-password">
    <label for="password">Password</label>
  </div>
  {error_html}
  <button class="btn__primary--large from__button--floating" type="submit">Sign in</button>
</form>
</main>"""
        response = self._page("LinkedIn Login, Sign in | LinkedIn", body, "system-fonts")
        response.headers["Set-Cookie"] = f'bcookie="{bcookie}"; Path=/'
        return response

    def _login_submit(self, request: Request) -> Response:
        self.login_attempts += 1
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        bcookie = _cookies(request).get("bcookie", "")
        email = form.get("session_key", "")
        if not bcookie or not secrets.compare_digest(form.get("loginCsrfParam", ""), self._csrf_for(bcookie)):
            # LinkedIn answers a stale or missing CSRF token with the login page again.
            return self._login_page(request, "Something went wrong. Please try again.", email)
        if not (
            secrets.compare_digest(email, self.email)
            and secrets.compare_digest(form.get("session_password", ""), self.password)
        ):
            return self._login_page(
                request, "Wrong email or password. Try again or create an account.", email
            )
        token = f"AQED{secrets.token_urlsafe(24)}"
        self.sessions.add(token)
        response = Response.redirect(f"{request.base_url}{FEED_PATH}", status=303)
        response.headers["Set-Cookie"] = f"li_at={token}; Path=/; HttpOnly"
        return response

    def _authwall(self, request: Request) -> Response:
        body = f"""<main class="authwall-join-form">
<h1>Join LinkedIn or sign in to see {html.escape(self.content.owner)}'s activity</h1>
<a class="authwall-sign-in-form__link" href="{request.base_url}{LOGIN_PATH}">Sign in</a>
</main>"""
        return self._page("Sign Up | LinkedIn", body, "authwall")

    def _feed(self, request: Request) -> Response:
        handle = self.content.handle
        body = f"""<div class="scaffold-layout">
<a class="feed-identity-module__actor-meta" href="{request.base_url}/in/{handle}/">
{html.escape(self.content.owner)}</a>
<main class="scaffold-layout__main"><h2 class="visually-hidden">Feed</h2></main>
</div>"""
        return self._page("Feed | LinkedIn", body, "render-mode-BIGPIPE")

    def _profile(self, request: Request) -> Response:
        handle = self.content.handle
        body = f"""<main class="scaffold-layout__main">
<h1 class="text-heading-xlarge">{html.escape(self.content.owner)}</h1>
<a href="{request.base_url}/in/{handle}/recent-activity/all/">Show all posts</a>
</main>"""
        return self._page(f"{self.content.owner} | LinkedIn", body)

    def _activity(self, request: Request) -> Response:
        handle = self.content.handle
        api = f"{request.base_url}{UPDATES_API_PATH}?q=memberShareFeed&profileId={handle}&count=100&start=0"
        script = _ACTIVITY_SCRIPT % {"api": json.dumps(api), "origin": json.dumps(request.base_url)}
        body = f"""<div class="scaffold-layout">
<header class="pv-recent-activity-top-card">
<h1 class="single-line-truncate">{html.escape(self.content.owner)}</h1>
<h2>All activity</h2>
</header>
<main class="scaffold-layout__main">
<div class="scaffold-finite-scroll__content" data-finite-scroll-hotkey-context="FEED"></div>
</main>
</div>
<script>{script}</script>"""
        return self._page(f"Activity | {self.content.owner} | LinkedIn", body, "render-mode-BIGPIPE")

    def _updates(self, request: Request) -> Response:
        if not self._signed_in(request):
            return Response.json('{"status":401,"message":"Unauthorized"}', status=401)
        if request.arg("profileId") != self.content.handle:
            return Response.json('{"elements":[],"paging":{"start":0,"count":0,"total":0}}')
        elements = [
            {
                "urn": f"urn:li:activity:{post.id}",
                "actor": {"name": {"text": self.content.owner}},
                # LinkedIn trims the commentary it shows; so do we.
                "commentary": {"text": {"text": post.text.strip()}},
            }
            for post in sorted(self.content.linkedin, key=lambda p: int(p.id), reverse=True)
        ]
        payload = {
            "elements": elements,
            "paging": {"start": 0, "count": len(elements), "total": len(elements)},
        }
        return Response.json(json.dumps(payload, ensure_ascii=False))
