"""``twin demo``: the end-to-end demo on the bundled sample profile."""

from __future__ import annotations

import json
import sys

import typer
from pydantic import SecretStr

from twin.cli.collect import crawl_profile, documents
from twin.cli.common import SAMPLE_PROFILE, app, console, err_console, fail, load_profile
from twin.cli.common import load_settings as make_settings
from twin.cli.serving import chat_stream, prepare_serving
from twin.cli.training import print_outcome, train_with_progress
from twin.domain.crawl import SourceStatus
from twin.domain.errors import TwinError
from twin.domain.profile import TwinProfile
from twin.settings import Settings

DEMO_QUESTION = "How do I make a pipeline safe to run twice?"
DEMO_TRAIN_STEPS = 12
DEMO_SERVE_PORT = 18710


@app.command()
def demo() -> None:
    """The end-to-end demo on the bundled sample profile: crawl, features, training, then the twin
    answering a question with citations on its OpenAI-compatible endpoint."""
    from twin.demo.content import load_demo_content
    from twin.demo.sites import serve_demo_sites
    from twin.demo.sites.linkedin import LinkedInSite
    from twin.domain.documents import Platform

    twin_profile = load_profile(SAMPLE_PROFILE)
    with serve_demo_sites(load_demo_content()) as servers:
        linkedin = servers[Platform.LINKEDIN].site
        assert isinstance(linkedin, LinkedInSite)
        # The demo's sites run on loopback, which the address guard refuses unless allowed.
        settings = make_settings(
            crawler={"allowed_networks": ["127.0.0.1/32"]},
            linkedin={"email": linkedin.email, "password": linkedin.password},
        )
        console.rule(f"[bold]1. Collect: crawling the sample profile {twin_profile.name!r}")
        reports = crawl_profile(twin_profile, settings)
    if any(r.status is not SourceStatus.OK for r in reports):
        raise typer.Exit(1)
    documents(twin_profile.name)

    console.rule("[bold]2. Features: change capture → clean → chunk → embed into pgvector")
    # In a process of its own: Debezium's JVM is one per process, and a JVM that lives on next to
    # Ray and vLLM crashed this process at exit. `twin features` is the same command users run.
    import subprocess

    with err_console.status("consuming changes (Debezium embedded engine, Ray embedding workers)..."):
        proc = subprocess.run(
            [sys.executable, "-m", "twin.cli", "features", "--until-idle", "3", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        err_console.print(f"[red]twin features failed ({proc.returncode}):[/red]\n{proc.stderr[-3000:]}")
        raise typer.Exit(1)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    console.print(
        f"{summary['received']} changes: {summary['applied']} applied, {summary['unchanged']} already"
        f" current, {summary['dead_lettered']} dead-lettered; {summary['chunks']} chunks embedded"
    )

    console.rule("[bold]3. Train: a short LoRA run on the owner's writing (Ray Train, MLflow)")
    if settings.training.max_steps is None:  # a CPU demo: a few optimizer steps, not whole epochs
        settings = settings.model_copy(
            update={"training": settings.training.model_copy(update={"max_steps": DEMO_TRAIN_STEPS})}
        )
    try:
        outcome = train_with_progress(twin_profile, settings, force=False, quiet=False)
    except TwinError as exc:
        raise fail(exc) from exc
    print_outcome(outcome)

    console.rule(f"[bold]4. Serve: the twin answers {DEMO_QUESTION!r}")
    demo_serve(twin_profile, settings)


def demo_serve(twin_profile: TwinProfile, settings: Settings) -> None:
    """Start the endpoint (Ray Serve, vLLM or transformers, the champion adapter), ask the demo
    question with the openai client, print the answer and its citations (from ``twin.citations``),
    stop."""
    import secrets

    from twin.serving.runner import start, stop, wait_ready

    key = secrets.token_urlsafe(16)
    serving = settings.serving.model_copy(
        update={"api_keys": [SecretStr(key)], "port": DEMO_SERVE_PORT, "auth": "keys"}
    )
    settings = settings.model_copy(update={"serving": serving})
    try:
        with err_console.status("starting the endpoint (Ray Serve, the engine, the champion adapter)..."):
            url = start(twin_profile, settings.serving, prepare_serving(settings, twin_profile))
            status = wait_ready(url, 600)
        console.print(
            f"[green]serving[/green] {url}/v1 · engine {status['engine']} · model twin-{twin_profile.name} "
            f"version {status['model_version']}"
        )
        console.print(f"[bold]> {DEMO_QUESTION}[/bold]")
        info = chat_stream(
            DEMO_QUESTION, url=url, api_key=key, model=f"twin-{twin_profile.name}", max_tokens=96, out=console
        )
    finally:
        stop()
    citations = info.get("citations") or []
    if not citations:
        err_console.print("[red]the answer cites nothing: retrieval found no context[/red]")
        raise typer.Exit(1)
    version = info.get("model_version")
    console.print(f"[dim]{len(citations)} citation(s) in twin.citations; model version {version}[/dim]")
