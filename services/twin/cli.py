"""The ``twin`` command: the embedded runtime and one command per pipeline.

Settings are built here, once, and passed down. Exit codes: 0 success (a crawl where some
sources failed still succeeds, with the failures in its summary), 1 when every source failed,
2 for invalid input (an unreadable or invalid profile, bad settings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.table import Table

from twin.domain.crawl import SourceReport, SourceStatus
from twin.domain.errors import InvalidSpec, TwinError
from twin.domain.profile import TwinProfile, parse_profile
from twin.settings import Settings

# Tracebacks never show locals: they could hold credentials from settings.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="LLM Twin: your writing, your voice.",
)
db_app = typer.Typer(no_args_is_help=True, help="The embedded Postgres server.")
app.add_typer(db_app, name="db")
# Piped output (CI logs, `| less`) gets 120 columns rather than rich's default 80.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

SAMPLE_PROFILE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "twinprofile-alice.yaml"


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err_console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def load_profile(path: Path) -> TwinProfile:
    """Read a TwinProfile YAML file; raise InvalidSpec with a readable reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpec(f"cannot read profile {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path} is not valid YAML: {exc}") from exc
    return parse_profile(data)


def _summary_table(reports: list[SourceReport]) -> Table:
    table = Table(title="Crawl summary", show_lines=False)
    for column in ("source", "platform", "status", "new", "updated", "unchanged", "deleted", "failed"):
        table.add_column(
            column,
            justify="right" if column in {"new", "updated", "unchanged", "deleted", "failed"} else "left",
        )
    colours = {SourceStatus.OK: "green", SourceStatus.PARTIAL: "yellow", SourceStatus.FAILED: "red"}
    for r in reports:
        table.add_row(
            r.source_url,
            r.platform.value,
            f"[{colours[r.status]}]{r.status.value}[/]",
            str(r.new),
            str(r.updated),
            str(r.unchanged),
            str(r.deleted),
            str(r.failed),
        )
    return table


def _report_json(reports: list[SourceReport], run_id: str) -> str:
    return json.dumps(
        {
            "run_id": run_id,
            "sources": [
                {
                    "source": r.source_url,
                    "platform": r.platform.value,
                    "status": r.status.value,
                    "new": r.new,
                    "updated": r.updated,
                    "unchanged": r.unchanged,
                    "deleted": r.deleted,
                    "failed": r.failed,
                    "truncated": r.truncated,
                    "errors": [{"url": e.url, "error": e.error, "message": e.message} for e in r.errors],
                }
                for r in reports
            ],
        }
    )


def crawl_profile(profile: TwinProfile, settings: Settings, *, as_json: bool = False) -> list[SourceReport]:
    """Crawl with a live progress display (or quietly for ``--json``) and print the summary."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from twin.crawler.runner import run_crawl
    from twin.crawler.state import SourceJob
    from twin.store import open_store

    with open_store(settings) as store:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn(
                "{task.fields[pages]} pages · {task.fields[stored]} stored · {task.fields[failed]} failed"
            ),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json or not err_console.is_terminal,
        )
        tasks = {
            i: progress.add_task(source.url, total=None, pages=0, stored=0, failed=0)
            for i, source in enumerate(profile.spec.sources)
        }

        def on_change(job: SourceJob) -> None:
            r = job.report
            progress.update(tasks[job.index], pages=job.pages, stored=r.stored, failed=r.failed)

        with progress:
            result = run_crawl(profile, settings, store, on_change=on_change)
    if as_json:
        print(_report_json(result.reports, str(result.run_id)))
    else:
        console.print(_summary_table(result.reports))
        for r in result.reports:
            for e in r.errors:
                console.print(f"  [red]✗[/red] {r.source_url}: [bold]{e.error}[/bold] {e.message}")
    return result.reports


@app.command()
def crawl(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Crawl a profile's sources into Postgres: new, updated, unchanged, deleted and failed per source."""
    settings = _settings()
    try:
        twin_profile = load_profile(profile)
        reports = crawl_profile(twin_profile, settings, as_json=as_json)
    except InvalidSpec as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except TwinError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if reports and all(r.status is SourceStatus.FAILED for r in reports):
        raise typer.Exit(1)


@app.command()
def documents(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
) -> None:
    """List what is stored for a profile."""
    from twin.store import open_store

    with open_store(_settings()) as store:
        docs = store.documents(profile)
    table = Table(title=f"raw_documents for {profile} ({len(docs)})")
    table.add_column("platform", no_wrap=True)
    table.add_column("category", no_wrap=True)
    table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=60)
    table.add_column("chars", justify="right", no_wrap=True)
    for d in docs:
        table.add_row(d.platform.value, d.category.value, d.title, str(len(d.content)))
    console.print(table)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@app.command()
