"""``twin crawl`` and ``twin documents``: the Collect pipeline from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twin import wiring
from twin.cli.common import (
    MetricsLinger,
    MetricsPort,
    app,
    console,
    err_console,
    load_profile,
    load_settings,
)
from twin.domain.crawl import SourceReport, SourceStatus
from twin.domain.errors import InvalidSpec, TwinError
from twin.domain.profile import TwinProfile
from twin.settings import Settings

_COUNTS = ("new", "updated", "unchanged", "deleted", "failed", "paid skipped")


def _summary_table(reports: list[SourceReport]) -> Table:
    # Paid posts are left out on purpose (a teaser cut at the paywall must not train the twin):
    # when a source had some, the table says why they are missing.
    paid = any(r.paid_skipped for r in reports)
    table = Table(
        title="Crawl summary",
        show_lines=False,
        caption="paid skipped: paid posts seen and not stored, as only their preview is public"
        if paid
        else None,
    )
    for column in ("source", "platform", "status", *_COUNTS):
        table.add_column(column, justify="right" if column in _COUNTS else "left")
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
            str(r.paid_skipped),
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
                    "paid_skipped": r.paid_skipped,
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

    with wiring.document_store(settings) as store:
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
            result = run_crawl(
                profile,
                store,
                config=settings.crawler,
                options=wiring.extract_options(settings),
                guard=wiring.address_guard(settings),
                on_change=on_change,
            )
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
    metrics_port: MetricsPort = None,
    metrics_linger: MetricsLinger = 0.0,
) -> None:
    """Crawl a profile's sources into Postgres: new, updated, unchanged, deleted and failed per source."""
    from twin.observability import metrics_while_running

    config = load_settings()
    with metrics_while_running(metrics_port, metrics_linger):
        try:
            twin_profile = load_profile(profile)
            reports = crawl_profile(twin_profile, config, as_json=as_json)
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
    with wiring.document_store(load_settings()) as store:
        docs = store.documents(profile)
    table = Table(title=f"raw_documents for {profile} ({len(docs)})")
    table.add_column("platform", no_wrap=True)
    table.add_column("category", no_wrap=True)
    table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=60)
    table.add_column("chars", justify="right", no_wrap=True)
    for d in docs:
        table.add_row(d.platform.value, d.category.value, d.title, str(len(d.content)))
    console.print(table)
