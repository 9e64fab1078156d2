"""A search's one-block sensitivity table, measured once and kept in its run folder.

``sensitivity.csv`` (with ``sensitivity.json``, the settings it was measured
with, and ``sensitivity.png``) is reused by a resume, another worker or a later
run on the same model and images; the scan itself is
:func:`tilesearch.scoring.scan`.
"""

from __future__ import annotations

import json

import pandas as pd

from tilesearch.core import write_text_atomically
from tilesearch.scoring import SensitivityRow, save_heatmap, scan
from tilesearch.search._objective import Search
from tilesearch.search._settings import IDENTITY


def _identity(search: Search) -> str:
    """The settings a sensitivity table depends on (not the budget or the metric)."""
    settings = search.settings.to_dict()
    return json.dumps({key: settings[key] for key in IDENTITY if key not in ("budget", "metric")}, sort_keys=True)


def saved_sensitivity(search: Search) -> list[SensitivityRow] | None:
    """The run folder's ``sensitivity.csv``, if it was measured with these settings and tile choices."""
    path, measured_for = search.run_dir / "sensitivity.csv", search.run_dir / "sensitivity.json"
    if not (path.is_file() and measured_for.is_file() and measured_for.read_text() == _identity(search)):
        return None
    frame = pd.read_csv(path)
    wanted = {(block, str(tile)) for block, tiles in search.space.block_choices(search.blocks).items() for tile in tiles}
    if set(zip(frame["block"], frame["tile"])) != wanted:
        return None
    return [SensitivityRow.from_dict(row.to_dict()) for _, row in frame.iterrows()]


def sensitivity_for(search: Search, use_prefix_cache: bool = True, show_progress: bool = True) -> list[SensitivityRow]:
    """The search's sensitivity table, from ``sensitivity.csv`` in its run folder or measured (and saved)."""
    from rich.progress import Progress

    saved = saved_sensitivity(search)
    if saved is not None:
        return saved
    choices, scorer = search.space.block_choices(search.blocks), search.scorer
    batches = -(-len(scorer.images) // scorer.batch_size)
    total = sum(1 for tiles in choices.values() for tile in tiles if not tile.is_gap) * batches
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("sensitivity scan", total=total)
        rows = scan(scorer.model, scorer.batches, choices, use_prefix_cache, lambda n: progress.advance(task, n),
                    tally=scorer.tally)
    write_text_atomically(search.run_dir / "sensitivity.csv", pd.DataFrame([row.to_dict() for row in rows]).to_csv(index=False))
    write_text_atomically(search.run_dir / "sensitivity.json", _identity(search))
    save_heatmap(rows, search.run_dir / "sensitivity.png",
                 title=f"{search.settings.model}: one-block drop of {next(iter(rows[0].scores))}")
    return rows
