"""Per-block sensitivity: what each tile costs when only one SE block is tiled.

Vosco et al. (section 4.3, Table 3) find the accuracy lost by assigning SE
weights to TSE additive across stages, so the drop of a whole config is well
predicted by the sum of one-block drops. This module measures those drops for
every block and tile choice.

Prefix caching makes the scan cheap: tiling block i cannot change anything the
network computed before block i, so one reference forward per batch records the
output of every module that finished before each SE block started, and the
forward for a choice at block i replays those outputs instead of recomputing
them. The scan then costs about choices x (blocks / 2) forwards instead of
choices x blocks. The modules replayed are the siblings of block i's ancestors
(stem, earlier stages, earlier blocks, the block's own layers before its SE),
found from the module tree and the recorded call order, so it works for any
model whose earlier modules are each called once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tilesearch.tiled_se import apply_tiles, find_se_modules
from tilesearch.tiles import GAP, TileSpec


def _clone(value):
    if isinstance(value, Tensor):
        return value.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the cache
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _replayable(value) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return all(_replayable(v) for v in value)
    if isinstance(value, dict):
        return all(_replayable(v) for v in value.values())
    return False


@dataclass
class _Call:
    start: int
    end: int = -1
    count: int = 0


class PrefixCache:
    """Replays everything a forward computed before a chosen SE block.

    ``record(x)`` runs the model once (all SE blocks GAP) and keeps what is
    needed; ``run_from(i, x)`` then computes the model's output with the
    modules that finished before SE block ``i`` replaced by their recorded
    outputs.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.se_names = [name for name, _ in find_se_modules(model)]
        self.modules = dict(model.named_modules())
        self._candidates = self._sibling_candidates()
        self._calls: dict[str, _Call] = {}
        self._outputs: dict[str, object] = {}

    def _sibling_candidates(self) -> dict[str, list[str]]:
        """For each SE block, the children of its ancestors that are not ancestors themselves."""
        candidates = {}
        for se_name in self.se_names:
            parts = se_name.split(".")
            ancestors = {".".join(parts[:k]) for k in range(len(parts) + 1)}
            siblings = []
            for k in range(len(parts)):
                parent = self.modules[".".join(parts[:k])]
                prefix = ".".join(parts[:k])
                for child_name, _ in parent.named_children():
                    full = f"{prefix}.{child_name}" if prefix else child_name
                    if full not in ancestors:
                        siblings.append(full)
            candidates[se_name] = siblings
        return candidates

    @torch.no_grad()
    def record(self, x: Tensor) -> Tensor:
        """The reference forward (SE blocks as they are tiled now, normally all GAP)."""
        wanted = {name for names in self._candidates.values() for name in names} | set(self.se_names)
        self._calls, self._outputs, clock = {}, {}, [0]
        handles = []
        for name in wanted:
            module = self.modules[name]

            def pre(_m, _args, name=name):
                clock[0] += 1
                call = self._calls.setdefault(name, _Call(start=clock[0]))
                call.count += 1

            def post(_m, _args, output, name=name):
                clock[0] += 1
                self._calls[name].end = clock[0]
                self._outputs[name] = output

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def replayed(self, se_name: str) -> list[str]:
        """Modules whose recorded output stands in for their computation when only ``se_name`` changes."""
        start = self._calls[se_name].start
        return [
            name
            for name in self._candidates[se_name]
            if name in self._calls
            and self._calls[name].count == 1
            and self._calls[name].end < start
            and _replayable(self._outputs[name])
        ]

    @contextmanager
    def _replaying(self, names: list[str]) -> Iterator[None]:
        patched = []
        for name in names:
            module, output = self.modules[name], self._outputs[name]
            patched.append((module, module.__dict__.get("forward")))
            module.forward = lambda *args, output=output, **kwargs: _clone(output)
        try:
            yield
        finally:
            for module, previous in patched:
                if previous is None:
                    del module.forward
                else:
                    module.forward = previous

    @torch.no_grad()
    def run_from(self, se_name: str, x: Tensor) -> Tensor:
        """The model's output on ``x`` (the recorded batch), recomputing only from ``se_name`` on."""
        with self._replaying(self.replayed(se_name)):
            return self.model(x)


@dataclass(frozen=True)
class SensitivityRow:
    block: str
    tile: str
    accuracy: float
    agreement: float
    kl: float
    drop: float


