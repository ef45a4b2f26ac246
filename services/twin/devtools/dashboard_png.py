"""Draw each Grafana dashboard's panels from a real Prometheus into a PNG, so a reader sees what the
dashboards show without a cluster or a Grafana (``docs/observability.md`` shows them).

Same definitions (:mod:`twin.devtools.dashboard_defs`), same queries run the way Grafana runs them
(:mod:`twin.devtools.dashboard_queries`), drawn with matplotlib on a 24-column grid like Grafana's:
time series as lines, stats as a number, tables as a table. A panel only a cluster or a GPU can feed
says so where it has no data.

    python -m twin.devtools.dashboard_png --prometheus http://127.0.0.1:9090 --minutes 15 --out docs/img

``tests/integration/test_dashboards_live.py`` runs it on the Prometheus of its end-to-end run
(``TWIN_DASHBOARD_PICTURES=docs/img`` writes the pictures the docs show).
"""

from __future__ import annotations

import argparse
import math
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.devtools.dashboard_defs import CLUSTER, GPU, OPERATOR, Dashboard, Panel, dashboards
from twin.devtools.dashboard_queries import Prometheus, PrometheusError, Series, Window, run_query

GRID = 24
_WHY = {
    CLUSTER: "fed only on a cluster (Ray Serve, kube-state-metrics, Kafka)",
    OPERATOR: "fed by the operator (a cluster)",
    GPU: "fed only by vLLM on GPUs",
}


def _fmt(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value:.0%}"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _lines(panel: Panel, prometheus: Prometheus, window: Window) -> list[tuple[str, Series]]:
    out: list[tuple[str, Series]] = []
    for query in panel.queries:
        try:
            found = run_query(prometheus, panel, query, window)
        except PrometheusError:
            continue  # drawn as "no data"; the integration test is where a failing query fails
        out.extend((s.legend(query.legend), s) for s in found)
    return out


def _draw_timeseries(ax: Any, panel: Panel, lines: list[tuple[str, Series]], window: Window) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter

    def peak(line: tuple[str, Series]) -> float:
        return max((abs(v) for _, v in line[1].points if math.isfinite(v)), default=0.0)

    # Grafana draws them all; a picture stays legible with the 12 that rise highest.
    for label, series in sorted(lines, key=peak, reverse=True)[:12]:
        xs = [datetime.fromtimestamp(t, UTC) for t, _ in series.points]
        ax.plot(xs, [v for _, v in series.points], linewidth=1.2, label=label[:48])
    ax.set_xlim(datetime.fromtimestamp(window.start, UTC), datetime.fromtimestamp(window.end, UTC))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v, panel.unit)))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=6, loc="upper left", frameon=False)


def _draw_stat(ax: Any, panel: Panel, lines: list[tuple[str, Series]], window: Window) -> None:
    del window
    ax.axis("off")
    label, series = lines[0]
    ax.text(0.5, 0.5, _fmt(series.points[-1][1], panel.unit), ha="center", va="center", fontsize=22)
    ax.text(0.5, 0.12, label, ha="center", va="center", fontsize=8, color="#555")


def _draw_table(ax: Any, panel: Panel, lines: list[tuple[str, Series]], window: Window) -> None:
    ax.axis("off")
    del window
    keys = sorted({k for _, s in lines for k in s.labels})
    lines = sorted(lines, key=lambda line: -abs(line[1].points[-1][1]))  # what matters first
    rows = [[s.labels.get(k, "") for k in keys] + [_fmt(s.points[-1][1], panel.unit)] for _, s in lines[:10]]
    table = ax.table(cellText=rows, colLabels=[*keys, "value"], cellLoc="left", bbox=(0, 0, 1, 0.9))
    table.auto_set_font_size(False)
    table.set_fontsize(7)


def _draw(ax: Any, panel: Panel, prometheus: Prometheus, window: Window) -> bool:
    """Draw one panel; False when it had no data."""
    ax.set_title(panel.title, fontsize=9, loc="left")
    lines = _lines(panel, prometheus, window)
    if not lines:
        ax.axis("off")
        why = textwrap.fill(_WHY.get(panel.needs or "", ""), width=panel.width * 4)
        ax.text(0.5, 0.5, f"No data\n{why}".strip(), ha="center", va="center", fontsize=8, color="#888")
        return False
    {"stat": _draw_stat, "table": _draw_table}.get(panel.kind, _draw_timeseries)(ax, panel, lines, window)
    return True


def _layout(board: Dashboard) -> list[tuple[str, list[list[Panel]]]]:
    """Rows of lines of panels, a line filling Grafana's 24 columns."""
    out: list[tuple[str, list[list[Panel]]]] = []
    for row in board.rows:
        lines: list[list[Panel]] = [[]]
        for panel in row.panels:
            if sum(p.width for p in lines[-1]) + panel.width > GRID:
                lines.append([])
            lines[-1].append(panel)
        out.append((row.title, lines))
    return out


def render(board: Dashboard, prometheus: Prometheus, window: Window, out: Path) -> Path:
    """Draw ``board`` into ``out/dashboard-<uid>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = _layout(board)
    heights: list[float] = []
    for _, lines in layout:
        heights.append(0.35)  # the row's title
        heights.extend(1.6 if all(p.kind == "stat" for p in line) else 3.0 for line in lines)
    fig = plt.figure(figsize=(16, sum(heights) + 0.8), dpi=90)
    top = 1 - 0.6 / fig.get_figheight()  # room for the title, not a fixed fraction of a tall figure
    grid = fig.add_gridspec(
        len(heights), GRID, height_ratios=heights, hspace=0.6, wspace=1.2, top=top, bottom=0.02
    )
    start, end = (datetime.fromtimestamp(t, UTC) for t in (window.start, window.end))
    period = f"{start:%H:%M:%S} to {end:%H:%M:%S} UTC"
    fig.suptitle(
        f"{board.title}   ({period})", fontsize=12, x=0.01, y=1 - 0.15 / fig.get_figheight(), ha="left"
    )
    at = 0
    for title, lines in layout:
        header = fig.add_subplot(grid[at, :])
        header.axis("off")
        header.text(0, 0.2, title, fontsize=10, fontweight="bold")
        at += 1
        for line in lines:
            col = 0
            for panel in line:
                _draw(fig.add_subplot(grid[at, col : col + panel.width]), panel, prometheus, window)
                col += panel.width
            at += 1
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dashboard-{board.uid}.png"
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def render_all(prometheus: Prometheus, window: Window, out: Path) -> list[Path]:
    return [render(board, prometheus, window, out) for board in dashboards()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus' base URL.")
    parser.add_argument("--minutes", type=float, default=15, help="The window: the last N minutes.")
    parser.add_argument("--rate-interval", default="1m", help="What $__rate_interval stands for.")
    parser.add_argument("--profile", default=".*", help="The profile overview's profile (a regex).")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="Folder for the PNGs.")
    args = parser.parse_args(argv)
    end = time.time()
    window = Window(
        end - args.minutes * 60, end, max(1.0, args.minutes * 60 / 300), args.rate_interval, args.profile
    )
    with Prometheus(args.prometheus) as prometheus:
        for path in render_all(prometheus, window, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
