"""The ``twin`` command: the embedded runtime and one command per pipeline.

One module per pipeline registers its commands on the shared Typer app (:mod:`twin.cli.common`);
each builds the settings once and asks :mod:`twin.wiring` for the adapters the pipeline needs.
"""

from __future__ import annotations

from twin.cli import collect, crd, db, demo, features, serving, training
from twin.cli.common import SAMPLE_PROFILE, app, load_profile

__all__ = [
    "SAMPLE_PROFILE",
    "app",
    "collect",
    "crd",
    "db",
    "demo",
    "features",
    "load_profile",
    "main",
    "serving",
    "training",
]


def main() -> None:
    app()
