"""Chunking: token limits hold for every input, no text is lost, code stays exact, output is stable.

Limits are checked with the real all-MiniLM-L6-v2 tokenizer (the model the chunks are embedded
with); a whitespace counter makes the structural tests easy to reason about.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from twin.adapters.tokens import HfTokenCounter, default_model_dir
from twin.demo.corpus import demo_documents
from twin.domain.chunking import TITLE_SEPARATOR, ChunkPolicy, chunk_document
from twin.domain.documents import Category, Platform
from twin.domain.features import Chunk, CleanedDocument

Counter = Callable[[str], int]
MODEL_TOKENS = 256
DEFAULT_POLICY = ChunkPolicy()


@pytest.fixture(scope="module")
def hf() -> HfTokenCounter:
    return HfTokenCounter(default_model_dir())


def words(text: str) -> int:
    return len(text.split())


def cleaned(
    content: str,
    category: Category = Category.ARTICLE,
    title: str = "A Title",
    metadata: dict[str, Any] | None = None,
) -> CleanedDocument:
    return CleanedDocument(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"{category}:{title}:{content[:50]}"),
        profile="alice",
        platform=Platform.GITHUB if category is Category.CODE else Platform.MEDIUM,
        category=category,
        url="https://example.com/x",
        title=title,
        content=content,
        raw_content_hash="h",
        lsn=1,
        committed_at=datetime(2025, 1, 1, tzinfo=UTC),
        metadata=metadata or {},
    )


DEMO = list(demo_documents())


# ----------------------------------------------------------------------------------- invariants


def limit_of(doc: CleanedDocument, policy: ChunkPolicy, max_model_tokens: int) -> int:
    return min(policy.max_tokens(doc.category), max_model_tokens - 2)


def check_chunks(
    doc: CleanedDocument,
    chunks: list[Chunk],
    count: Counter,
    policy: ChunkPolicy = DEFAULT_POLICY,
    max_model_tokens: int = MODEL_TOKENS,
) -> None:
    """Every invariant a chunking must keep, whatever the input."""
    limit = limit_of(doc, policy, max_model_tokens)
    assert chunks, "a document with text has at least one chunk"
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.document_id == doc.id
        assert c.token_count == count(c.text) <= limit, (c.position, c.token_count, limit)
        assert c.content_hash == hashlib.sha256(c.text.encode()).hexdigest()
        assert c.text.strip()
    if count(doc.content) <= limit // 2 and len(doc.content) < limit:
        assert len(chunks) == 1
    if doc.category is Category.CODE:
        check_code_coverage(doc, chunks)
    else:
        check_prose_coverage(doc, chunks)


def check_code_coverage(doc: CleanedDocument, chunks: list[Chunk]) -> None:
    lines = doc.content.splitlines(keepends=True)
    covered: set[int] = set()
    split_lines: dict[int, list[str]] = {}
    for c in chunks:
        first, last = c.metadata["lines"]
        assert 1 <= first <= last <= len(lines)
        exact = "".join(lines[first - 1 : last])
        if c.text == exact:
            covered.update(range(first, last + 1))
        else:  # a line too long for one chunk, in pieces
            assert first == last, "only a single over-long line is ever cut inside"
            assert c.text in lines[first - 1]
            split_lines.setdefault(first, []).append(c.text)
    for number, pieces in split_lines.items():
        assert "".join("".join(pieces).split()) == "".join(lines[number - 1].split()), "pieces lose nothing"
        covered.add(number)
    missing = [i + 1 for i, line in enumerate(lines) if line.strip() and i + 1 not in covered]
    assert not missing, f"{doc.title}: lines {missing} are in no chunk"
    starts = [c.metadata["lines"][0] for c in chunks]
    assert starts == sorted(starts)


def body_of(doc: CleanedDocument, chunk: Chunk) -> str:
    """A prose chunk's text without the "Title — Section" prefix."""
    section = chunk.metadata.get("section")
    title = doc.title.strip()
    prefixes = [f"{title}{TITLE_SEPARATOR}{section}\n\n", f"{section}\n\n"] if section else [f"{title}\n\n"]
    if doc.category is Category.ARTICLE:
        for prefix in prefixes:
            if chunk.text.startswith(prefix):
                return chunk.text[len(prefix) :]
    return chunk.text