@torch.inference_mode()
def scan(
    model: nn.Module,
    batches: Callable[[], Iterator[tuple[Tensor, Tensor]]],
    choices: dict[str, list[TileSpec]],
    use_prefix_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[SensitivityRow]:
    """One-block-at-a-time zero-shot scores of every (block, choice), all other blocks GAP.

    ``batches()`` yields (normalised inputs, labels) on the model's device;
    ``choices`` maps block name -> tiles to try (GAP is the reference).
    """
    from tilesearch.score import kl_divergence

    apply_tiles(model, GAP)
    cache = PrefixCache(model)
    totals: dict[tuple[str, str], list[float]] = {}
    se_correct, count = 0, 0
    for inputs, labels in batches():
        reference = cache.record(inputs)
        se_top1 = reference.argmax(1)
        se_correct += int((se_top1 == labels).sum())
        count += len(labels)
        for block, tiles in choices.items():
            module = model.get_submodule(block)
            for tile in tiles:
                if tile.is_gap:
                    continue
                module.tse_tile = tile
                logits = cache.run_from(block, inputs) if use_prefix_cache else model(inputs)
                top1 = logits.argmax(1)
                sums = totals.setdefault((block, str(tile)), [0.0, 0.0, 0.0])
                sums[0] += int((top1 == labels).sum())
                sums[1] += int((top1 == se_top1).sum())
                sums[2] += float(kl_divergence(reference, logits).sum())
                if progress:
                    progress(1)
            module.tse_tile = GAP
    se_accuracy = se_correct / count
    rows = []
    for block, tiles in choices.items():
        for tile in tiles:
            if tile.is_gap:
                rows.append(SensitivityRow(block, str(tile), se_accuracy, 1.0, 0.0, 0.0))
            else:
                correct, agree, kl = totals[(block, str(tile))]
                rows.append(SensitivityRow(block, str(tile), correct / count, agree / count, kl / count,
                                           se_accuracy - correct / count))
    return rows


def save_heatmap(rows: list[SensitivityRow], path: Path, value: str = "drop", title: str = "") -> Path:
    """Blocks x choices heat map of ``value`` (drop in points by default)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame([r.__dict__ for r in rows]).pivot(index="block", columns="tile", values=value)
    frame = frame.loc[list(dict.fromkeys(r.block for r in rows)), list(dict.fromkeys(r.tile for r in rows))]
    scale = 100 if value in ("drop", "accuracy", "agreement") else 1
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * frame.shape[1], 1.0 + 0.32 * frame.shape[0]), dpi=110)
    image = ax.imshow(frame.values * scale, aspect="auto", cmap="magma_r")
    ax.set_xticks(range(frame.shape[1]), frame.columns, rotation=45, ha="right")
    ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=7)
    fig.colorbar(image, ax=ax, label=f"{value}{' (points)' if scale == 100 else ''}")
    ax.set_title(title or f"one-block {value}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def block_choices(search) -> dict[str, list[TileSpec]]:
    """The distinct tiles each block may take in a search's space (choices that clip alike merged)."""
    from tilesearch.space import distinct_choices

    return {block.name: distinct_choices(search.space.choices_for(block.stage), block) for block in search.blocks}


def _identity(search) -> str:
    """The settings a sensitivity table depends on (not the budget or the metric)."""
    import json

    from tilesearch.search import IDENTITY

    settings = search.settings.to_dict()
    return json.dumps({key: settings[key] for key in IDENTITY if key not in ("budget", "metric")}, sort_keys=True)


def saved_sensitivity(search) -> list[SensitivityRow] | None:
    """The run folder's ``sensitivity.csv``, if it was measured with these settings and tile choices."""
    import pandas as pd

    path, measured_for = search.run_dir / "sensitivity.csv", search.run_dir / "sensitivity.json"
    if not (path.is_file() and measured_for.is_file() and measured_for.read_text() == _identity(search)):
        return None
    frame = pd.read_csv(path)
    wanted = {(block, str(tile)) for block, tiles in block_choices(search).items() for tile in tiles}
    if set(zip(frame["block"], frame["tile"])) != wanted:
        return None
    return [SensitivityRow(**{k: row[k] for k in SensitivityRow.__dataclass_fields__}) for _, row in frame.iterrows()]


def sensitivity_for(search, use_prefix_cache: bool = True, show_progress: bool = True) -> list[SensitivityRow]:
    """The search's sensitivity table, from ``sensitivity.csv`` in its run folder or measured (and saved)."""
    import pandas as pd
    from rich.progress import Progress

    from tilesearch.config import write_atomically

    saved = saved_sensitivity(search)
    if saved is not None:
        return saved
    choices = block_choices(search)
    if search.scorer is None:
        search.scorer = search.scorer_factory()
    scorer = search.scorer
    total = sum(1 for tiles in choices.values() for tile in tiles if not tile.is_gap) * -(-len(scorer.images) // scorer.batch_size)
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("sensitivity scan", total=total)
        rows = scan(scorer.model, scorer.batches, choices, use_prefix_cache, lambda n: progress.advance(task, n))
    search.run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(search.run_dir / "sensitivity.csv", pd.DataFrame([row.__dict__ for row in rows]).to_csv(index=False))
    write_atomically(search.run_dir / "sensitivity.json", _identity(search))
    save_heatmap(rows, search.run_dir / "sensitivity.png", title=f"{search.settings.model}: one-block accuracy drop")
    return rows
