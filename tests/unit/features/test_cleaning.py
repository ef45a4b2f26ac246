"""Cleaning raw documents: tidy Markdown-ish prose, code untouched, garbage refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from twin.domain.cleaning import clean_document, clean_markdown
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument
from twin.domain.errors import PoisonEvent

COMMITTED = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def raw(content: str, category: Category = Category.ARTICLE, **changes: Any) -> RawDocument:
    extracted = ExtractedDocument(
        canonical_url="https://medium.com/@alice/a",
        category=category,
        title=changes.pop("title", "A Title"),
        content=content,
        metadata=changes.pop("metadata", {"tags": ["x"]}),
    )
    return RawDocument.from_extracted(
        extracted,
        profile="alice",
        platform=changes.pop("platform", Platform.MEDIUM),
        source_url="https://medium.com/@alice",
        fetched_at=COMMITTED,
        crawl_run_id=uuid.UUID(int=5),
    )


def test_identity_and_provenance_are_carried() -> None:
    doc = raw("Hello world.", metadata={"tags": ["a", "b"], "nested": {"k": [1]}})
    cleaned = clean_document(doc, lsn=42, committed_at=COMMITTED)
    assert cleaned.id == doc.id
    assert cleaned.profile == "alice"
    assert cleaned.platform is Platform.MEDIUM
    assert cleaned.category is Category.ARTICLE
    assert cleaned.url == doc.canonical_url
    assert cleaned.raw_content_hash == doc.content_hash
    assert cleaned.lsn == 42
    assert cleaned.committed_at == COMMITTED
    assert cleaned.metadata == doc.metadata
    cleaned.metadata["nested"]["k"].append(2)  # a copy: the raw document is left alone
    assert doc.metadata["nested"] == {"k": [1]}


def test_markdown_structure_survives() -> None:
    text = (
        "Intro   paragraph with  spaces.   \n\n\n\n"
        "## A heading\n\n"
        "First line\nsecond line.\n\n"
        "```python\n"
        "def f(x):\n"
        "    if x:\n"
        "\treturn  1\n"
        "\n"
        "    return 2\n"
        "```\n\n\n"
        "After the code."
    )
    assert clean_markdown(text) == (
        "Intro paragraph with spaces.\n\n"
        "## A heading\n\n"
        "First line\nsecond line.\n\n"
        "```python\n"
        "def f(x):\n"
        "    if x:\n"
        "\treturn  1\n"
        "\n"
        "    return 2\n"
        "```\n\n"
        "After the code."
    )


def test_invisible_and_control_characters_go() -> None:
    text = "Zero\u200bwidth\u200d and\u00ad soft\ufeff.\x07 Bell\x1b[0m.\r\nNew line\u2028here.\tTab."
    assert clean_markdown(text) == "Zerowidth and soft. Bell[0m.\nNew line\nhere. Tab."


def test_nfkc() -> None:
    assert (
        clean_markdown("\ufb01ne \uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \u2460 x\u00a0y")
        == "fine fullwidth 1 x y"
    )


def test_html_residue_is_stripped_and_entities_decoded() -> None:
    text = (
        "<p>Hello <b>bold</b> &amp; <i>italic</i>&nbsp;text.</p><p>Second<br>line</p>"
        "<script>alert('x')</script><!-- a comment -->\n\n"
        "Compare a &lt; b and c > d; literal &lt;div&gt; stays text. Use `<br>` in code."
    )
    assert clean_markdown(text) == (
        "Hello bold & italic text.\n\n"
        "Second\nline\n\n"
        "Compare a < b and c > d; literal <div> stays text. Use `<br>` in code."
    )


def test_markdown_links_and_images_keep_their_text() -> None:
    text = (
        'See [the docs](https://example.com/docs "Docs") and ![a diagram](img/arch.png).\n'
        "A [wiki link](https://en.wikipedia.org/wiki/Idempotence_(computing)) and [ref text][1].\n"
        "Autolink <https://example.com/x> stays as its URL. ![](decorative.png)\n\n"
        "[1]: https://example.com/ref"
    )
    assert clean_markdown(text) == (
        "See the docs and a diagram.\n"
        "A wiki link and ref text.\n"
        "Autolink https://example.com/x stays as its URL."
    )


def test_fenced_code_is_not_cleaned_like_prose() -> None:
    text = 'Text <b>x</b>.\n\n~~~html\n<div class="a">  [x](y) &amp;</div>\n~~~\n'
    assert clean_markdown(text) == 'Text x.\n\n~~~html\n<div class="a">  [x](y) &amp;</div>\n~~~'


def test_unclosed_fence_runs_to_the_end_and_is_closed() -> None:
    assert clean_markdown("Intro.\n\n```\ncode  <b>\n") == "Intro.\n\n```\ncode  <b>\n```"


def test_posts_are_cleaned_too() -> None:
    text = "I got paged at 3:12 a.m.   \n\n\n- one\n- two\n\n#dataengineering &#8203;"
    cleaned = clean_document(
        raw(text, Category.POST, platform=Platform.LINKEDIN), lsn=1, committed_at=COMMITTED
    )
    assert cleaned.content == "I got paged at 3:12 a.m.\n\n- one\n- two\n\n#dataengineering"


def test_code_is_kept_byte_for_byte() -> None:
    code = "package main\r\n\n\tfunc  main() {\u200b}\n\n\n   \n# <b>not html</b> [x](y)\n\n"
    doc = raw(code, Category.CODE, title="  repo/\u200bmain.go ", metadata={"path": "main.go"})
    cleaned = clean_document(doc, lsn=1, committed_at=COMMITTED)
    assert cleaned.content == code
    assert cleaned.title == "repo/main.go"
    assert cleaned.metadata == {"path": "main.go"}


def test_titles_are_one_clean_line() -> None:
    doc = raw("Body.", title="Postgres &amp; <em>Upserts</em>\n  Without\u00a0Tears")
    assert clean_document(doc, lsn=1, committed_at=COMMITTED).title == "Postgres & Upserts Without Tears"


@pytest.mark.parametrize(
    ("content", "category"),
    [
        ("   \n\n\t ", Category.ARTICLE),
        ("<div><img src='x.png'></div>", Category.ARTICLE),
        ("\u200b\u200b\n", Category.POST),
        ("\n\n  \n", Category.CODE),
    ],
)
def test_nothing_left_is_poison(content: str, category: Category) -> None:
    with pytest.raises(PoisonEvent, match="no text left after cleaning"):
        clean_document(raw(content, category), lsn=1, committed_at=COMMITTED)


@pytest.mark.parametrize("category", list(Category))
def test_replacement_garbage_is_poison(category: Category) -> None:
    garbage = "Caf\ufffd na\ufffdve " * 20
    with pytest.raises(PoisonEvent, match=r"are U\+FFFD"):
        clean_document(raw(garbage, category), lsn=1, committed_at=COMMITTED)


def test_a_stray_replacement_character_is_tolerated() -> None:
    text = "A long enough paragraph of ordinary words. " * 5 + "One bad \ufffd byte."
    article = clean_document(raw(text), lsn=1, committed_at=COMMITTED)
    assert "\ufffd" not in article.content
    code = clean_document(raw(text, Category.CODE), lsn=1, committed_at=COMMITTED)
    assert code.content == text


def test_cleaning_is_idempotent_on_the_demo_articles() -> None:
    from twin.demo.content import load_demo_content

    demo = load_demo_content()
    for article in [*demo.medium, *demo.substack, *demo.web]:
        once = clean_markdown(article.body)
        assert clean_markdown(once) == once, article.slug
        # The demo bodies are already clean Markdown: cleaning keeps every heading and fence.
        assert once.count("\n## ") == article.body.count("\n## ")
        assert once.count("```") == article.body.count("```")
