"""What a search leaves in its run folder.

``trials.csv`` (every trial), ``pareto.csv`` (the feasible Pareto front of
accuracy vs buffer, from Optuna's ``best_trials``, which only ever holds
feasible trials), ``pareto.png`` and ``best.yaml``: the most accurate config
within the budget, in the loadable tile-config format.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from tilesearch.config import config_document, save_config, write_atomically
from tilesearch.cost import HardwareProfile, buffer_report
from tilesearch.discover import SEBlock

COMPLETE = optuna.trial.TrialState.COMPLETE


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,)) if "tiles" in t.user_attrs]


def score_sign(study: optuna.Study) -> float:
    """+1 when the first objective is maximised (accuracy, agreement), -1 when minimised (kl)."""
    return 1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0


def front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The feasible Pareto front, by buffer ascending (one trial per distinct point)."""
    seen, unique = set(), []
    sign = score_sign(study)
    for trial in sorted(study.best_trials, key=lambda t: (t.values[1], -sign * t.values[0], t.number)):
        point = tuple(trial.values)
        if point not in seen and "tiles" in trial.user_attrs:
            seen.add(point)
            unique.append(trial)
    return unique


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best-scoring feasible trial (most accurate by default); the smaller buffer breaks ties."""
    candidates, sign = front(study), score_sign(study)
    return max(candidates, key=lambda t: (sign * t.values[0], -t.values[1], -t.number)) if candidates else None


def baseline_trial(study: optuna.Study, label: str) -> optuna.trial.FrozenTrial | None:
    """The enqueued baseline trial: ``SE`` (all GAP) or ``7xW`` (the paper's uniform tile)."""
    for trial in completed(study):
        if trial.user_attrs.get("baseline") == label:
            return trial
    return None


def se_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    return baseline_trial(study, "SE")


def study_metric(study: optuna.Study) -> str:
    """The score a study optimises (accuracy, agreement, kl, map, pseudo_map)."""
    return study.user_attrs.get("settings", {}).get("metric", "accuracy")


SCORE_COLUMNS = ("accuracy", "agreement", "kl", "map", "map50", "pseudo_map", "predicted")


def trial_row(trial: optuna.trial.FrozenTrial, metric: str, sign: float, se_score: float | None, se_buffer: int) -> dict:
    attrs = trial.user_attrs
    row = {
        "trial": trial.number,
        "score": attrs[metric],
        "drop": None if se_score is None else sign * (se_score - attrs[metric]),
        **{key: attrs[key] for key in SCORE_COLUMNS if key in attrs},
        "buffer": attrs["buffer"],
        "buffer_ratio": attrs["buffer"] / se_buffer,
        "buffer_bytes": attrs["buffer_bytes"],
        "extra_macs": attrs["extra_macs"],
        "feasible": attrs["feasible"],
    }
    row.update({f"tile:{name}": tile for name, tile in attrs["tiles"].items()})
    return row


def _rows(study: optuna.Study, trials, se_buffer: int) -> list[dict]:
    metric, se = study_metric(study), se_trial(study)
    se_score = se.user_attrs[metric] if se else None
    return [trial_row(trial, metric, score_sign(study), se_score, se_buffer) for trial in trials]


def trials_frame(study: optuna.Study, se_buffer: int) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state == COMPLETE and "tiles" in trial.user_attrs:
            rows.append({**_rows(study, [trial], se_buffer)[0], "state": trial.state.name})
        else:
            rows.append({"trial": trial.number, "state": trial.state.name})
    return pd.DataFrame(rows)


def pareto_frame(study: optuna.Study, se_buffer: int) -> pd.DataFrame:
    return pd.DataFrame(_rows(study, front(study), se_buffer))


def plot_pareto(study: optuna.Study, path: Path, budget: int | None, title: str) -> Path:
    """Accuracy vs buffer: every trial, the feasible front, SE and uniform 7xW marked, the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = completed(study)
    metric = study_metric(study)
    scale = 1 if metric == "kl" else 100
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    feasible = [t for t in trials if t.user_attrs["feasible"]]
    infeasible = [t for t in trials if not t.user_attrs["feasible"]]
    ax.scatter([t.values[1] / 1e6 for t in feasible], [scale * t.values[0] for t in feasible], s=14, c="0.6", label="trials")
    if infeasible:
        ax.scatter([t.values[1] / 1e6 for t in infeasible], [scale * t.values[0] for t in infeasible], s=14, c="0.8",
                   marker="x", label="over budget")
    points = front(study)
    if points:
        ax.plot([t.values[1] / 1e6 for t in points], [scale * t.values[0] for t in points], "-o", c="tab:blue",
                ms=5, drawstyle="steps-post", label="Pareto front")
    for trial, marker, label in ((se_trial(study), "*", "SE (all GAP)"), (baseline_trial(study, "7xW"), "D", "uniform 7xW")):
        if trial is not None:
            ax.scatter([trial.values[1] / 1e6], [scale * trial.values[0]], marker=marker, s=120, zorder=5,
                       edgecolors="k", label=label)
    if budget is not None:
        ax.axvline(budget / 1e6, ls="--", c="tab:red", label="budget")
    ax.set_xlabel("network buffer (M elements)")
    ax.set_ylabel({"accuracy": "zero-shot top-1 accuracy (%)", "agreement": "top-1 agreement with SE (%)",
                   "kl": "mean KL divergence from SE (nats)", "map": "COCO mAP@[.5:.95] (%)",
                   "pseudo_map": "mAP against the SE model's detections (%)"}[metric])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_outputs(
    study: optuna.Study,
    run_dir: Path,
    model: str,
    input_size: tuple[int, int],
    blocks: list[SEBlock],
    profile: HardwareProfile,
    budget: int | None,
) -> dict[str, Path]:
    """Write trials.csv, pareto.csv, pareto.png and best.yaml; returns what was written."""
    run_dir = Path(run_dir)
    se_buffer = sum(block.se_buffer for block in blocks)
    written = {}
    for name, frame in (("trials.csv", trials_frame(study, se_buffer)), ("pareto.csv", pareto_frame(study, se_buffer))):
        write_atomically(run_dir / name, frame.to_csv(index=False))
        written[name] = run_dir / name
    if completed(study):
        written["pareto.png"] = plot_pareto(study, run_dir / "pareto.png", budget, f"{model}: {study.study_name}")
    best = best_trial(study)
    if best is not None:
        report = buffer_report(blocks, best.user_attrs["tiles"], profile)
        metrics = {"trial": best.number, **{key: best.user_attrs[key] for key in SCORE_COLUMNS[:-1] if key in best.user_attrs}}
        written["best.yaml"] = save_config(run_dir / "best.yaml", config_document(model, input_size, report, metrics))
    return written
