"""Serving on the transformers engine (the fallback for machines without vLLM): the same API, the
same registry and hot swap, prompt logging switched off, and schemathesis fuzzing the served OpenAPI
document (no 5xx, no hang). The server caps completions at 4 tokens so fuzzed requests stay quick.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import psycopg
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

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
from twin.adapters.mlflow_store import MlflowStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KEY = "test-key-transformers"
CHAT_MODELS = ["twin-alice", "twin-alice@2", "twin-alice@candidate", BASE_MODEL]
EMBEDDING_MODELS = ["all-MiniLM-L6-v2"]


@pytest.fixture(scope="module")
def server(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from twin.adapters.hf_models import resolve_base_model
    from twin.settings import Settings

    home = tmp_path_factory.mktemp("serve-tf")
    (home / "mlflow").mkdir()
    store = MlflowStore(
        f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", (home / "mlflow" / "artifacts").as_uri()
    )
    path = resolve_base_model(BASE_MODEL, Settings().training.model_cache_dir)
    register(store, "alice", make_adapter(path, home / "a1", seed=11), alias="champion")
    register(store, "alice", make_adapter(path, home / "a2", seed=12))
    seed_profiles(pg_dsn)
    profile = home / "alice.yaml"
    profile.write_text(yaml.safe_dump(yaml.safe_load(SAMPLE_PROFILE.read_text())))
    env = {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(home),
        "TWIN_SERVING__API_KEYS": json.dumps([KEY]),
        "TWIN_SERVING__ENGINE": "transformers",
        "TWIN_SERVING__REGISTRY_POLL_S": "1",
        "TWIN_SERVING__MAX_TOKENS_LIMIT": "4",
        "TWIN_SERVING__DEFAULT_MAX_TOKENS": "4",
        "TWIN_SERVING__LOG_PROMPTS": "false",
        "TWIN_SERVING__RAG_MAX_CONTEXT_CHARS": "800",
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(home / "adapters"),
        "TWIN_TEST_KEY": KEY,
    }
    with twin_server(profile, env, home, free_port()) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=300, max_retries=0)


def test_chat_on_the_transformers_engine_with_the_champion_adapter(
    client: openai.OpenAI, server: Server
) -> None:
    status = httpx.get(f"{server.url}/ready", timeout=30).json()
    assert status["engine"] == "transformers" and status["model_version"] == 1
    reply = client.chat.completions.create(
        model="twin-alice",
        messages=[{"role": "user", "content": "How do I make a pipeline safe to run twice?"}],
    )
    assert reply.usage.completion_tokens <= 4 and reply.model_extra["twin"]["model_version"] == 1
    assert reply.model_extra["twin"]["citations"] and "Sources:" in reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model=BASE_MODEL, messages=[{"role": "user", "content": "Say hi"}], stream=True, temperature=0
        )
    )
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["twin"]["model_version"] is None  # the base model
    text = client.completions.create(model="twin-alice@2", prompt="Idempotency is", max_tokens=4)
    assert text.model_extra["twin"]["model_version"] == 2 and text.choices[0].text


def test_prompt_logging_can_be_switched_off(client: openai.OpenAI, pg_dsn: str) -> None:
    reply = client.chat.completions.create(
        model="twin-alice", messages=[{"role": "user", "content": "A secret: 42"}]
    )
    request_id = reply.id.removeprefix("chatcmpl-")

    def row() -> Any:
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT prompt, response, completion_tokens, model_version FROM serving_requests"
                " WHERE request_id = %s",
                (request_id,),
            ).fetchone()

    wait_until(lambda: row() is not None, 30, "the request log row")
    prompt, response, tokens, version = row()
    assert prompt is None and response is None  # privacy: nothing of the conversation is kept
    assert tokens == reply.usage.completion_tokens and version == 1


def test_hot_swap_and_rollback_on_the_transformers_engine(client: openai.OpenAI, server: Server) -> None:
    def version() -> int | None:
        reply = client.chat.completions.create(
            model="twin-alice",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"twin": {"retrieval": False}},
        )
        value: int | None = reply.model_extra["twin"]["model_version"]
        return value

    assert twin_cli(server, "promote", "-p", "alice", "--version", "2").returncode == 0
    wait_until(lambda: version() == 2, 60, "version 2")
    assert twin_cli(server, "promote", "-p", "alice", "--version", "1").returncode == 0
    wait_until(lambda: version() == 1, 60, "version 1 again")


def test_a_vanishing_temperature_decodes_greedily(client: openai.OpenAI) -> None:
    """Found by the fuzzer: temperature 5e-324 overflowed the logits and sampling failed with a 500."""
    texts = {
        temperature: client.completions.create(
            model="twin-alice",
            prompt="Idempotent pipelines",
            max_tokens=4,
            temperature=temperature,
            top_p=5e-324 if temperature else 1.0,
        )
        .choices[0]
        .text
        for temperature in (0.0, 5e-324)
    }
    assert texts[0.0] and texts[0.0] == texts[5e-324]


def test_an_empty_prompt_completes_from_the_start_token(client: openai.OpenAI) -> None:
    """Found by the fuzzer: an empty prompt tokenised to nothing and generation failed with a 500."""
    for prompt in ("", [""]):
        reply = client.completions.create(model="twin-alice", prompt=prompt, max_tokens=2, temperature=0)
        assert reply.usage.prompt_tokens == 1 and reply.usage.completion_tokens >= 1


# Well-formed requests every run makes on top of the generated ones, so the success path of each
# generation endpoint is always exercised, whatever hypothesis draws (the constraints the server adds
# beyond the schema, a user message with text and max_tokens under the cap, reject most drawn bodies).
VALID_BODIES: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"model": "twin-alice", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        {"model": BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ],
    "/v1/completions": [
        {"model": "twin-alice", "prompt": "Idempotent pipelines", "max_tokens": 3},
        {"model": BASE_MODEL, "prompt": "x", "max_tokens": 1, "stream": True},
    ],
    "/v1/embeddings": [{"model": EMBEDDING_MODELS[0], "input": "hello"}],
}


def _nudge(path: str, body: dict[str, Any]) -> None:
    """Point most drawn bodies at a real model and under the token cap, and give some chat bodies a
    user message, so generation, retrieval and streaming are fuzzed with random parameters too
    (a random model name only ever gets a 404). The rest keeps exactly what schemathesis made."""
    if not isinstance(body.get("model"), str):
        return
    models = EMBEDDING_MODELS if path.endswith("embeddings") else CHAT_MODELS
    pick = sum(map(ord, body["model"])) % (len(models) + 1)
    if pick == len(models):
        return
    body["model"] = models[pick]
    if path.endswith("completions") and pick % 2 == 0:
        for key in ("max_tokens", "max_completion_tokens"):
            if not isinstance(body.get(key), int) or body[key] > 4:
                body[key] = 1 + pick % 4
        if isinstance(body.get("messages"), list):
            body["messages"].append({"role": "user", "content": "hi"})


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_hang(server: Server) -> None:
    """schemathesis generates requests for every operation of the served document, valid and not
    (schemathesis's pytest plugin does not run under pytest 9, so its strategies are driven here)."""
    from hypothesis import example, given

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: list[str] = []
    for operation in operations:

        def check(case: Any) -> None:
            if isinstance(case.body, dict):
                _nudge(case.path, case.body)
            # Every request here generates at most 4 tokens: a response this slow is a hang.
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"}, checks=[not_a_server_error], timeout=120
            )
            seen.append(f"{case.method} {case.path} {response.status_code}")

        for body in VALID_BODIES.get(operation.path, []):
            check = example(case=operation.Case(body=dict(body), media_type="application/json"))(check)
        given(case=operation.as_strategy())(
            settings(
                max_examples=int(os.environ.get("TWIN_FUZZ_EXAMPLES", "60")),
                # CI draws the same requests every run (a red build must be reproducible); `make fuzz`
                # draws new ones each time to look for fresh failures.
                derandomize=os.environ.get("TWIN_FUZZ_RANDOM") != "1",
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )(check)
        )()
    from collections import Counter

    tally = Counter(seen)
    print(f"fuzzing: {len(seen)} requests: {dict(sorted(tally.items()))}")
    # Valid and invalid requests both reached the generation endpoints.
    for route in ("/v1/chat/completions", "/v1/completions"):
        assert tally[f"POST {route} 200"] and tally[f"POST {route} 400"], tally