def check_prose_coverage(doc: CleanedDocument, chunks: list[Chunk]) -> None:
    """Each chunk body is a slice of the content, in order, and together they cover all of it."""
    content = doc.content
    covered = [False] * len(content)
    cursor = end = 0
    for c in chunks:
        body = body_of(doc, c)
        if doc.category is Category.ARTICLE and "section" in c.metadata:
            assert f"\n## {c.metadata['section']}" in f"\n{content}"
        section = c.metadata.get("section")
        if section and c.text in (f"{doc.title.strip()}{TITLE_SEPARATOR}{section}", section):
            continue  # a heading with no body under it: the chunk is the heading itself
        # Right after the previous chunk (no overlap), else the next match after its start.
        following = end
        while following < len(content) and content[following].isspace():
            following += 1
        at = following if content.startswith(body, following) else content.find(body, cursor)
        assert at != -1, f"{doc.title}: chunk {c.position} is not a slice of the content: {body[:80]!r}"
        for i in range(at, at + len(body)):
            covered[i] = True
        cursor, end = at + 1, at + len(body)
    headings = {m.start(): m.end() for m in re.finditer(r"(?m)^## .*$", content)}
    for start, end in headings.items():  # heading lines are in the chunks' prefixes
        for i in range(start, end):
            covered[i] = True
    lost = [i for i, ch in enumerate(content) if not ch.isspace() and not covered[i]]
    assert not lost, f"{doc.title}: text lost at {lost[:5]}: {content[lost[0] : lost[0] + 60]!r}"


# ------------------------------------------------------------------------------------ demo content


@pytest.mark.parametrize(("title", "doc"), DEMO, ids=[t for t, _ in DEMO])
def test_demo_documents_chunk_within_limits_and_lose_nothing(
    title: str, doc: CleanedDocument, hf: HfTokenCounter
) -> None:
    chunks = chunk_document(doc, hf)
    check_chunks(doc, chunks, hf)
    assert chunk_document(doc, hf) == chunks, "same input, same chunks"


def test_demo_covers_every_category() -> None:
    assert {doc.category for _, doc in DEMO} == set(Category)
    assert sum(1 for _, doc in DEMO if doc.category is Category.ARTICLE) >= 10


def test_demo_articles_split_along_sections(hf: HfTokenCounter) -> None:
    multi = 0
    for _, doc in DEMO:
        if doc.category is not Category.ARTICLE:
            continue
        chunks = chunk_document(doc, hf)
        if len(chunks) == 1:
            continue
        multi += 1
        headings = re.findall(r"(?m)^## (.*)$", doc.content)
        sections = [c.metadata["section"] for c in chunks if "section" in c.metadata]
        assert sections, doc.title
        assert [h for h in headings if h in sections] == list(dict.fromkeys(sections)), (
            "sections in document order"
        )
        for c in chunks:
            if "section" in c.metadata:
                assert c.text.startswith(f"{doc.title}{TITLE_SEPARATOR}{c.metadata['section']}\n\n")
            else:
                assert c.text.startswith(f"{doc.title}\n\n")
    assert multi >= 10


def test_demo_code_follows_definitions(hf: HfTokenCounter) -> None:
    (doc,) = [d for t, d in DEMO if t == "pgsync-lite/pgsync_lite/slot.py"]
    chunks = chunk_document(doc, hf)
    assert len(chunks) > 1
    starts = [c.text.split("\n", 1)[0] for c in chunks]
    assert any(s.startswith("def parse_wal2json") for s in starts)
    assert any(s.startswith("def peek") for s in starts)


def test_whitespace_counter_gives_the_same_guarantees() -> None:
    policy = ChunkPolicy(
        post_max_tokens=30,
        post_overlap_tokens=6,
        article_max_tokens=40,
        article_overlap_tokens=8,
        code_max_tokens=40,
    )
    for _, doc in DEMO:
        chunks = chunk_document(doc, words, policy)
        check_chunks(doc, chunks, words, policy)
        assert chunk_document(doc, words, policy) == chunks


