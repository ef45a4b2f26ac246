"""A GitHub Enterprise Server look-alike: the REST API under ``/api/v3`` and raw files, on one host.

Only what the crawler reads is implemented, shaped like the real thing: the user's repository
list paginated with a ``Link`` header, repository metadata, recursive git trees with blob sizes and
git's own blob SHAs, and raw file bytes (binaries as bytes with NULs). When ``token`` is set every
request must carry it (``Authorization: Bearer`` or ``token``), as on a private instance; when
``rate_limited`` is set the API answers 403 with ``x-ratelimit-remaining: 0`` like GitHub does.
When ``odd_repo`` is set the repository list also holds one object without ``full_name`` and
``default_branch`` (as a repository still being created or imported can be listed), sorted among
the others like any repository.

Everything is rendered from :class:`~twin.demo.content.DemoContent` on each request, so tests can
edit files and crawl again.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from typing import Any
from urllib.parse import unquote, urlencode

from twin.demo.content import DemoContent, Repo, RepoFile
from twin.demo.server import Request, Response

API_PREFIX = "/api/v3"
_RATE_LIMIT = 5000
# GitHub's own cap on per_page.
_MAX_PER_PAGE = 100

# Starts like a PNG and holds NULs, as every real binary does within its first bytes.
_BINARY_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"
    + bytes(range(256))
)


def file_bytes(f: RepoFile) -> bytes:
    """The bytes the site serves for ``f`` (and whose size and SHA its tree reports)."""
    if f.binary:
        return _BINARY_BYTES + f.path.encode("utf-8")
    return f.content.encode("utf-8")


def _git_sha(kind: str, payload: bytes) -> str:
    # Git's object id: sha1 over "<type> <size>\0<payload>". Real ids make the fixture's JSON honest.
    return hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload, usedforsecurity=False).hexdigest()


class GitHubSite:
    """The fixture. ``max_per_page`` lowers GitHub's per_page cap so tests can force several pages."""

    def __init__(self, content: DemoContent, token: str | None = None) -> None:
        self.content = content
        self.token = token
        self.max_per_page = _MAX_PER_PAGE
        self.rate_limited = False
        self.odd_repo = False

    # --- routing -----------------------------------------------------------------------------

    def respond(self, request: Request) -> Response | None:
        if request.path == "/robots.txt":
            return None  # the server's default: allow all
        is_api = request.path.startswith(f"{API_PREFIX}/")
        if self.token is not None and not self._authorized(request):
            # The API says why; the web side of a private instance just hides what is there.
            return self._error(401, "Bad credentials") if is_api else Response.not_found()
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if is_api:
            return self._rate_limited() if self.rate_limited else self._api(request, parts[2:])
        if len(parts) >= 4 and parts[2] == "raw":
            return self._raw(parts[0], parts[1], parts[3], "/".join(parts[4:]))
        if parts == [self.content.handle]:
            return self._user_page(request)
        return None

    def _authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and value.strip() == self.token

    def _api(self, request: Request, parts: list[str]) -> Response | None:
        if len(parts) == 3 and parts[0] == "users" and parts[2] == "repos":
            return self._repo_list(request, parts[1])
        if len(parts) >= 3 and parts[0] == "repos":
            repo = self._repo(parts[1], parts[2])
            if repo is None:
                return self._error(404, "Not Found")
            if len(parts) == 3:
                return self._json(self._repo_json(request, repo))
            if len(parts) >= 6 and parts[3:5] == ["git", "trees"]:
                return self._tree(
                    repo, "/".join(parts[5:]), request.arg("recursive") not in ("", "0", "false")
                )
        return self._error(404, "Not Found")

    # --- API ---------------------------------------------------------------------------------

    def _repo(self, owner: str, name: str) -> Repo | None:
        if owner != self.content.handle:
            return None
        return next((r for r in self.content.github if r.name == name), None)

    def _repo_json(self, request: Request, repo: Repo) -> dict[str, Any]:
        owner = self.content.handle
        return {
            "id": int(hashlib.sha1(repo.name.encode(), usedforsecurity=False).hexdigest()[:8], 16),
            "name": repo.name,
            "full_name": f"{owner}/{repo.name}",
            "private": False,
            "owner": {"login": owner, "type": "User", "html_url": f"{request.base_url}/{owner}"},
            "html_url": f"{request.base_url}/{owner}/{repo.name}",
            "description": repo.description or None,
            "fork": repo.fork,
            "archived": False,
            "disabled": False,
            "default_branch": repo.default_branch,
            "language": repo.language or None,
            "url": f"{request.base_url}{API_PREFIX}/repos/{owner}/{repo.name}",
        }

    def _odd_repo_json(self, request: Request) -> dict[str, Any]:
        """A listed repository the API describes only in part: no full_name, no default_branch."""
        odd = self._repo_json(request, Repo(name="being-imported", description="Import in progress"))
        del odd["full_name"], odd["default_branch"]
        return odd

    def _repo_list(self, request: Request, user: str) -> Response:
        if user != self.content.handle:
            return self._error(404, "Not Found")
        try:
            per_page = max(1, min(int(request.arg("per_page", "30")), self.max_per_page))
            page = max(1, int(request.arg("page", "1")))
        except ValueError:
            return self._error(422, "Validation Failed")
        repos = [self._repo_json(request, r) for r in self.content.github]
        if self.odd_repo:
            repos.append(self._odd_repo_json(request))
        repos.sort(key=lambda r: str(r["name"]))
        if request.arg("type", "owner") == "member":
            repos = []
        chunk = repos[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(len(repos) / per_page))
        response = self._json(chunk)

        def link(n: int) -> str:
            query = {"per_page": per_page, "page": n, "type": request.arg("type", "owner")}
            return f"<{request.base_url}{API_PREFIX}/users/{user}/repos?{urlencode(query)}>"

        rels = []
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(1)}; rel="first"', f'{link(page - 1)}; rel="prev"']
        if rels:
            response.headers["Link"] = ", ".join(rels)
        return response

    def _tree(self, repo: Repo, ref: str, recursive: bool) -> Response:
        if ref != repo.default_branch:
            return self._error(404, "Not Found")
        blobs = {f.path: file_bytes(f) for f in repo.files}
        folders = sorted({"/".join(p.split("/")[:i]) for p in blobs for i in range(1, p.count("/") + 1)})
        entries: list[dict[str, Any]] = []
        for folder in folders:
            entries.append(
                {"path": folder, "mode": "040000", "type": "tree", "sha": _git_sha("tree", folder.encode())}
            )
        for path, data in blobs.items():
            executable = path.startswith("bin/") or path.endswith(".sh")
            entries.append(
                {
                    "path": path,
                    "mode": "100755" if executable else "100644",
                    "type": "blob",
                    "sha": _git_sha("blob", data),
                    "size": len(data),
                }
            )
        entries.sort(key=lambda e: e["path"])
        if not recursive:
            entries = [e for e in entries if "/" not in e["path"]]
        root_sha = _git_sha("tree", json.dumps(entries, sort_keys=True).encode())
        return self._json({"sha": root_sha, "tree": entries, "truncated": False})

    # --- raw and HTML ------------------------------------------------------------------------

    def _raw(self, owner: str, name: str, ref: str, path: str) -> Response | None:
        repo = self._repo(owner, name)
        if repo is None or ref != repo.default_branch:
            return None
        f = next((f for f in repo.files if f.path == path), None)
        if f is None:
            return None
        if f.binary:
            return Response(body=file_bytes(f), content_type="application/octet-stream")
        return Response(body=file_bytes(f), content_type="text/plain; charset=utf-8")

    def _user_page(self, request: Request) -> Response:
        handle = self.content.handle
        items = "\n".join(
            f'<li><a itemprop="name codeRepository" href="{request.base_url}/{handle}/{html.escape(r.name)}">'
            f"{html.escape(r.name)}</a></li>"
            for r in sorted(self.content.github, key=lambda r: r.name)
        )
        return Response.html(
            f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{handle} ({html.escape(self.content.owner)})</title></head>
<body><main><h1 class="vcard-names"><span class="p-name">{html.escape(self.content.owner)}</span>
<span class="p-nickname">{handle}</span></h1>
<ul id="user-repositories-list">
{items}
</ul></main></body></html>
"""
        )

    # --- helpers -----------------------------------------------------------------------------

    def _json(self, payload: Any, status: int = 200) -> Response:
        response = Response.json(json.dumps(payload, ensure_ascii=False), status)
        response.headers.update(
            {"X-RateLimit-Limit": str(_RATE_LIMIT), "X-RateLimit-Remaining": str(_RATE_LIMIT - 1)}
        )
        return response

    def _error(self, status: int, message: str) -> Response:
        return self._json({"message": message, "documentation_url": "https://docs.github.com/rest"}, status)

    def _rate_limited(self) -> Response:
        response = Response.json(
            json.dumps(
                {
                    "message": "API rate limit exceeded for 127.0.0.1.",
                    "documentation_url": "https://docs.github.com/rest/rate-limit",
                }
            ),
            status=403,
        )
        response.headers.update(
            {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1893456000"}
        )
        return response
