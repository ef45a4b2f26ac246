"""Files generated into the repository (alert rules, dashboards): what is stale, writing them, and
the ``--write``/``--check`` command line the generators share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def stale(want: dict[Path, str], folder: Path, pattern: str) -> list[str]:
    """Files that differ from ``want`` (or match ``pattern`` in ``folder`` and should not be there)."""
    out = [str(p.relative_to(ROOT)) for p, text in want.items() if not p.exists() or p.read_text() != text]
    if folder.exists():
        out += [str(p.relative_to(ROOT)) for p in sorted(folder.glob(pattern)) if p not in want]
    return out


def write(want: dict[Path, str], folder: Path, pattern: str) -> None:
    """Write ``want`` and remove the files of ``pattern`` in ``folder`` it no longer names."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob(pattern):
        if path not in want:
            path.unlink()
    for path, text in want.items():
        path.write_text(text, encoding="utf-8")


def main(
    argv: list[str] | None,
    *,
    module: str,
    description: str | None,
    files: Callable[[], dict[Path, str]],
    folder: Path,
    pattern: str,
    listing: Callable[[], Iterable[str]],
) -> int:
    """``--write`` the files, ``--check`` them (exit 1 when stale), else print ``listing()``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    mode = parser.add_mutually_exclusive_group()
    where = f"{folder.relative_to(ROOT)}/{pattern}"
    mode.add_argument("--write", action="store_true", help=f"write {where}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed files differ")
    args = parser.parse_args(argv)
    if args.write:
        write(files(), folder, pattern)
        return 0
    if args.check:
        out = stale(files(), folder, pattern)
        for path in out:
            print(f"stale: {path} (run python -m {module} --write)", file=sys.stderr)
        return 1 if out else 0
    for line in listing():
        print(line)
    return 0
