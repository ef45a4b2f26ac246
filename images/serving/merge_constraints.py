"""Constraints for installing llm-twin into an image that already carries its own stack.

The vLLM image ships vLLM with the torch, transformers, Ray and CUDA libraries it was built and tested
with. Installing the project on top must not move any of them, and everything the base lacks should
get the version the project's tests ran with. So: every distribution already installed is pinned at
its installed version, and each line of the project's constraints (images/constraints.txt) is kept
only for a distribution the base does not have. pip then fails the build, loudly, if the project's
requirements cannot be met by the base's versions.

Usage (stdlib only, run by the base image's own interpreter):
    python3 merge_constraints.py images/constraints.txt > all-constraints.txt
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """``name==version`` of every distribution on this interpreter's path, keyed by normalized name."""
    pins: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            pins.setdefault(normalize(name), f"{name}=={dist.version}")
    return pins


def merge(project_constraints: str, base: dict[str, str]) -> list[str]:
    lines = ["# installed in the base image: kept as they are", *sorted(base.values(), key=str.lower)]
    lines.append("# the project's tested versions, for what the base lacks")
    for raw in project_constraints.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]
        if normalize(name) not in base:
            lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(argv[1]).read_text(encoding="utf-8")
    sys.stdout.write("\n".join(merge(text, installed())) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
