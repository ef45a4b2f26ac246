"""Helpers for serving tests and the serving benchmark: the sample owner's writing embedded in the
real feature store, real PEFT adapters registered in a real MLflow registry, and ``twin serve`` as
a subprocess (through :mod:`support.processes`, the one process-lifecycle helper).

Adapters here are made with peft directly (``init_lora_weights=False``: random, non-zero weights,
so their outputs differ from the base model's and from each other) rather than trained: serving
tests need registered adapters that differ, not good ones; training has its own tests.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

from support.processes import TwinProcess, run_twin, start_twin, wait_for
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.mlflow_store import MlflowStore
from twin.adapters.pgvector_store import PgFeatureStore
from twin.adapters.postgres import connect, migrate
from twin.demo.corpus import demo_documents
from twin.domain.chunking import chunk_document
from twin.domain.features import CleanedDocument, EmbeddedChunk
from twin.ports import ModelRegistry

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
KEY = "test-key-alice"  # the API key of the shared test servers (support.serving_servers)


def embed_documents(dsn: str, docs: list[CleanedDocument]) -> int:
    """Clean, chunk and embed ``docs`` with the real model into the feature store; return chunks."""
    embedder = SentenceTransformerEmbedder()
    upserts = []
    for doc in docs:
        chunks = chunk_document(doc, embedder.count_tokens, max_model_tokens=embedder.max_tokens)
        vectors = embedder.embed([c.text for c in chunks])
        upserts.append((doc, [EmbeddedChunk(c, v) for c, v in zip(chunks, vectors, strict=True)]))
    with connect(dsn) as conn:
        migrate(conn)
        PgFeatureStore(conn).apply(upserts, [])
    return sum(len(c) for _, c in upserts)


def seed_profiles(dsn: str) -> dict[str, list[CleanedDocument]]:
    """Alice's sample writing, and a 'bob' whose documents answer the test questions even better:
    if retrieval ever crossed profiles, Bob's URLs would show up in Alice's citations."""
    alice = [dataclasses.replace(d, profile="alice") for _, d in demo_documents()]
    bob = [
        dataclasses.replace(
            d,
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"bob/{d.id}"),
            profile="bob",
            url=f"https://bob.example/{n}",
            title=f"Bob: {d.title}",
        )
        for n, d in enumerate(alice[:12])
    ]
    with connect(dsn) as conn:
        migrate(conn)
        conn.execute("DELETE FROM cleaned_documents WHERE profile IN ('alice', 'bob')")
        conn.commit()
    embed_documents(dsn, alice + bob)
    return {"alice": alice, "bob": bob}


def make_adapter(model_path: str, out: Path, seed: int, rank: int = 8) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    peft = get_peft_model(
        model,
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=["q_proj", "v_proj"],
            init_lora_weights=False,  # random B: the adapter changes the outputs
            task_type="CAUSAL_LM",
        ),
    )
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)  # a nudge, not noise: generations stay language
    peft.save_pretrained(str(out))
    return out


def local_registry(home: Path) -> MlflowStore:
    """The registry ``twin`` uses with ``TWIN_HOME=home`` and no tracking URI (SQLite under it)."""
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    return MlflowStore(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", (home / "mlflow" / "artifacts").as_uri())


def register(registry: ModelRegistry, profile: str, adapter: Path, *, alias: str | None = None) -> int:
    """Register ``adapter`` as a new version of the profile's model, the way training does."""
    key = f"tr-test-{uuid.uuid4().hex[:8]}"
    with registry.training_run(profile, key, params={}, tags={"twin.dataset_version": "ds-test"}) as run:
        run.log_adapter(adapter)
    figures = {"base_model": BASE_MODEL, "dataset_version": "ds-test"}
    return registry.register(profile, run.run_id, figures, aliases=[alias] if alias else []).version


def kill_orphaned_vllm() -> None:
    """vLLM's engine process outlives a SIGKILLed parent: clean up what a failed test left behind."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines()[1:]:
        pid, ppid, *args = line.split(None, 2)
        if ppid == "1" and args and "VLLM::" in args[0]:
            os.kill(int(pid), signal.SIGKILL)


@dataclasses.dataclass
class Server:
    """A running ``twin serve``: its URL and the settings (environment) it was started with."""

    url: str
    env: dict[str, str]
    process: TwinProcess

    def output(self) -> str:
        return self.process.output()

    def twin(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The ``twin`` CLI with this server's settings (its database, home and registry)."""
        key = {"TWIN_API_KEY": self.env.get("TWIN_TEST_KEY", "")}
        return run_twin(*args, env={**self.env, **key}, timeout=timeout)


@dataclasses.dataclass
class Served:
    """A shared test server of one engine (:mod:`support.serving_servers`) and what tests need to
    know about it."""

    engine: str
    server: Server
    versions: dict[str, int]  # "v1" (the champion when the server starts), "v2"
    log_prompts: bool

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, api_key: str = KEY, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=api_key, **{"timeout": 300, "max_retries": 0, **options}
        )


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def twin_server(
    profile_file: Path, env: Mapping[str, str], workdir: Path, port: int, *, timeout: float = 420
) -> Iterator[Server]:
    """``twin serve`` on ``port`` until the block ends (SIGTERM, as Kubernetes stops it)."""
    process = start_twin("serve", "-p", str(profile_file), "--port", str(port), env=env, workdir=workdir)
    server = Server(f"http://127.0.0.1:{port}", dict(env), process)
    try:

        def up() -> bool:
            if not process.running():
                raise RuntimeError(f"twin serve exited with {process.proc.returncode}:\n{server.output()}")
            return _ready(server.url)

        try:
            wait_for(up, timeout, "twin serve to be ready")
        except AssertionError as exc:  # the timeout: say what the server printed
            raise AssertionError(f"{exc}\n{server.output()}") from exc
        yield server
    finally:
        try:
            process.stop()
        finally:
            kill_orphaned_vllm()