def features(
    until_idle: Annotated[
        float | None, typer.Option("--until-idle", help="Exit after this many seconds without changes.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
) -> None:
    """Consume raw_documents changes into cleaned documents and embedded chunks (runtime from settings)."""
    from twin.features.runner import run_features

    settings = _settings()
    status = err_console.status("starting change capture and embedding workers...")
    status.start()

    def on_batch(report: Any, summary: Any) -> None:
        status.update(
            f"{summary.received} changes · {summary.applied} applied · {summary.chunks} chunks · "
            f"{summary.dead_lettered} dead-lettered"
        )

    try:
        summary = run_features(settings, idle_exit_s=until_idle, on_batch=on_batch)
    except TwinError as exc:
        status.stop()
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    status.stop()
    result = {
        "received": summary.received,
        "applied": summary.applied,
        "stale": summary.stale,
        "unchanged": summary.unchanged,
        "dead_lettered": summary.dead_lettered,
        "chunks": summary.chunks,
        "freshness_p50_s": round(_percentile(summary.freshness_s, 0.5), 3),
        "freshness_p95_s": round(_percentile(summary.freshness_s, 0.95), 3),
        "busy_s": round(summary.busy_s, 3),
        "chunks_per_s": round(summary.chunks / summary.busy_s, 1) if summary.busy_s else 0.0,
    }
    if as_json:
        print(json.dumps(result))
    else:
        table = Table(title="Features")
        for key in result:
            table.add_column(key.replace("_", " "), justify="right")
        table.add_row(*(str(v) for v in result.values()))
        console.print(table)


def search_profile(
    settings: Settings, profile: str, question: str, k: int, categories: list[str]
) -> list[Any]:
    """Retrieval as serving runs it: embed the question with the features' model, top-k in the profile."""
    from twin.adapters.embedders import SentenceTransformerEmbedder
    from twin.adapters.pgvector_store import PgRetriever
    from twin.adapters.postgres import connect, migrate
    from twin.domain.documents import Category
    from twin.domain.features import RetrievalQuery
    from twin.store import database_dsn

    embedder = SentenceTransformerEmbedder(settings.features.embedding_model)
    with connect(database_dsn(settings)) as conn:
        migrate(conn)
        query = RetrievalQuery(
            profile=profile,
            embedding=embedder.embed([question])[0],
            k=k,
            categories=tuple(Category(c) for c in categories),
        )
        return PgRetriever(conn).search(query)


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for in the owner's writing.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    category: Annotated[list[str], typer.Option("--category", "-c", help="article, post or code.")] = [],  # noqa: B006
) -> None:
    """Retrieve the chunks of a profile's writing closest to a question."""
    hits = search_profile(_settings(), profile, question, k, category)
    table = Table(title=f"Top {len(hits)} for {question!r}")
    for column in ("score", "category", "title", "excerpt"):
        table.add_column(column, overflow="fold" if column == "excerpt" else "ellipsis")
    for hit in hits:
        excerpt = " ".join(hit.text.split())[:160]
        table.add_row(f"{hit.score:.3f}", hit.category.value, hit.title, excerpt)
    console.print(table)


def _fail(exc: TwinError) -> typer.Exit:
    """Print ``exc`` and turn it into the exit code of the error vocabulary (2 invalid input, 1 other)."""
    from twin.domain.errors import InsufficientData

    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2 if isinstance(exc, InvalidSpec | InsufficientData) else 1)


@app.command()
def dataset(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the version in MLflow.")] = True,
) -> None:
    """Build the profile's instruction dataset version from the feature store (and store it in MLflow)."""
    from twin.training.pipeline import build_profile_dataset, ensure_dataset, mlflow_store, resolve_model

    settings = _settings()
    try:
        twin_profile = load_profile(profile)
        with err_console.status("building the dataset version..."):
            ds, params = build_profile_dataset(
                twin_profile, settings, resolve_model(settings, twin_profile.spec.base_model)
            )
            run_id = ensure_dataset(mlflow_store(settings), ds, params) if store else None
    except TwinError as exc:
        raise _fail(exc) from exc
    summary = {"version": ds.version, "run_id": run_id, **ds.stats.__dict__}
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"Dataset {ds.version} for {twin_profile.name}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)