# --------------------------------------------------------------------------------- small documents


@pytest.mark.parametrize("category", list(Category))
def test_a_document_under_the_limit_is_one_chunk(category: Category, hf: HfTokenCounter) -> None:
    content = (
        "def f():\n    return 1\n" if category is Category.CODE else "One short paragraph.\n\nAnd another."
    )
    doc = cleaned(content, category, title="Short")
    (chunk,) = chunk_document(doc, hf)
    if category is Category.CODE:
        assert chunk.text == content
        assert chunk.metadata == {"lines": [1, 2]}
    elif category is Category.ARTICLE:
        assert chunk.text == f"Short\n\n{content}"
    else:
        assert chunk.text == content


def test_empty_content_has_no_chunks() -> None:
    assert chunk_document(cleaned("  \n\n ", Category.POST), words) == []


# ------------------------------------------------------------------------------------ structure


def sentences(n: int, prefix: str = "s") -> str:
    return " ".join(f"{prefix}{i} alpha beta gamma delta." for i in range(n))


def shared_sentences(prev: str, nxt: str) -> str:
    """The longest run of whole trailing sentences of ``prev`` that ``nxt`` starts with."""
    parts = prev.split(". ")
    for i in range(1, len(parts)):
        suffix = ". ".join(parts[i:])
        if nxt.startswith(suffix):
            return suffix
    return ""


def test_article_overlap_repeats_trailing_sentences_within_a_section() -> None:
    policy = ChunkPolicy(article_max_tokens=40, article_overlap_tokens=12)
    content = f"## One\n\n{sentences(30, 'a')}\n\n## Two\n\n{sentences(30, 'b')}"
    doc = cleaned(content, title="T")
    chunks = chunk_document(doc, words, policy)
    check_chunks(doc, chunks, words, policy)
    for prev, nxt in itertools.pairwise(chunks):
        prev_body, next_body = body_of(doc, prev), body_of(doc, nxt)
        if prev.metadata == nxt.metadata:
            repeated = shared_sentences(prev_body, next_body)
            assert repeated, "the next chunk starts by repeating the previous one's last sentences"
            assert words(repeated) <= 12
        else:  # never across sections
            assert not next_body.startswith("a"), "section Two does not repeat section One"


def test_post_overlap_and_sentence_packing() -> None:
    policy = ChunkPolicy(post_max_tokens=20, post_overlap_tokens=5)
    doc = cleaned(sentences(20), Category.POST)
    chunks = chunk_document(doc, words, policy)
    check_chunks(doc, chunks, words, policy)
    assert len(chunks) > 3
    for prev, nxt in itertools.pairwise(chunks):
        assert shared_sentences(prev.text, nxt.text) == prev.text.rsplit(". ", 1)[-1]  # 5 words: one sentence
        assert prev.text.endswith(".")  # cut at sentence ends


def test_fenced_code_blocks_stay_whole_when_they_fit(hf: HfTokenCounter) -> None:
    code = "```python\ndef add(a, b):\n\n    return a + b\n```"
    content = f"## Code\n\n{sentences(40)}\n\n{code}\n\n{sentences(40, 't')}"
    doc = cleaned(content)
    chunks = chunk_document(doc, hf)
    check_chunks(doc, chunks, hf)
    assert sum(code in c.text for c in chunks) >= 1
    for c in chunks:
        assert ("```python" in c.text) == (code in c.text), "a fitting code block is never cut"


def test_code_groups_small_definitions_with_their_decorators() -> None:
    functions = [f"@register\n@cache(size={i})\ndef f{i}(x):\n    return x + {i}\n" for i in range(12)]
    content = (
        "import functools\n\n\n"
        + "\n\n".join(functions)
        + "\n\nclass Big:\n"
        + "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(30))
    )
    doc = cleaned(
        content, Category.CODE, title="repo/mod.py", metadata={"path": "mod.py", "language": "Python"}
    )
    policy = ChunkPolicy(code_max_tokens=40)
    chunks = chunk_document(doc, words, policy)
    check_chunks(doc, chunks, words, policy)
    for c in chunks:
        first = c.text.split("\n", 1)[0]
        assert not first.startswith("def "), "a definition's decorators travel with it"
        if "def f" in c.text:
            assert first.startswith(("@register", "import functools"))
    assert any(c.text.count("@register") > 1 for c in chunks), "small definitions are grouped"
    big = [c for c in chunks if "m0(self)" in c.text or "m29(self)" in c.text]
    assert big, "the large class is windowed"


