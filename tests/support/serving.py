"""Helpers for serving tests: the sample owner's writing embedded in the real feature store, real
PEFT adapters registered in a real MLflow registry, and ``twin serve`` as a subprocess.

Adapters here are made with peft directly (``init_lora_weights=False``: random, non-zero weights,
so their outputs differ from the base model's and from each other) rather than trained: serving
tests need registered adapters that differ, not good ones; training has its own tests.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.mlflow_store import MlflowStore
from twin.adapters.pgvector_store import PgFeatureStore
from twin.adapters.postgres import connect, migrate
from twin.demo.corpus import demo_documents
from twin.domain.chunking import chunk_document
from twin.domain.features import CleanedDocument, EmbeddedChunk

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


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


def register(store: MlflowStore, profile: str, adapter: Path, *, alias: str | None = None) -> int:
    """Register ``adapter`` as a new version of the profile's model, the way training does."""
    key = f"tr-test-{uuid.uuid4().hex[:8]}"
    with store.training_run(profile, key, {"twin.dataset_version": "ds-test"}) as run_id:
        store.log_artifacts(run_id, adapter, "adapter")
        info = store.register_adapter(
            profile, run_id, {"base_model": BASE_MODEL, "dataset_version": "ds-test"}
        )
        store.set_tags(run_id, {"twin.model_version": info.version})
    if alias:
        store.set_alias(profile, alias, info.version)
    return info.version


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kill_orphaned_vllm() -> None:
    """vLLM's engine process outlives a SIGKILLed parent: clean up what a failed test left behind."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines()[1:]:
        pid, ppid, *args = line.split(None, 2)
        if ppid == "1" and args and "VLLM::" in args[0]:
            os.kill(int(pid), signal.SIGKILL)


@dataclasses.dataclass
class Server:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def twin_cli(server: Server, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The ``twin`` CLI with the server's settings (its database, home and registry)."""
    return subprocess.run(
        [sys.executable, "-m", "twin.cli", *args],
        env={**os.environ, **server.env, "TWIN_API_KEY": server.env.get("TWIN_TEST_KEY", "")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def twin_server(
    profile_file: Path, env: dict[str, str], workdir: Path, port: int, *, timeout: float = 420
) -> Iterator[Server]:
    log = workdir / f"serve-{port}.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "serve", "-p", str(profile_file), "--port", str(port)],
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(url, env, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"twin serve exited with {proc.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"twin serve not ready after {timeout:.0f}s:\n{server.output()}")
            time.sleep(1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        handle.close()
        kill_orphaned_vllm()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
