"""What every ``twin`` command shares: the consoles, settings, profile loading and exit codes.

Settings are built here, once per command, and handed to :mod:`twin.wiring`. Exit codes: 0
success (a crawl where some sources failed still succeeds, with the failures in its summary), 1
when every source failed or a pipeline failed, 2 for invalid input (an unreadable or invalid
profile, bad settings).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from twin.domain.errors import InsufficientData, InvalidSpec, TwinError
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

SAMPLE_PROFILE = Path(__file__).resolve().parents[3] / "manifests" / "samples" / "twinprofile-alice.yaml"


def load_settings(**overrides: Any) -> Settings:
    """The settings tree (environment, ``.env``, then ``overrides``); invalid settings exit 2."""
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


def fail(exc: TwinError) -> typer.Exit:
    """Print ``exc`` and turn it into the exit code of the error vocabulary (2 invalid input, 1 other)."""
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2 if isinstance(exc, InvalidSpec | InsufficientData) else 1)


# The two options of every short-lived command Prometheus scrapes (twin crawl, twin train).
MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port while the command runs."),
]
MetricsLinger = Annotated[
    float,
    typer.Option(
        "--metrics-linger",
        min=0,
        help="After the work, keep /metrics up until one more scrape has read the final values, "
        "at most this many seconds (a Job's last counters are otherwise lost).",
    ),
]
