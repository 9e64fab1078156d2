"""Terminal rendering: the tables and summary lines the commands print."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from tilesearch.core import BufferReport, HardwareProfile, Metric, TileSpec, format_count, get_metric
from tilesearch.data import get_source
from tilesearch.scoring import SensitivityRow
from tilesearch.search import (
    AdditiveSurrogate,
    SearchPlan,
    image_forwards,
    pareto_frame,
    run_caveats,
    stopped_early,
    study_metric,
    surrogate_error,
    surrogate_error_trend,
)
from tilesearch.zoo import BlockCount

console = Console()


def _table(title: str, columns: list[str], left: tuple[str, ...] = ()) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def print_buffer(model: str, input_size: tuple[int, int], tile: TileSpec, profile: HardwareProfile,
                 report: BufferReport) -> None:
    """Per-block buffers under one tile, and the network totals beside SE's."""
    table = _table(f"{model} at {input_size[0]}x{input_size[1]}, tile {tile}, profile {profile.name}",
                   ["block", "stage", "C x H x W", "tile", "tiles", "SE buffer", "buffer"], left=("block", "C x H x W"))
    for row in report.blocks:
        table.add_row(row.name, "-" if row.stage is None else str(row.stage), f"{row.channels} x {row.height} x {row.width}",
                      f"{row.tile_h}x{row.tile_w}", str(row.tiles), format_count(row.se_buffer), format_count(row.buffer))
    console.print(table)
    bpe = profile.bytes_per_element
    console.print(f"SE (all GAP): {format_count(report.se_total)} elements ({format_count(report.se_total_bytes)}B at {bpe} B/element)")
    console.print(
        f"tile {tile}: {format_count(report.total)} elements ({format_count(report.total_bytes)}B), "
        f"{report.total / report.se_total:.1%} of SE, +{format_count(report.extra_macs)} MACs"
    )


def print_models(rows: list[tuple[str, str, BlockCount, tuple[int, int]]]) -> None:
    """(name, zoo, blocks, input size) per model."""
    table = _table("models with channel-attention blocks", ["model", "zoo", "blocks", "found by", "input size"],
                   left=("model", "zoo", "found by"))
    for name, zoo, blocks, (height, width) in rows:
        table.add_row(name, zoo, str(blocks.count), ", ".join(blocks.found_by), f"{height}x{width}")
    console.print(table)


def print_plan(plan: SearchPlan) -> None:
    """What a search is about to do: the model, its blocks, SE and uniform 7xW buffers beside the budget, the
    weights and the images it scores on (before any of them is loaded)."""
    settings, (height, width), se = plan.settings, plan.input_size, plan.se_buffer
    budget = "no budget" if plan.budget is None else f"budget {format_count(plan.budget)} ({plan.budget / se:.1%} of SE)"
    console.print(f"{settings.model} at {height}x{width}: {len(plan.blocks)} attention blocks; buffer SE "
                  f"{format_count(se)}, uniform 7xW {format_count(plan.uniform_7xw_buffer)} elements; {budget}")
    console.print(f"weights: {plan.weights}")
    console.print(f"scored on: {plan.scored_on}; metric {settings.metric}")
    if settings.data is None:
        caveat = get_source(settings.data_source).caveat
        if caveat:
            console.print(f"[bold yellow]note:[/] {caveat}")


def print_summary(result, document: dict) -> None:
    """The front of a run, its budget, the surrogate's error and the held-out report."""
    study, run_dir, metric = result.study, result.run_dir, study_metric(result.study)
    frame = pareto_frame(study, document["se_buffer"])
    table = _table(f"Pareto front of {study.study_name} ({result.completed_after} trials, "
                   f"{result.completed_after - result.completed_before} new)",
                   ["trial", metric.name, "drop vs SE", "95% interval", "buffer", "vs SE", "extra MACs"])
    for row in frame.to_dict("records"):
        drop = "-" if row["drop"] is None or row["drop"] != row["drop"] else metric.format_drop(row["drop"])
        table.add_row(str(row["trial"]), metric.format(row["score"]), drop, _interval_cell(row, metric), format_count(row["buffer"]),
                      f"{row['buffer_ratio']:.1%}", format_count(row["extra_macs"]))
    console.print(table)
    if "overlaps_neighbour" in frame and len(frame) > 1 and frame["overlaps_neighbour"].mean() >= 0.5:
        console.print(f"[bold yellow]note:[/] most neighbouring front points are not told apart on these "
                      f"{document['settings']['val_subset']} images (~: their 95% intervals overlap); a larger "
                      f"--val-subset separates them")
    budget = document.get("budget_elements")
    if budget is not None:
        console.print(f"budget: {format_count(budget)} elements ({budget / document['se_buffer']:.1%} of SE)")
    if "best.yaml" in result.written:
        console.print(f"best config within budget: {result.written['best.yaml']}")
    trend = surrogate_error_trend(study)
    if trend:
        windows = " -> ".join(f"trials {first}-{last}: {metric.format_drop(error)}" for first, last, error in trend)
        console.print(f"surrogate error before each trial was measured (mean |predicted - measured| {metric.name}, "
                      f"all: {metric.format_drop(surrogate_error(study))}): {windows}")
    stopped = stopped_early(study)
    done, full = image_forwards(study)
    if stopped and full:
        console.print(f"early stopping: {len(stopped)} candidates stopped after their first images, dominated; "
                      f"{full - done:,} of {full:,} image-forwards saved ({(full - done) / full:.0%})")
    if result.holdout and "note" in result.holdout:
        console.print(f"held-out: none; {result.holdout['note']}")
    elif result.holdout:
        console.print(_held_out_line(result.holdout))
    skipped = len(result.skipped) + len(result.holdout["skipped"] if result.holdout else [])
    if skipped:
        console.print(f"{skipped} unreadable images skipped (named in the warnings above; the held-out ones in holdout.yaml)")
    console.print(f"outputs in {run_dir}/: " + ", ".join(sorted(result.written)))
    for caveat in run_caveats(document["settings"]):
        console.print(f"[bold yellow]note:[/] {caveat}")


