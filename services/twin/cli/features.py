"""``twin features`` and ``twin search``: the Features pipeline from the terminal."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from twin import wiring
from twin.cli.common import app, console, err_console, load_settings
from twin.domain.errors import TwinError
from twin.settings import Settings


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

    settings = load_settings()
    status = err_console.status("starting change capture and embedding workers...")
    status.start()

    def on_batch(report: Any, summary: Any) -> None:
        status.update(
            f"{summary.received} changes · {summary.applied} applied · {summary.chunks} chunks · "
            f"{summary.dead_lettered} dead-lettered"
        )

    try:
        summary = run_features(
            settings.features, wiring.feature_deps(settings), idle_exit_s=until_idle, on_batch=on_batch
        )
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
    from twin.domain.documents import Category
    from twin.domain.features import RetrievalQuery

    embedder = wiring.embedder(settings)
    with wiring.retriever(settings) as retriever:
        query = RetrievalQuery(
            profile=profile,
            embedding=embedder.embed([question])[0],
            k=k,
            categories=tuple(Category(c) for c in categories),
        )
        return retriever.search(query)


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for in the owner's writing.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (metadata.name).")],
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    category: Annotated[list[str], typer.Option("--category", "-c", help="article, post or code.")] = [],  # noqa: B006
) -> None:
    """Retrieve the chunks of a profile's writing closest to a question."""
    hits = search_profile(load_settings(), profile, question, k, category)
    table = Table(title=f"Top {len(hits)} for {question!r}")
    for column in ("score", "category", "title", "excerpt"):
        table.add_column(column, overflow="fold" if column == "excerpt" else "ellipsis")
    for hit in hits:
        excerpt = " ".join(hit.text.split())[:160]
        table.add_row(f"{hit.score:.3f}", hit.category.value, hit.title, excerpt)
    console.print(table)