def test_code_windows_overlap_when_there_are_no_definitions() -> None:
    content = "".join(f"echo line {i}\n" for i in range(1, 201))
    doc = cleaned(
        content, Category.CODE, title="repo/run.sh", metadata={"path": "run.sh", "language": "Shell"}
    )
    chunks = chunk_document(doc, words, ChunkPolicy(code_max_tokens=200))
    check_chunks(doc, chunks, words)
    ranges = [c.metadata["lines"] for c in chunks]
    assert ranges[0] == [1, 40]
    for (a1, b1), (a2, b2) in itertools.pairwise(ranges):
        assert b1 - a1 + 1 <= 40 and b2 - a2 + 1 <= 40
        assert a2 == b1 - 4, "5 lines of overlap"
    assert ranges[-1][1] == 200


@pytest.mark.parametrize(
    ("path", "language", "source", "heads"),
    [
        (
            "x.go",
            "Go",
            "package x\n\n// Add adds.\nfunc Add(a, b int) int {\n\treturn a + b\n}\n",
            ["// Add adds."],
        ),
        (
            "x.ts",
            "TypeScript",
            "import a from 'a';\n\nexport function f() {\n  return 1;\n}\n",
            ["export function f"],
        ),
        (
            "y.js",
            "JavaScript",
            "const a = 1;\n\n/**\n * Doubles.\n */\nfunction double(x) {\n  return 2 * x;\n}\n",
            ["/**"],
        ),
        (
            "x.rs",
            "Rust",
            "use std::io;\n\n#[derive(Debug)]\npub struct S;\n\nimpl S {\n    fn f(&self) {}\n}\n",
            ["#[derive(Debug)]", "impl S {"],
        ),
    ],
)
def test_definition_boundaries_per_language(path: str, language: str, source: str, heads: list[str]) -> None:
    body = source * 20
    doc = cleaned(body, Category.CODE, title=f"repo/{path}", metadata={"path": path, "language": language})
    policy = ChunkPolicy(code_max_tokens=12)
    chunks = chunk_document(doc, words, policy)
    check_chunks(doc, chunks, words, policy)
    firsts = {c.text.split("\n", 1)[0] for c in chunks}
    for head in heads:
        assert any(f.startswith(head) for f in firsts), (head, firsts)


# ---------------------------------------------------------------------------------- pathological


def test_one_giant_paragraph_without_punctuation(hf: HfTokenCounter) -> None:
    content = " ".join(f"word{i} and some more filler" for i in range(2000))
    for category in (Category.ARTICLE, Category.POST):
        doc = cleaned(content, category)
        chunks = chunk_document(doc, hf)
        check_chunks(doc, chunks, hf)
        assert len(chunks) > 10


def test_one_giant_line_of_sentences(hf: HfTokenCounter) -> None:
    doc = cleaned("## Only\n\n" + sentences(800), title="A " * 10)
    check_chunks(doc, chunk_document(doc, hf), hf)


def test_code_file_of_5000_tokens_without_newlines(hf: HfTokenCounter) -> None:
    line = "".join(f"var a{i}=f(b{i},c{i});" for i in range(700))
    assert hf(line) > 5000
    for content in (line, line.replace(";", "; ")):
        doc = cleaned(content, Category.CODE, title="repo/app.min.js", metadata={"path": "app.min.js"})
        chunks = chunk_document(doc, hf)
        check_chunks(doc, chunks, hf)
        assert all(c.metadata == {"lines": [1, 1]} for c in chunks)
        if " " not in content:
            assert "".join(c.text for c in chunks) == content, "hard splits are exact and contiguous"


