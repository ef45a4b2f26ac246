"""Helpers for tests that run the real ``twin`` CLI against the sample profile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from twin.demo.server import SiteServer
from twin.demo.sites import DEMO_PORTS
from twin.domain.documents import Platform

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PROFILE = ROOT / "manifests" / "samples" / "twinprofile-alice.yaml"


def sample_profile(servers: dict[Platform, SiteServer]) -> dict[str, Any]:
    """The README's sample profile with its fixed demo ports moved to the test's servers."""
    text = SAMPLE_PROFILE.read_text()
    for platform, port in DEMO_PORTS.items():
        text = text.replace(f"127.0.0.1:{port}/", servers[platform].base_url.removeprefix("http://") + "/")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@dataclass
class TwinRun:
    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, Any]:
        last = [line for line in self.stdout.splitlines() if line.startswith("{")][-1]
        result: dict[str, Any] = json.loads(last)
        return result

    def by_source(self) -> dict[str, dict[str, Any]]:
        return {s["source"]: s for s in self.summary()["sources"]}
