"""The sensitivity heat map: blocks x tile choices, coloured by the one-block drop."""

from __future__ import annotations

from pathlib import Path

from tilesearch.core import METRICS, atomic_path
from tilesearch.scoring._sensitivity import SensitivityRow


def save_heatmap(rows: list[SensitivityRow], path: Path, value: str = "drop", title: str = "") -> Path:
    """Blocks x choices heat map of ``value`` (drop in points by default), drawn without pyplot's global state."""
    import pandas as pd
    from matplotlib.figure import Figure

    frame = pd.DataFrame([r.to_dict() for r in rows]).pivot(index="block", columns="tile", values=value)
    frame = frame.loc[list(dict.fromkeys(r.block for r in rows)), list(dict.fromkeys(r.tile for r in rows))]
    scale = 100 if value == "drop" or (value in METRICS and METRICS[value].unit == "%") else 1
    fig = Figure(figsize=(1.0 + 0.7 * frame.shape[1], 1.0 + 0.32 * frame.shape[0]), dpi=110)
    ax = fig.subplots()
    image = ax.imshow(frame.values * scale, aspect="auto", cmap="magma_r")
    ax.set_xticks(range(frame.shape[1]), frame.columns, rotation=45, ha="right")
    ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=7)
    fig.colorbar(image, ax=ax, label=f"{value}{' (points)' if scale == 100 else ''}")
    ax.set_title(title or f"one-block {value}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)
