"""``twin dataset``, ``train``, ``promote`` and ``models``: the Train pipeline from the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from twin import wiring
from twin.cli.common import (
    MetricsLinger,
    MetricsPort,
    app,
    console,
    err_console,
    fail,
    load_profile,
    load_settings,
)
from twin.domain.errors import TwinError
from twin.domain.profile import TwinProfile
from twin.settings import Settings

if TYPE_CHECKING:
    from twin.training.pipeline import TrainOutcome


@app.command()
def dataset(
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the version in MLflow.")] = True,
) -> None:
    """Build the profile's instruction dataset version from the feature store (and store it in MLflow)."""
    from twin.training.pipeline import build_profile_dataset, ensure_dataset

    settings = load_settings()
    try:
        twin_profile = load_profile(profile)
        deps = wiring.training_deps(settings)
        with err_console.status("building the dataset version..."):
            model_path = deps.resolve_model(twin_profile.spec.base_model)
            ds, params = build_profile_dataset(twin_profile, deps, settings.training, model_path)
            run_id = ensure_dataset(deps.registry, ds, params) if store else None
    except TwinError as exc:
        raise fail(exc) from exc
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


def train_with_progress(
    twin_profile: TwinProfile, settings: Settings, *, force: bool, quiet: bool
) -> TrainOutcome:
    """``train_profile`` on the ports :func:`twin.wiring.training_deps` builds, behind a progress
    bar of optimizer steps and a line per stage."""
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

    deps = wiring.training_deps(settings)
    with progress:
        return train_profile(
            twin_profile, deps, settings.training, on_stage=on_stage, on_step=on_step, force=force
        )


@app.command()
def train(  # noqa: PLR0917 -- typer maps each parameter to an option
    profile: Annotated[Path, typer.Option("--profile", "-p", help="A TwinProfile YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON line.")] = False,
    if_needed: Annotated[
        bool,
        typer.Option("--if-needed", help="Train only when the retraining policy says new data warrants it."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even if this dataset and config were trained.")
    ] = False,
    metrics_port: MetricsPort = None,
    metrics_linger: MetricsLinger = 0.0,
) -> None:
    """Fine-tune a LoRA adapter on the profile's writing: dataset → Ray Train → evaluation → registry."""
    import signal

    from twin.observability import metrics_while_running

    # SIGTERM (a Job or pod deleted, Ctrl-C's cousin) unwinds like an exception, so the MLflow run
    # is marked FAILED instead of being left RUNNING forever.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    settings = load_settings()
    with metrics_while_running(metrics_port, metrics_linger):
        _train(profile, settings, as_json=as_json, if_needed=if_needed, force=force)


def _train(profile: Path, settings: Settings, *, as_json: bool, if_needed: bool, force: bool) -> None:
    from twin.observability.training import run_finished, run_started
    from twin.training.pipeline import retrain_needed

    try:
        twin_profile = load_profile(profile)
        if if_needed:
            decision = retrain_needed(
                wiring.training_deps(settings),
                twin_profile.name,
                min_changed_documents=twin_profile.spec.training.retraining.min_changed_documents,
            )
            if not decision.retrain:
                run_started(twin_profile.name)
                run_finished(twin_profile.name, "not_needed")
                print(
                    json.dumps({"trained": False, "reason": decision.reason})
                ) if as_json else console.print(f"nothing to do: {decision.reason}")
                return
        outcome = train_with_progress(twin_profile, settings, force=force, quiet=as_json)
    except TwinError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(outcome.__dict__, default=str))
        return
    print_outcome(outcome)


def print_outcome(outcome: TrainOutcome) -> None:
    """The outcome as people read it: perplexities and style per model, then the gate's verdict."""
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
        previous, current = promote_version(wiring.model_registry(load_settings()), profile, version)
    except TwinError as exc:
        raise fail(exc) from exc
    console.print(
        f"champion of {profile}: version {previous if previous is not None else '(none)'} → {current}"
    )


@app.command()
def models(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as one JSON line.")] = False,
) -> None:
    """The profile's registered adapter versions, their aliases and held-out metrics."""
    versions = wiring.model_registry(load_settings()).versions(profile)
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