def _interval_cell(row: dict, metric: Metric) -> str:
    """The drop's paired 95% interval (points for percentages), ``≈SE`` when it includes zero, ``~`` when it
    overlaps a neighbour's."""
    low, high = row.get("drop_ci_low"), row.get("drop_ci_high")
    if low is None or low != low:
        return "-"
    marks = (" ≈SE" if low <= 0 <= high else "") + (" ~" if row.get("overlaps_neighbour") else "")
    return f"[{metric.scale * low:.3g}, {metric.scale * high:.3g}]{marks}"


def _held_out_line(holdout: dict) -> str:
    shown = get_metric(holdout["metric"])
    parts = [f"SE {shown.format(holdout['se'][shown.name])}"]
    for key, label in (("best", "best (trial {trial})"), ("uniform_7xW", "uniform 7xW")):
        entry = holdout.get(key)
        if entry is None:
            continue
        interval = (f", 95% [{entry['drop_ci'][0]:.3g}, {entry['drop_ci'][1]:.3g}]" if "drop_ci" in entry else "")
        parts.append(f"{label.format(**entry)} {shown.format(entry[shown.name])} at {format_count(entry['buffer'])} "
                     f"(drop {entry['drop']:.3g} {holdout.get('drop_unit', '')}{interval})")
    return f"held-out ({holdout['images']} images): {shown.name} " + ", ".join(parts)


def print_holdout_front(frame, metric: Metric, run_dir: Path) -> None:
    """The front scored on held-out images, beside its scores on the search's images."""
    table = _table("the front on held-out images", ["trial", "search images", "held out", "drop vs SE", "95% interval",
                                                     "buffer"])
    for row in frame.to_dict("records"):
        table.add_row(str(row["trial"]), metric.format(row["search_score"]), metric.format(row[metric.name]),
                      metric.format_drop(row["drop"]), _interval_cell(row, metric), format_count(row["buffer"]))
    console.print(table)
    console.print(f"written: {run_dir / 'pareto_holdout.csv'}, {run_dir / 'pareto_holdout.png'}")


def print_finetune(metrics: dict, run_dir: Path) -> None:
    metric = get_metric(metrics["metric"])
    console.print(
        f"fine-tuned {metrics['config']} for {metrics['epochs']} epochs on {metrics['train_images']} images "
        f"({metrics['seconds']:.0f} s): held-out {metric.name} {metric.format(metrics['score_before'])} -> "
        f"{metric.format(metrics['score_after'])} (SE {metric.format(metrics['se_score'])}), "
        f"buffer {format_count(metrics['buffer'])} of {format_count(metrics['se_buffer'])}; written to {Path(run_dir) / 'final'}/"
    )


def print_sensitivity(model: str, rows: list[SensitivityRow], metric: Metric) -> None:
    """Blocks x tiles: how much worse than SE the metric gets when only that block takes that tile."""
    tiles = list(dict.fromkeys(row.tile for row in rows))
    table = _table(f"{model}: {metric.name} drop when only one block is tiled "
                   f"({'points' if metric.unit == '%' else metric.unit})", ["block", *tiles], left=("block",))
    drops = AdditiveSurrogate.from_rows(rows, metric).drops
    for block in dict.fromkeys(row.block for row in rows):
        table.add_row(block, *["" if (block, tile) not in drops else f"{metric.scale * drops[(block, tile)]:.2f}"
                               for tile in tiles])
    console.print(table)


def print_eval(model: str, result: dict) -> None:
    if "se_map" in result:
        console.print(f"{model}: mAP {result['map']:.4f} (SE {result['se_map']:.4f}), pseudo-mAP vs SE "
                      f"{result['pseudo_map']:.4f} on {result['total']} images, buffer {format_count(result['buffer'])} "
                      f"of {format_count(result['se_buffer'])} elements")
        return
    if "se_miou" in result:
        labelled = result["miou"] is not None  # None without masks
        scores = (f"mIoU {100 * result['miou']:.2f}% (SE {100 * result['se_miou']:.2f}%), pixel accuracy "
                  f"{100 * result['pixel_accuracy']:.2f}%, " if labelled else "")
        console.print(f"{model}: {scores}pseudo-mIoU vs SE {100 * result['pseudo_miou']:.2f}%, fidelity "
                      f"{result['fidelity']:.4g} on {result['total']} images, buffer {format_count(result['buffer'])} "
                      f"of {format_count(result['se_buffer'])} elements")
        return
    console.print(
        f"{model}: accuracy {100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']}), "
        f"agreement with SE {100 * result['agreement']:.2f}%, SE accuracy {100 * result['se_accuracy']:.2f}%, "
        f"buffer {format_count(result['buffer'])} of {format_count(result['se_buffer'])} elements"
    )
