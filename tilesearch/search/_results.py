"""What a search leaves in its run folder.

``trials.csv`` (every trial), ``pareto.csv`` (the feasible Pareto front of the
metric vs buffer, from Optuna's ``best_trials``, which only ever holds feasible
trials), ``pareto.png`` and ``best.yaml``: the best-scoring config within the
budget, in the loadable tile-config format.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from tilesearch.core import (
    METRICS,
    HardwareProfile,
    Metric,
    SEBlock,
    atomic_path,
    buffer_report,
    config_document,
    save_config,
    write_text_atomically,
)
from tilesearch.search._study import completed_trials, stopped_early, study_metric, trials_in

SCORE_COLUMNS = (*METRICS, "map50", "predicted")  # every score a trial keeps, then the surrogate's prediction
# How a trial was scored: on how many images, and the early-stopping verdict (a stopped trial's reason, or the
# verdict it would have had where stopping only watches).
TRIAL_NOTES = ("images_scored", "stopped_early", "early_verdict", "early_verdict_images", "reused_from")


def front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The feasible Pareto front, by buffer ascending (one trial per distinct point)."""
    seen, unique = set(), []
    metric = study_metric(study)
    for trial in sorted(study.best_trials, key=lambda t: (t.values[1], metric.rank_key(t.values[0]), t.number)):
        point = tuple(trial.values)
        if point not in seen and "tiles" in trial.user_attrs:
            seen.add(point)
            unique.append(trial)
    return unique


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best-scoring feasible trial (most accurate, lowest KL...); the smaller buffer breaks ties."""
    metric = study_metric(study)
    return min(front(study), key=lambda t: (metric.rank_key(t.values[0]), t.values[1], t.number), default=None)


def baseline_trial(study: optuna.Study, label: str) -> optuna.trial.FrozenTrial | None:
    """The enqueued baseline trial: ``SE`` (all GAP) or ``7xW`` (the paper's uniform tile)."""
    return next((trial for trial in completed_trials(study) if trial.user_attrs.get("baseline") == label), None)


def trial_row(trial: optuna.trial.FrozenTrial, metric: Metric, se_score: float | None, se_buffer: int) -> dict:
    attrs = trial.user_attrs
    row = {
        "trial": trial.number,
        "score": attrs[metric.name],
        "drop": None if se_score is None else metric.worse_by(se_score, attrs[metric.name]),
        # The paired 95% interval of the drop, in the unit of ``drop``.
        **{key: attrs[key] for key in ("drop_ci_low", "drop_ci_high") if key in attrs},
        **{key: attrs[key] for key in SCORE_COLUMNS if key in attrs},
        "buffer": attrs["buffer"],
        "buffer_ratio": attrs["buffer"] / se_buffer,
        "buffer_bytes": attrs["buffer_bytes"],
        "extra_macs": attrs["extra_macs"],
        "feasible": attrs["feasible"],
        **{key: attrs[key] for key in TRIAL_NOTES if key in attrs},
    }
    row.update({f"tile:{name}": tile for name, tile in attrs["tiles"].items()})
    return row


def stopped_row(trial: optuna.trial.FrozenTrial) -> dict:
    """A candidate stopped early: what it would have cost, what it was predicted to score and why it was stopped."""
    attrs = trial.user_attrs
    row = {"trial": trial.number, **{key: attrs[key] for key in ("predicted", "buffer", *TRIAL_NOTES) if key in attrs}}
    row.update({f"tile:{name}": tile for name, tile in attrs["tiles"].items()})
    return row


def _rows(study: optuna.Study, trials, se_buffer: int) -> list[dict]:
    se, metric = baseline_trial(study, "SE"), study_metric(study)  # the study's attributes, read once
    se_score = se.user_attrs[metric.name] if se else None
    return [trial_row(trial, metric, se_score, se_buffer) for trial in trials]


def trials_frame(study: optuna.Study, se_buffer: int) -> pd.DataFrame:
    scored = {row["trial"]: row for row in _rows(study, completed_trials(study), se_buffer)}
    scored.update({trial.number: stopped_row(trial) for trial in stopped_early(study)})
    return pd.DataFrame([{**scored.get(trial.number, {"trial": trial.number}), "state": trial.state.name}
                         for trial in trials_in(study)])


def pareto_frame(study: optuna.Study, se_buffer: int) -> pd.DataFrame:
    """The front, with what its intervals allow: a point whose drop interval includes zero is
    indistinguishable from SE, and one whose interval overlaps a neighbour's is not told apart from it."""
    rows = _rows(study, front(study), se_buffer)
    for index, row in enumerate(rows):
        if "drop_ci_low" not in row:
            continue
        row["indistinguishable_from_se"] = row["drop_ci_low"] <= 0 <= row["drop_ci_high"]
        neighbours = [rows[i] for i in (index - 1, index + 1) if 0 <= i < len(rows) and "drop_ci_low" in rows[i]]
        row["overlaps_neighbour"] = any(_overlap(row, other) for other in neighbours)
    return pd.DataFrame(rows)


def _overlap(a: dict, b: dict) -> bool:
    return a["drop_ci_low"] <= b["drop_ci_high"] and b["drop_ci_low"] <= a["drop_ci_high"]


def plot_pareto(study: optuna.Study, path: Path, budget: int | None, title: str) -> Path:
    """Score vs buffer: every trial, the feasible front, SE and uniform 7xW marked, the budget line."""
    from matplotlib.figure import Figure

    trials, metric = completed_trials(study), study_metric(study)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()

    def scatter(points, **style):
        ax.scatter([t.values[1] / 1e6 for t in points], [metric.scale * t.values[0] for t in points], **style)

    scatter([t for t in trials if t.user_attrs["feasible"]], s=14, c="0.6", label="trials")
    infeasible = [t for t in trials if not t.user_attrs["feasible"]]
    if infeasible:
        scatter(infeasible, s=14, c="0.8", marker="x", label="over budget")
    points = front(study)
    if points:
        ax.plot([t.values[1] / 1e6 for t in points], [metric.scale * t.values[0] for t in points], "-o", c="tab:blue",
                ms=5, drawstyle="steps-post", label="Pareto front")
        _interval_bars(ax, points, metric, baseline_trial(study, "SE"))
    for label, marker, legend in (("SE", "*", "SE (all GAP)"), ("7xW", "D", "uniform 7xW")):
        trial = baseline_trial(study, label)
        if trial is not None:
            scatter([trial], marker=marker, s=120, zorder=5, edgecolors="k", label=legend)
    if budget is not None:
        ax.axvline(budget / 1e6, ls="--", c="tab:red", label="budget")
    ax.set_xlabel("network buffer (M elements)")
    ax.set_ylabel(f"{metric.label} ({metric.unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")  # a minimised metric puts SE in the lower right
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path


def _interval_bars(ax, points: list[optuna.trial.FrozenTrial], metric: Metric, se) -> None:
    """Each front point's paired 95% interval, drawn on its score (SE's score minus the interval of the drop)."""
    shown = [t for t in points if "drop_ci_low" in t.user_attrs]
    if se is None or not shown:
        return
    reference = se.user_attrs[metric.name]
    scores = [metric.scale * t.values[0] for t in shown]
    bounds = [sorted(metric.scale * metric.worsened(reference, t.user_attrs[key]) for key in ("drop_ci_low", "drop_ci_high"))
              for t in shown]
    errors = [[max(score - low, 0.0) for score, (low, _) in zip(scores, bounds)],
              [max(high - score, 0.0) for score, (_, high) in zip(scores, bounds)]]
    ax.errorbar([t.values[1] / 1e6 for t in shown], scores, yerr=errors, fmt="none", ecolor="tab:blue", alpha=0.6,
                capsize=2, label="95% interval (paired bootstrap)")


def write_outputs(
    study: optuna.Study,
    run_dir: Path,
    model: str,
    input_size: tuple[int, int],
    blocks: list[SEBlock],
    profile: HardwareProfile,
    budget: int | None,
    caveats: list[str] = (),
) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, pareto.png and best.yaml; returns what was written. ``caveats`` (random
    weights, synthesised images) go into the plot's title."""
    run_dir = Path(run_dir)
    se_buffer = sum(block.se_buffer for block in blocks)
    written = {}
    for name, frame in (("trials.csv", trials_frame(study, se_buffer)), ("pareto.csv", pareto_frame(study, se_buffer))):
        written[name] = write_text_atomically(run_dir / name, frame.to_csv(index=False))
    if completed_trials(study):
        title = "\n".join([f"{model}: {study.study_name}", *caveats])
        written["pareto.png"] = plot_pareto(study, run_dir / "pareto.png", budget, title)
    best = best_trial(study)
    if best is not None:
        report = buffer_report(blocks, best.user_attrs["tiles"], profile)
        metrics = {"trial": best.number, **{key: best.user_attrs[key] for key in SCORE_COLUMNS[:-1] if key in best.user_attrs}}
        written["best.yaml"] = save_config(run_dir / "best.yaml", config_document(model, input_size, report, metrics))
    return written
