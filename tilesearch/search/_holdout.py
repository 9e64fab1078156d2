"""The held-out view of a search: SE, the best config, the paper's uniform 7xW and the whole front, on images
the search never saw, each with its drop versus SE and the drop's paired 95% interval.

``holdout.yaml`` is written when a run finishes; ``tilesearch pareto RUN --holdout`` scores every front
point too (``pareto_holdout.csv`` and ``pareto_holdout.png``, beside the search's own front).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import yaml

from tilesearch.core import GAP, Metric, TilesearchError, atomic_path, get_metric, write_text_atomically
from tilesearch.search._objective import Search
from tilesearch.search._results import baseline_trial, best_trial, front
from tilesearch.search._settings import scored_on


def _held_out_row(search: Search, scorer, trial: optuna.trial.FrozenTrial, metric: Metric, se) -> dict:
    """A trial's config scored on the held-out images: its buffer, scores, drop versus SE and the drop's paired
    95% interval (``drop_ci_low``, ``drop_ci_high``, where the scorer keeps per-image statistics), raw units."""
    score = scorer.score(trial.user_attrs["tiles"])
    return {"trial": trial.number, "buffer": trial.user_attrs["buffer"], **score.to_dict(),
            "drop": metric.worse_by(getattr(se, metric.name), getattr(score, metric.name)),
            **search.drop_interval(score, se, metric)}


def _held_out_entry(search: Search, scorer, trial: optuna.trial.FrozenTrial, metric: Metric, se) -> dict:
    """:func:`_held_out_row` as ``holdout.yaml`` keeps it: drop and ``drop_ci`` in points for percentages."""
    row = _held_out_row(search, scorer, trial, metric, se)
    entry = {key: value for key, value in row.items() if not key.startswith("drop_ci")}
    entry["drop"] = metric.scale * row["drop"]
    if "drop_ci_low" in row:
        entry["drop_ci"] = [metric.scale * row["drop_ci_low"], metric.scale * row["drop_ci_high"]]
    return entry


def holdout_report(search: Search, study: optuna.Study) -> dict | None:
    """SE and the best config on images the search never saw: the rest of --data, or --holdout. A search on
    synthesised images has none, and its holdout.yaml says so."""
    best = best_trial(study)
    if best is None:
        return None
    if search.settings.data is None:
        report = {"images": 0, "source": None, "note": scored_on(search.settings.to_dict()), "skipped": []}
        write_text_atomically(search.run_dir / "holdout.yaml", yaml.safe_dump(report, sort_keys=False))
        return report
    scorer = search.holdout_scorer()
    if scorer is None:
        return None
    metric = get_metric(search.report_metric)
    se = scorer.score(GAP)
    report = {
        "images": len(scorer.images),
        "source": str(search.settings.holdout or search.settings.data),
        "metric": search.report_metric,
        "drop_unit": "points" if metric.unit == "%" else metric.unit,  # of every entry's drop and drop_ci
        "se": {"buffer": search.se_total, **se.to_dict()},
    }
    uniform = baseline_trial(study, "7xW")  # the paper's recipe, when the space has it
    for label, trial in (("best", best), ("uniform_7xW", uniform)):
        if trial is not None:
            report[label] = _held_out_entry(search, scorer, trial, metric, se)
    report["skipped"] = list(scorer.images.skipped)  # unreadable images not in the report
    write_text_atomically(search.run_dir / "holdout.yaml", yaml.safe_dump(report, sort_keys=False))
    return report


def holdout_front(search: Search, study: optuna.Study, show_progress: bool = True) -> pd.DataFrame:
    """Every point of the search's front scored on the held-out images: ``pareto_holdout.csv`` and a plot of both
    fronts (``pareto_holdout.png``) in the run folder. Decoded images come from the run folder's cache."""
    from rich.progress import track

    scorer = search.holdout_scorer() if search.settings.data is not None else None
    if scorer is None:
        reason = (scored_on(search.settings.to_dict()) if search.settings.data is None else
                  "--val-subset took every image of --data")
        raise TilesearchError(f"run {str(search.run_dir)!r} has no held-out images: {reason}")
    points = front(study)
    if not points:
        raise TilesearchError(f"run {str(search.run_dir)!r} has no feasible trial yet: its front is empty")
    metric = get_metric(search.report_metric)
    se = scorer.score(GAP)
    se_value = getattr(se, metric.name)
    rows = []
    for trial in track(points, description="scoring the front on held-out images", transient=True,
                       disable=not show_progress):
        row = _held_out_row(search, scorer, trial, metric, se)
        rows.append({"trial": trial.number, "buffer": row["buffer"], "search_score": trial.user_attrs.get(metric.name),
                     metric.name: row[metric.name], "drop": row["drop"], "drop_ci_low": row.get("drop_ci_low"),
                     "drop_ci_high": row.get("drop_ci_high")})
    frame = pd.DataFrame(rows)
    write_text_atomically(search.run_dir / "pareto_holdout.csv", frame.to_csv(index=False))
    _plot_both_fronts(frame, search, metric, se_value, len(scorer.images))
    return frame


def _plot_both_fronts(frame: pd.DataFrame, search: Search, metric: Metric, se_value: float, images: int) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    buffers = frame["buffer"] / 1e6
    ax.plot(buffers, metric.scale * frame["search_score"], "-o", ms=4, drawstyle="steps-post", c="0.6",
            label=f"front on the search's {search.settings.val_subset} images")
    held_out = metric.scale * frame[metric.name]
    if frame["drop_ci_low"].notna().all():  # SE's held-out score minus the drop's interval, in the shown unit
        bounds = [metric.scale * metric.worsened(se_value, frame[key]) for key in ("drop_ci_low", "drop_ci_high")]
        lower, upper = pd.concat(bounds, axis=1).min(axis=1), pd.concat(bounds, axis=1).max(axis=1)
        ax.errorbar(buffers, held_out, yerr=[(held_out - lower).clip(lower=0), (upper - held_out).clip(lower=0)],
                    fmt="none", ecolor="tab:green", capsize=2)
    ax.plot(buffers, held_out, "-o", ms=5, drawstyle="steps-post", c="tab:green", label=f"held out ({images} images)")
    ax.axhline(metric.scale * se_value, ls=":", c="k", label="SE, held out")
    ax.set_xlabel("network buffer (M elements)")
    ax.set_ylabel(f"{metric.label} ({metric.unit})")
    ax.set_title(f"{search.study_name}\nthe front on held-out images (bars: paired 95% intervals)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = search.run_dir / "pareto_holdout.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path
