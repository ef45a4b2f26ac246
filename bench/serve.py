"""Serving: latency through our endpoint vs the engine called directly, and concurrency, same run.

Setup: the sample owner's writing embedded in a fresh embedded Postgres, one LoRA adapter registered
as champion in a fresh MLflow, the same engine settings for both paths (vLLM, or ``--engine
transformers``).

1. ``direct``: the chat engine in this process (no HTTP, no Ray Serve, no auth, no retrieval),
   given the very prompt the endpoint builds (persona, platform rules and the retrieved context),
   with the adapter: N sequential requests.
2. ``ours``: ``twin serve`` in a subprocess and the real ``openai`` client: the same question N times
   sequentially (HTTP, auth, embedding the question, pgvector retrieval, Ray Serve handle, SSE off),
   then 16 concurrent clients.

Latency is request start to full answer; every request generates exactly ``--tokens`` tokens
(``ignore_eos`` is not an OpenAI parameter, so the prompt asks for a long answer and the cap cuts it).
The last line printed is JSON with ``ours_p50_s``, ``direct_p50_s``, ``latency_ratio`` (goal <= 1.10),
``sequential_tokens_per_s``, ``concurrent16_tokens_per_s`` and ``concurrency_ratio``.
Run: ``make bench-serve`` or ``.venv/bin/python bench/serve.py --requests 8``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

QUESTION = "Write an article about how you make a pipeline safe to run twice."
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(home: Path, dsn: str) -> None:
    """Embedded chunks of the sample owner's writing, and a registered champion adapter."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.serving import BASE_MODEL, local_registry, make_adapter, register, seed_profiles
    from twin.adapters.hf_models import resolve_base_model
    from twin.settings import Settings

    seed_profiles(dsn)
    path = resolve_base_model(BASE_MODEL, Settings().training.model_cache_dir)
    adapter = make_adapter(path, home / "adapter", seed=1, rank=16)
    register(local_registry(home), "alice", adapter, alias="champion")


def settings_env(home: Path, dsn: str, engine: str) -> dict[str, str]:
    return {
        "TWIN_DATABASE__DSN": dsn,
        "TWIN_HOME": str(home),
        "TWIN_SERVING__API_KEYS": json.dumps([KEY]),
        "TWIN_SERVING__ENGINE": engine,
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(home / "adapters"),
        "TWIN_SERVING__REQUEST_LOG": "true",
    }


async def direct(env: dict[str, str], args: argparse.Namespace) -> list[float]:
    """The engine alone, on the endpoint's own prompt."""
    os.environ.update(env)
    from twin import wiring
    from twin.cli.common import SAMPLE_PROFILE, load_profile
    from twin.domain.generation import GenerationParams
    from twin.serving.engine_server import EngineServer
    from twin.serving.grounding import Rag, chat_messages
    from twin.serving.schemas import ChatCompletionRequest
    from twin.settings import Settings

    settings = Settings()
    profile = load_profile(SAMPLE_PROFILE)
    deps = wiring.serving_deps(settings, profile)  # the factories the Serve deployments get
    server = EngineServer(profile, settings.serving, deps.engine, deps.registry)
    await server.sync()  # the champion, loaded
    adapter = server.current
    assert adapter is not None
    rag = Rag(settings.serving, profile.name, deps.embedder(), deps.retriever, deps.link_reader())
    grounding = rag.ground(QUESTION, [], target=None, retrieval=True, fetch_links=False)
    request = ChatCompletionRequest(model="twin-alice", messages=[{"role": "user", "content": QUESTION}])
    messages = chat_messages(profile.spec.owner.display_name, request.messages, grounding)
    ids = server.engine.chat_prompt(messages)
    params = GenerationParams(max_tokens=args.tokens, temperature=0.0)
    latencies = []
    for i in range(args.requests + 1):
        started = time.perf_counter()
        tokens = 0
        async for delta in server.engine.generate(ids, params, adapter, uuid.uuid4().hex):
            tokens += delta.tokens
        if i:  # the first is a warm-up
            latencies.append(time.perf_counter() - started)
    await server.engine.shutdown()
    print(
        f"direct: prompt {len(ids)} tokens, {tokens} generated, p50 {statistics.median(latencies):.2f}s",
        file=sys.stderr,
    )
    return latencies


def ask(client: Any, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model="twin-alice", messages=[{"role": "user", "content": QUESTION}], max_tokens=tokens, temperature=0
    )
    return time.perf_counter() - started, reply.usage.completion_tokens


def ours(env: dict[str, str], home: Path, args: argparse.Namespace) -> dict[str, Any]:
    import openai

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.serving import twin_server
    from support.twin_cli import SAMPLE_PROFILE

    with twin_server(SAMPLE_PROFILE, env, home, free_port(), timeout=600) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=900, max_retries=0)
        ask(client, args.tokens)  # warm-up
        sequential = [ask(client, args.tokens) for _ in range(args.requests)]
        results: list[tuple[float, int]] = []
        lock = threading.Lock()

        def one() -> None:
            c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=900, max_retries=0)
            result = ask(c, args.tokens)
            with lock:
                results.append(result)

        began = time.perf_counter()
        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent_s = time.perf_counter() - began
    seq_s = sum(s for s, _ in sequential)
    return {
        "latencies": [s for s, _ in sequential],
        "sequential_tokens_per_s": sum(n for _, n in sequential) / seq_s,
        "concurrent_tokens_per_s": sum(n for _, n in results) / concurrent_s,
        "concurrent_p50_s": statistics.median(s for s, _ in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=("vllm", "transformers"), default="vllm")
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--worker", choices=("direct",), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "direct":  # the engine in its own process: vLLM wants a clean one
        env = json.loads(os.environ["BENCH_ENV"])
        print(json.dumps(asyncio.run(direct(env, args))))
        return

    from twin.adapters.embedded_postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        pg = EmbeddedPostgres(home / "pg", free_port())
        dsn = pg.start()
        try:
            prepare(home, dsn)
            env = settings_env(home, dsn, args.engine)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    "direct",
                    "--requests",
                    str(args.requests),
                    "--tokens",
                    str(args.tokens),
                ],
                env={**os.environ, "BENCH_ENV": json.dumps(env)},
                capture_output=True,
                text=True,
                check=True,
            )
            direct_latencies = json.loads(out.stdout.strip().splitlines()[-1])
            mine = ours(env, home, args)
        finally:
            pg.stop()
    ours_p50, direct_p50 = statistics.median(mine["latencies"]), statistics.median(direct_latencies)
    print(
        json.dumps(
            {
                "engine": args.engine,
                "requests": args.requests,
                "tokens_per_request": args.tokens,
                "ours_p50_s": round(ours_p50, 3),
                "direct_p50_s": round(direct_p50, 3),
                "latency_ratio": round(ours_p50 / direct_p50, 3),
                "sequential_tokens_per_s": round(mine["sequential_tokens_per_s"], 2),
                "concurrent16_tokens_per_s": round(mine["concurrent_tokens_per_s"], 2),
                "concurrent16_p50_s": round(mine["concurrent_p50_s"], 2),
                "concurrency_ratio": round(
                    mine["concurrent_tokens_per_s"] / mine["sequential_tokens_per_s"], 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
