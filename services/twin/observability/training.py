"""The training pipeline's metrics: runs by outcome, steps, loss, held-out figures, promotions.

``twin train`` is one process per run (on a cluster, the RayJob's driver on the Ray head), so
these live while it runs; ``twin train --metrics-port`` serves them meanwhile. Held-out figures
are gauges labelled by profile and the registry version they describe, with ``model`` saying
whose figure it is in that evaluation (the candidate, the base model, the champion it was
compared with). One process evaluates one version, so the version label stays bounded. The
optimizer steps happen in Ray Train workers; the driver hears of them (``on_step``) and counts them.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

TRAINING_RUNS = Counter(
    "twin_training_runs_total",
    "Training runs, by outcome: trained, already_trained (this dataset and config had a run), "
    "not_needed (the retraining policy declined) or failed.",
    ["profile", "outcome"],
)
TRAINING_RUN_SECONDS = Histogram(
    "twin_training_run_seconds",
    "Wall time of one `twin train`, dataset to registration.",
    ["profile"],
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
)
TRAINING_STEPS = Counter("twin_training_steps_total", "Optimizer steps reported by Ray Train.", ["profile"])
TRAINING_LOSS = Gauge("twin_training_loss", "The training loss last reported.", ["profile"])
TRAINING_HELDOUT_PERPLEXITY = Gauge(
    "twin_training_heldout_perplexity",
    "Held-out perplexity in the evaluation of a registered version (lower is better).",
    ["profile", "version", "model"],  # model: candidate | base | champion
)
TRAINING_STYLE_FIDELITY = Gauge(
    "twin_training_style_fidelity",
    "Style fidelity (0..1) of generations in the evaluation of a registered version.",
    ["profile", "version", "model"],
)
TRAINING_PROMOTIONS = Counter(
    "twin_training_promotions_total",
    "Moves of the champion alias, by who moved it (gate: the evaluation; manual: twin promote).",
    ["profile", "by"],
)
TRAINING_PROMOTIONS_DECLINED = Counter(
    "twin_training_promotions_declined_total",
    "Registered candidates the promotion gate (or auto_promote off) left as candidate.",
    ["profile"],
)


class StepMeter:
    """An ``on_step`` callback that counts steps and keeps the last loss (steps arrive as a running
    index, possibly every N steps, so the counter moves by the difference)."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.last = 0
        TRAINING_STEPS.labels(profile)

    def __call__(self, step: int, total: int, loss: float) -> None:
        del total
        if step > self.last:
            TRAINING_STEPS.labels(self.profile).inc(step - self.last)
            self.last = step
        TRAINING_LOSS.labels(self.profile).set(loss)


RUN_OUTCOMES = ("trained", "already_trained", "not_needed", "failed")


def run_started(profile: str) -> None:
    """Create the run's counters at zero, so the first scrape sees them: ``increase()`` over a series
    born at its first increment shows nothing, and a declined candidate or a failure would go unseen."""
    for outcome in RUN_OUTCOMES:
        TRAINING_RUNS.labels(profile, outcome)
    TRAINING_PROMOTIONS.labels(profile, "gate")
    TRAINING_PROMOTIONS_DECLINED.labels(profile)
    TRAINING_RUN_SECONDS.labels(profile)


def run_finished(profile: str, outcome: str, seconds: float | None = None) -> None:
    TRAINING_RUNS.labels(profile, outcome).inc()
    if seconds is not None:
        TRAINING_RUN_SECONDS.labels(profile).observe(seconds)


def evaluated(profile: str, version: int, metrics: Mapping[str, float]) -> None:
    """Set the held-out gauges of ``version`` from an evaluation's figures (``heldout_ppl_<model>``,
    ``style_fidelity_<model>``, as :meth:`twin.training.evaluate.EvalReport.metrics` names them)."""
    for key, value in metrics.items():
        for prefix, gauge in (
            ("heldout_ppl_", TRAINING_HELDOUT_PERPLEXITY),
            ("style_fidelity_", TRAINING_STYLE_FIDELITY),
        ):
            if key.startswith(prefix):
                gauge.labels(profile, str(version), key.removeprefix(prefix)).set(value)


def promotion(profile: str, *, promoted: bool, by: str = "gate") -> None:
    if promoted:
        TRAINING_PROMOTIONS.labels(profile, by).inc()
    else:
        TRAINING_PROMOTIONS_DECLINED.labels(profile).inc()