def test_one_giant_word_is_hard_split_with_a_character_cap(hf: HfTokenCounter) -> None:
    blob = "QUJD" * 25_000  # 100k characters of base64: one [UNK] to WordPiece
    doc = cleaned(f"Intro.\n\n{blob}\n\nOutro.", Category.POST)
    chunks = chunk_document(doc, hf)
    check_chunks(doc, chunks, hf)
    assert max(len(c.text) for c in chunks) <= ChunkPolicy().max_chars_per_token * 128


def test_cjk_text_without_spaces(hf: HfTokenCounter) -> None:
    doc = cleaned("幂等性是凌晨三点唯一重要的特性" * 200, Category.ARTICLE, title="幂等")
    check_chunks(doc, chunk_document(doc, hf), hf)


def test_giant_title_and_heading_do_not_crowd_out_the_text(hf: HfTokenCounter) -> None:
    title = "Very long title " * 60
    doc = cleaned(f"## {'Heading ' * 200}\n\n{sentences(200)}", title=title)
    chunks = chunk_document(doc, hf)
    check_chunks(doc, chunks, hf)
    assert all(not c.text.startswith(title.strip()) for c in chunks)


def test_giant_code_block_in_an_article(hf: HfTokenCounter) -> None:
    code = (
        "```sql\n"
        + "".join(f"    SELECT {i} AS column_{i}, 'value' FROM t{i};\n" for i in range(300))
        + "```"
    )
    doc = cleaned(f"## SQL\n\nBefore.\n\n{code}\n\nAfter.")
    chunks = chunk_document(doc, hf)
    check_chunks(doc, chunks, hf)
    assert any("\n    SELECT" in c.text for c in chunks), "code lines keep their indentation"


def test_a_small_model_limit_is_respected(hf: HfTokenCounter) -> None:
    for _, doc in DEMO[:: max(1, len(DEMO) // 12)]:
        chunks = chunk_document(doc, hf, max_model_tokens=34)
        check_chunks(doc, chunks, hf, max_model_tokens=34)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="code_overlap_lines"):
        ChunkPolicy(code_window_lines=5, code_overlap_lines=5)
    with pytest.raises(ValueError, match="post_max_tokens"):
        ChunkPolicy(post_max_tokens=0)
    with pytest.raises(ValueError, match="no room"):
        chunk_document(cleaned("x"), words, max_model_tokens=2)
    assert replace(ChunkPolicy(), post_max_tokens=64).max_tokens(Category.POST) == 64


def test_defaults() -> None:
    policy = ChunkPolicy()
    assert (policy.max_tokens(Category.POST), policy.overlap_tokens(Category.POST)) == (128, 16)
    assert (policy.max_tokens(Category.ARTICLE), policy.overlap_tokens(Category.ARTICLE)) == (200, 32)
    assert (policy.max_tokens(Category.CODE), policy.code_window_lines, policy.code_overlap_lines) == (
        200,
        40,
        5,
    )


# ------------------------------------------------------------------------------------ the counter


def test_hf_counter_counts_without_special_tokens_or_truncation(hf: HfTokenCounter) -> None:
    assert hf("") == 0
    assert hf("hello world") == hf.count("hello world") == 2
    assert hf("hello " * 1000) == 1000, "the tokenizer.json's truncation (128) is switched off"


def test_default_model_dir_holds_the_tokenizer() -> None:
    from pathlib import Path

    assert (Path(default_model_dir()) / "tokenizer.json").is_file()
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        default_model_dir("no_such_model_package_xyz")


def test_a_heading_without_a_body_stays_findable() -> None:
    doc = cleaned(f"{sentences(30)}\n\n## Empty\n\n## Full\n\n{sentences(30, 'f')}", title="T")
    chunks = chunk_document(doc, words, ChunkPolicy(article_max_tokens=60))
    check_chunks(doc, chunks, words, ChunkPolicy(article_max_tokens=60))
    assert any(c.text == f"T{TITLE_SEPARATOR}Empty" and c.metadata == {"section": "Empty"} for c in chunks)