def train_with_progress(twin_profile: TwinProfile, settings: Settings, *, force: bool, quiet: bool) -> Any:
    """``train_profile`` behind a progress bar of optimizer steps and a line per stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from twin.training.pipeline import train_profile

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    )
    task = progress.add_task("training", total=None, loss="-", visible=False)

    def on_stage(stage: str) -> None:
        if not quiet:
            progress.console.print(f"[bold blue]>[/bold blue] {stage}")

    def on_step(step: int, total: int, loss: float) -> None:
        progress.update(task, completed=step, total=total, loss=f"{loss:.3f}", visible=True)

    with progress:
        return train_profile(twin_profile, settings, on_stage=on_stage, on_step=on_step, force=force)


@app.command()
def train(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON line.")] = False,
    if_needed: Annotated[
        bool,
        typer.Option("--if-needed", help="Train only when the retraining policy says new data warrants it."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even if this dataset and config were trained.")
    ] = False,
) -> None:
    """Fine-tune a LoRA adapter on the profile's writing: dataset → Ray Train → evaluation → registry."""
    import signal

    from twin.training.pipeline import retrain_needed

    # SIGTERM (a Job or pod deleted, Ctrl-C's cousin) unwinds like an exception, so the MLflow run
    # is marked FAILED instead of being left RUNNING forever.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    settings = _settings()
    try:
        twin_profile = load_profile(profile)
        if if_needed:
            decision = retrain_needed(settings, twin_profile.name)
            if not decision.retrain:
                print(
                    json.dumps({"trained": False, "reason": decision.reason})
                ) if as_json else console.print(f"nothing to do: {decision.reason}")
                return
        outcome = train_with_progress(twin_profile, settings, force=force, quiet=as_json)
    except TwinError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(outcome.__dict__, default=str))
        return
    _print_outcome(outcome)


def _print_outcome(outcome: Any) -> None:
    m = outcome.metrics
    title = f"{outcome.profile}: dataset {outcome.dataset_version}, model version {outcome.version}"
    if "heldout_ppl_base" in m and "heldout_ppl_candidate" in m:
        table = Table(title=title)
        for column in ("", "held-out perplexity", "style fidelity"):
            table.add_column(column, justify="right")
        for label, key in (("base model", "base"), ("adapter", "candidate"), ("champion", "champion")):
            if f"heldout_ppl_{key}" in m:
                style = m.get(f"style_fidelity_{key}")
                table.add_row(
                    label, f"{m[f'heldout_ppl_{key}']:.3f}", "" if style is None else f"{style:.3f}"
                )
        console.print(table)
    if not outcome.trained:
        console.print(f"[bold]nothing trained:[/bold] {outcome.reason}")
        return
    verdict = "[green]promoted to champion[/green]" if outcome.promoted else "[yellow]not promoted[/yellow]"
    console.print(f"{verdict}: {outcome.promotion_reason}")


@app.command()
def promote(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    version: Annotated[
        int | None,
        typer.Option("--version", help="Make this version champion (a rollback); default: the candidate."),
    ] = None,
) -> None:
    """Move the champion alias by hand: to the current candidate, or back to any version."""
    from twin.training.pipeline import promote as promote_version

    try:
        previous, current = promote_version(_settings(), profile, version)
    except TwinError as exc:
        raise _fail(exc) from exc
    console.print(
        f"champion of {profile}: version {previous if previous is not None else '(none)'} → {current}"
    )


@app.command()
def models(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as one JSON line.")] = False,
) -> None:
    """The profile's registered adapter versions, their aliases and held-out metrics."""
    from twin.training.pipeline import mlflow_store

    versions = mlflow_store(_settings()).versions(profile)
    if as_json:
        print(json.dumps([{"version": v.version, "aliases": list(v.aliases), **v.tags} for v in versions]))
        return
    table = Table(title=f"Models of {profile}")
    for column in ("version", "aliases", "dataset", "held-out ppl", "base ppl", "style"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            v.dataset_version,
            v.tags.get("heldout_ppl", "")[:7],
            v.tags.get("heldout_ppl_base", "")[:7],
            v.tags.get("style_fidelity", "")[:5],
        )
    console.print(table)


