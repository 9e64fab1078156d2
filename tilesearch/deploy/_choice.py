"""Which config of a run to deploy: ``--trial N``, ``--config FILE`` or the best within budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tilesearch.core import TilesearchError, load_config
from tilesearch.search import best_trial, completed_trials, front, load_study_of_run, read_run_file


@dataclass
class Choice:
    """A config picked from a run: its tiles, and where they came from."""

    tiles: dict[str, str]
    label: str  # "trial 12", "best.yaml", or a config file path
    trial: int | None = None


def choose_config(run_dir: str | Path, trial: int | None = None, config: str | Path | None = None) -> Choice:
    """``--trial N``, ``--config FILE`` or, by default, the run's best config within budget."""
    document = read_run_file(run_dir)
    if trial is not None and config is not None:
        raise TilesearchError("give either --trial N or --config FILE, not both")
    if config is not None:
        loaded = load_config(config)
        model = document["settings"]["model"]
        if loaded.model and loaded.model != model:
            raise TilesearchError(f"config {str(config)!r} is for model {loaded.model!r}, but run {str(run_dir)!r} is {model!r}")
        names = [block["name"] for block in document["blocks"]]
        if set(loaded.tiles) != set(names):
            raise TilesearchError(f"config {str(config)!r} names other SE blocks than model {model!r} has")
        return Choice({name: str(tile) for name, tile in loaded.tiles.items()}, str(config))
    study = load_study_of_run(document)
    if trial is None:
        best = best_trial(study)
        if best is None:
            raise TilesearchError(f"run {str(run_dir)!r} has no feasible trial yet; continue it with `tilesearch resume`")
        return Choice(dict(best.user_attrs["tiles"]), f"trial {best.number} (best within budget)", best.number)
    listing = ", ".join(str(t.number) for t in front(study)) or "none"
    chosen = {t.number: t for t in completed_trials(study)}.get(trial)
    if chosen is None:
        raise TilesearchError(f"trial {trial} does not exist or did not complete; the front's trials are {listing}")
    if not chosen.user_attrs.get("feasible", True):
        raise TilesearchError(f"trial {trial} is over the buffer budget; the front's trials are {listing}")
    return Choice(dict(chosen.user_attrs["tiles"]), f"trial {trial}", trial)
