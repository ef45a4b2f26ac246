"""The sample owner's writing, loaded from ``content/<platform>.yaml`` into mutable dataclasses.

Sites render from these objects on every request: tests change them (edit an article, drop a
post) and re-crawl. Bodies are Markdown-ish: paragraphs separated by blank lines, ``## `` headings,
fenced code blocks; each site renders them into its platform's own markup.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml


@dataclass
class Article:
    """A long-form piece: a Medium article, a Substack post, a personal blog page."""

    slug: str
    title: str
    body: str
    published: str  # ISO date, e.g. "2025-03-14"
    subtitle: str = ""
    tags: list[str] = field(default_factory=list)
    publication: str = ""  # the Medium publication the story appeared in, if any


@dataclass
class Post:
    """A short post (LinkedIn)."""

    id: str  # numeric activity id, as in urn:li:activity:<id>
    text: str
    published: str


@dataclass
class RepoFile:
    path: str
    content: str = ""
    binary: bool = False  # rendered as bytes with NULs (images, archives): must be skipped


@dataclass
class Repo:
    name: str
    description: str = ""
    default_branch: str = "main"
    fork: bool = False  # forks are not the owner's code: skipped
    language: str = ""
    files: list[RepoFile] = field(default_factory=list)


@dataclass
class DemoContent:
    owner: str
    handle: str
    medium: list[Article] = field(default_factory=list)
    substack: list[Article] = field(default_factory=list)
    linkedin: list[Post] = field(default_factory=list)
    github: list[Repo] = field(default_factory=list)
    web: list[Article] = field(default_factory=list)

    def copy(self) -> DemoContent:
        return copy.deepcopy(self)


def _load(name: str) -> Any:
    text = resources.files("twin.demo").joinpath("content", f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def load_demo_content() -> DemoContent:
    """A fresh, independent copy of the bundled sample (safe to mutate)."""
    owner = _load("owner")
    return DemoContent(
        owner=owner["owner"],
        handle=owner["handle"],
        medium=[Article(**a) for a in _load("medium").get("articles", [])],
        substack=[Article(**a) for a in _load("substack").get("posts", [])],
        linkedin=[Post(**p) for p in _load("linkedin").get("posts", [])],
        github=[
            Repo(**{**r, "files": [RepoFile(**f) for f in r.get("files", [])]})
            for r in _load("github").get("repos", [])
        ],
        web=[Article(**a) for a in _load("web").get("pages", [])],
    )