@app.command()
def serve(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    port: Annotated[int | None, typer.Option("--port", help="Overrides TWIN_SERVING__PORT.")] = None,
) -> None:
    """Serve the twin on an OpenAI-compatible endpoint (Ray Serve; vLLM or transformers) until stopped."""
    from twin.serving.runner import serve_forever

    overrides: dict[str, Any] = {}
    base = _settings()
    if port is not None:
        overrides["serving"] = base.serving.model_copy(update={"port": port})
    settings = base.model_copy(update=overrides)
    try:
        twin_profile = load_profile(profile)
    except TwinError as exc:
        raise _fail(exc) from exc

    def ready(url: str, status: dict[str, Any]) -> None:
        version = status.get("model_version")
        weights = f"version {version}" if version else "base model, no champion yet"
        console.print(
            f"[green]serving[/green] {url}/v1 · model [bold]twin-{twin_profile.name}[/bold] ({weights})"
            f" · engine {status['engine']}"
        )

    err_console.print("starting Ray Serve, the engine and the registry watcher...")
    try:
        serve_forever(twin_profile, settings, on_ready=ready)
    except TwinError as exc:
        raise _fail(exc) from exc


def chat_stream(
    question: str, *, url: str, api_key: str, model: str, max_tokens: int, out: Console
) -> dict[str, Any]:
    """Stream one answer with the openai client; print it, then its sources. Returns the ``twin`` info."""
    import openai

    client = openai.OpenAI(base_url=f"{url.rstrip('/')}/v1", api_key=api_key, timeout=600)
    info: dict[str, Any] = {}
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            out.print(chunk.choices[0].delta.content, end="", markup=False, highlight=False, soft_wrap=True)
        extra = (chunk.model_extra or {}).get("twin")
        if extra:
            info = extra
    out.print()
    return info


@app.command()
def chat(  # noqa: PLR0917 -- typer maps each parameter to an option
    question: Annotated[str, typer.Argument(help="What to ask the twin.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    url: Annotated[
        str | None, typer.Option("--url", help="The server (default: this machine's twin serve).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="TWIN_API_KEY", help="Default: the first TWIN_SERVING__API_KEYS."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Default: twin-<profile> (the champion).")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
) -> None:
    """Ask the twin a question from the terminal (streams the answer, then its sources)."""
    import openai

    from twin.serving.service import load_api_keys

    settings = _settings()
    keys = load_api_keys(settings)
    key = api_key or (keys[0] if keys else "none")
    base = url or f"http://{settings.serving.host}:{settings.serving.port}"
    try:
        info = chat_stream(
            question,
            url=base,
            api_key=key,
            model=model or f"twin-{profile}",
            max_tokens=max_tokens,
            out=console,
        )
    except openai.APIStatusError as exc:
        err_console.print(f"[red]error {exc.status_code}:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    except openai.APIConnectionError as exc:
        err_console.print(f"[red]error:[/red] no twin server at {base}: {exc}")
        raise typer.Exit(1) from exc
    version = info.get("model_version")
    console.print(f"[dim]model version {version if version else '(base model)'}[/dim]")


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
        settings = _settings(
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
        raise _fail(exc) from exc
    _print_outcome(outcome)

    console.rule(f"[bold]4. Serve: the twin answers {DEMO_QUESTION!r}")
    demo_serve(twin_profile, settings)


def demo_serve(twin_profile: TwinProfile, settings: Settings) -> None:
    """Start the endpoint (Ray Serve, vLLM or transformers, the champion adapter), ask the demo
    question with the openai client, print the answer and its citations, stop."""
    import secrets

    from twin.serving.runner import start, stop, wait_ready

    key = secrets.token_urlsafe(16)
    serving = settings.serving.model_copy(
        update={"api_keys": [SecretStr(key)], "port": DEMO_SERVE_PORT, "auth": "keys"}
    )
    settings = settings.model_copy(update={"serving": serving})
    try:
        with err_console.status("starting the endpoint (Ray Serve, the engine, the champion adapter)..."):
            url = start(twin_profile, settings)
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


@db_app.command("start")
def db_start() -> None:
    """Start the embedded Postgres (idempotent) and print its DSN."""
    from twin.store import database_dsn

    console.print(database_dsn(_settings()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres."""
    from twin.adapters.embedded_postgres import EmbeddedPostgres

    s = _settings()
    EmbeddedPostgres(s.database.embedded_dir, s.database.embedded_port).stop()


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded Postgres runs."""
    from twin.adapters.embedded_postgres import EmbeddedPostgres

    s = _settings()
    pg = EmbeddedPostgres(s.database.embedded_dir, s.database.embedded_port)
    running = pg.is_running()
    console.print(f"embedded Postgres at {pg.dsn()}: {'running' if running else 'stopped'}")
    raise typer.Exit(0 if running else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
