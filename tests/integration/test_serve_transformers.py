"""Serving tests that run once, on the transformers engine (the fallback for machines without vLLM;
the behaviour both engines share is ``test_serve_api.py``): schemathesis fuzzing the served OpenAPI
document (no 5xx, no hang), the teacher and the judge against an OpenAI-compatible endpoint, and
servers that must refuse to start. Fuzzed generations are kept to 4 tokens so they stay quick.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from support.processes import free_port, run_twin
from support.serving import BASE_MODEL, KEY, Served
from support.twin_cli import SAMPLE_PROFILE

pytest_plugins = ["support.serving_servers"]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

on_transformers = pytest.mark.parametrize("serve_engine", ["transformers"], indirect=True)

CHAT_MODELS = ["twin-alice", "twin-alice@2", "twin-alice@candidate", BASE_MODEL]
EMBEDDING_MODELS = ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
FUZZ_MAX_TOKENS = 4
SERVER_MAX_TOKENS = 256  # TWIN_SERVING__MAX_TOKENS_LIMIT of the shared servers

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
    """Point most drawn bodies at a real model, keep their generations to a few tokens, and give some
    chat bodies a user message, so generation, retrieval and streaming are fuzzed with random
    parameters too (a random model name only ever gets a 404). A drawn ``max_tokens`` above the
    server's limit is kept: it must be refused with a 400. The rest keeps what schemathesis made."""
    if not isinstance(body.get("model"), str):
        return
    models = EMBEDDING_MODELS if path.endswith("embeddings") else CHAT_MODELS
    pick = sum(map(ord, body["model"])) % (len(models) + 1)
    if pick == len(models):
        return
    body["model"] = models[pick]
    if not path.endswith("completions"):
        return
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and FUZZ_MAX_TOKENS < value <= SERVER_MAX_TOKENS:
            body[key] = 1 + pick % FUZZ_MAX_TOKENS
    if pick % 2 == 0 and isinstance(body.get("messages"), list):
        body["messages"].append({"role": "user", "content": "hi"})


@on_transformers
def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_hang(served: Served) -> None:
    """schemathesis generates requests for every operation of the served document, valid and not
    (schemathesis's pytest plugin does not run under pytest 9, so its strategies are driven here)."""
    from hypothesis import example, given

    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
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
    tally = Counter(seen)
    print(f"fuzzing: {len(seen)} requests: {dict(sorted(tally.items()))}")
    # Valid and invalid requests both reached the generation endpoints.
    for route in ("/v1/chat/completions", "/v1/completions"):
        assert tally[f"POST {route} 200"] and tally[f"POST {route} 400"], tally


@on_transformers
def test_the_teacher_and_the_judge_work_against_an_openai_compatible_endpoint(served: Served) -> None:
    """The teacher instruction generator and the LLM judge, on a real OpenAI-compatible server
    (this project's own, asked for 4 tokens)."""
    from twin.adapters.openai_llm import Judge, TeacherInstructions
    from twin.demo.corpus import demo_documents
    from twin.domain.dataset import DatasetConfig, dataset_version, pieces
    from twin.domain.errors import DependencyNotReady

    docs = [d for _, d in demo_documents()][:2]
    seeds = [s for d in docs for s in pieces(d, lambda t: len(t.split()), DatasetConfig())][:3]
    teacher = TeacherInstructions(f"{served.url}/v1", BASE_MODEL, api_key=KEY, max_tokens=4)
    instructions = teacher.instructions(seeds, "Alice Moreau")
    assert len(instructions) == len(seeds) and all(i.strip() for i in instructions)
    assert teacher.config() == {"name": "teacher", "model": BASE_MODEL, "prompt": 1}
    assert dataset_version(docs, DatasetConfig(), teacher.config()) != dataset_version(
        docs, DatasetConfig(), {"name": "offline", "templates": 1}
    )
    judge = Judge(f"{served.url}/v1", BASE_MODEL, api_key=KEY, max_tokens=4)
    score = judge.score([docs[0].content[:500]], [docs[1].content[:500]])
    assert score is None or 1.0 <= score <= 10.0  # a 135M model may not answer with a number
    unreachable = TeacherInstructions("http://127.0.0.1:9/v1", "m", timeout_s=2)
    with pytest.raises(DependencyNotReady, match="not reachable"):
        unreachable.instructions(seeds[:1], "Alice")


@on_transformers
def test_ready_reports_the_engine_and_its_unquantised_weights(served: Served) -> None:
    status = httpx.get(f"{served.url}/ready", timeout=30).json()
    assert status["engine"] == "transformers" and status["quantization"] is None
    assert status["model_version"] == served.versions["v1"]


@pytest.mark.parametrize(
    ("env", "profile_serving", "error"),
    [
        ({"TWIN_SERVING__API_KEYS": "[]"}, {}, "no API keys"),
        ({"TWIN_SERVING__API_KEYS": '["k"]'}, {"quantization": "fp8"}, "fp8"),
    ],
    ids=["no-keys", "fp8-on-cpu"],
)
def test_a_misconfigured_server_refuses_to_start(
    tmp_path: Path, pg_dsn: str, env: dict[str, str], profile_serving: dict[str, Any], error: str
) -> None:
    data = yaml.safe_load(SAMPLE_PROFILE.read_text())
    data["spec"]["serving"] = profile_serving
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(data))
    result = run_twin(
        "serve",
        "-p",
        str(profile),
        "--port",
        str(free_port()),
        env={"TWIN_DATABASE__DSN": pg_dsn, "TWIN_HOME": str(tmp_path), **env},
    )
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert error in result.stderr