def test_the_openapi_document_describes_the_api(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    paths = set(document["paths"])
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"} <= paths
    assert "HTTPBearer" in json.dumps(document["components"]["securitySchemes"])


def test_the_teacher_and_the_judge_work_against_an_openai_compatible_endpoint(server: Server) -> None:
    """The teacher instruction generator and the LLM judge, on a real OpenAI-compatible server
    (this project's own, which caps completions at 4 tokens here)."""
    from twin.adapters.openai_llm import Judge, TeacherInstructions
    from twin.demo.corpus import demo_documents
    from twin.domain.dataset import DatasetConfig, dataset_version, pieces
    from twin.domain.errors import DependencyNotReady

    docs = [d for _, d in demo_documents()][:2]
    seeds = [s for d in docs for s in pieces(d, lambda t: len(t.split()), DatasetConfig())][:3]
    teacher = TeacherInstructions(f"{server.url}/v1", BASE_MODEL, api_key=KEY, max_tokens=4)
    instructions = teacher.instructions(seeds, "Alice Moreau")
    assert len(instructions) == len(seeds) and all(i.strip() for i in instructions)
    assert teacher.config() == {"name": "teacher", "model": BASE_MODEL, "prompt": 1}
    assert dataset_version(docs, DatasetConfig(), teacher.config()) != dataset_version(
        docs, DatasetConfig(), {"name": "offline", "templates": 1}
    )
    judge = Judge(f"{server.url}/v1", BASE_MODEL, api_key=KEY, max_tokens=4)
    score = judge.score([docs[0].content[:500]], [docs[1].content[:500]])
    assert score is None or 1.0 <= score <= 10.0  # a 135M model may not answer with a number
    unreachable = TeacherInstructions("http://127.0.0.1:9/v1", "m", timeout_s=2)
    with pytest.raises(DependencyNotReady, match="not reachable"):
        unreachable.instructions(seeds[:1], "Alice")


@pytest.mark.parametrize(
    ("env", "profile_serving", "error"),
    [
        ({"TWIN_SERVING__API_KEYS": "[]"}, {}, "no API keys"),
        ({"TWIN_SERVING__API_KEYS": '["k"]'}, {"quantization": "fp8"}, "fp8"),
    ],
    ids=["no-keys", "fp8-on-cpu"],
)
def test_a_misconfigured_server_refuses_to_start(
    tmp_path: Any, pg_dsn: str, env: dict[str, str], profile_serving: dict[str, Any], error: str
) -> None:
    import os
    import subprocess
    import sys

    data = yaml.safe_load(SAMPLE_PROFILE.read_text())
    data["spec"]["serving"] = profile_serving
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "twin.cli", "serve", "-p", str(profile), "--port", str(free_port())],
        env={**os.environ, "TWIN_DATABASE__DSN": pg_dsn, "TWIN_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert error in result.stderr
