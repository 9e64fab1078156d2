"""Reproduce the buffer (and compute) columns of the TSE paper's tables.

Writes ``docs/paper-tables.md``: Table 1 (RegNetY-800MF, every tile at 224x224,
buffer and MFLOPs), Table 4 (RegNetY-200MF...3.2GF and EfficientNet-B0...B3 at
their resolutions, SE and 7xW buffers), Table 5 (EfficientDet-D0...D2) and
Table 6 (MobileNetV3 at 1024x2048), ours beside the paper's.

    python benchmarks/paper_tables.py [--out docs/paper-tables.md]

The paper truncates to two decimals (RegNetY-800MF's 1.0788M is printed 1.07M),
so "agrees" below means: our figure truncated to the paper's precision equals
the paper's.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tilesearch import buffer_report, discover_model, parse_tile

TABLE_1 = {  # tile: (buffer M, MFLOPs); 1x1's buffer is "N/A" in the paper
    "GAP": (1.07, 797.18), "9xW": (0.52, 797.68), "7xW": (0.42, 797.88), "5xW": (0.30, 798.49),
    "3xW": (0.18, 799.92), "1xW": (0.06, 807.03), "Hx9": (0.52, 797.68), "Hx7": (0.42, 797.88),
    "Hx5": (0.30, 798.49), "Hx3": (0.18, 799.92), "Hx1": (0.06, 807.03), "13x13": (0.58, 797.58),
    "11x11": (0.43, 797.83), "9x9": (0.36, 798.03), "7x7": (0.22, 799.11), "5x5": (0.11, 801.76),
    "3x3": (0.04, 811.35), "1x1": (None, 931.23),
}
TABLE_4 = [  # model, paper name, input, SE buffer M, 7xW buffer M
    ("regnety_002", "RegNetY-200MF", 224, 0.38, 0.20),
    ("regnety_004", "RegNetY-400MF", 224, 0.76, 0.33),
    ("regnety_006", "RegNetY-600MF", 224, 0.88, 0.37),
    ("regnety_008", "RegNetY-800MF", 224, 1.07, 0.42),
    ("regnety_016", "RegNetY-1.6GF", 224, 2.07, 0.82),
    ("regnety_032", "RegNetY-3.2GF", 224, 2.84, 1.07),
    ("efficientnet_b0", "EfficientNet-B0", 224, 2.64, 0.85),
    ("efficientnet_b1", "EfficientNet-B1", 240, 4.63, 1.34),
    ("efficientnet_b2", "EfficientNet-B2", 260, 5.73, 1.59),
    ("efficientnet_b3", "EfficientNet-B3", 300, 9.52, 2.30),
]
TABLE_5 = [  # model, paper name, input, SE buffer M, 7xW buffer M
    ("efficientdet_d0", "EfficientDet-D0", 512, 13.8, 1.9),
    ("efficientdet_d1", "EfficientDet-D1", 640, 33.6, 3.6),
    ("efficientdet_d2", "EfficientDet-D2", 768, 50.8, 4.7),
]
TABLE_6 = [  # model, paper name, (H, W), SE buffer M, 7xW buffer M
    ("mobilenetv3_large_100", "MobileNetV3-L", (1024, 2048), 36.17, 1.59),
    ("mobilenetv3_small_100", "MobileNetV3-S", (1024, 2048), 24.51, 1.04),
]


def truncate(elements: float, decimals: int) -> float:
    scale = 10**decimals
    return math.floor(elements / 1e6 * scale + 1e-9) / scale


def decimals_of(paper: float) -> int:
    text = f"{paper}"
    return len(text.split(".")[1]) if "." in text else 0


def agrees(elements: int, paper: float | None) -> str:
    if paper is None:
        return "n/a"
    return "yes" if truncate(elements, decimals_of(paper)) == paper else "**no**"


@torch.no_grad()
def pycls_macs(model: torch.nn.Module, size: int) -> int:
    """pycls's FLOPs: multiply-accumulates of convolutions and matrix products plus bias adds."""
    bias_adds = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: bias_adds.append(out.numel()))
        for layer in model.modules()
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) and layer.bias is not None
    ]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops() // 2 + sum(bias_adds)  # torch counts 2 FLOPs per MAC


def paper_flops_rule(blocks, tile: str, vanilla_macs: int) -> float:
    """Table 1's MFLOPs as the paper appears to count them (see the notes): a fractional
    number of tiles (H/h)(W/w) and an excite width of C/4 for every block."""
    spec = parse_tile(tile)
    total = vanilla_macs
    for block in blocks:
        tile_h, tile_w = spec.resolve(block.height, block.width)
        tiles = (block.height / tile_h) * (block.width / tile_w)
        reduced = block.channels // 4
        total += tiles * 2 * block.channels * reduced + reduced + block.channels
    return total / 1e6


def table_1() -> list[str]:
    found = discover_model("regnety_008", 224)
    se_macs = pycls_macs(found.model, 224)
    vanilla_macs = se_macs - sum(block.excite_macs for block in found.blocks)
    lines = [
        "## Table 1: RegNetY-800MF, 224x224, every tile",
        "",
        f"Our SE network counts {se_macs / 1e6:.4f} MFLOPs and without its SE blocks {vanilla_macs / 1e6:.4f}",
        "(pycls's convention: multiply-accumulates plus bias adds), against the paper's 797.18 and 796.35.",
        "*ours* is what `tilesearch` reports: SE plus (tiles - 1) x the excite's MACs per block, tiles",
        "counted whole (ceil). *paper's rule* is the counting the paper's column follows (see the notes).",
        "",
        "| tile | paper buffer | ours (elements) | ours (M) | agrees | paper MFLOPs | ours | paper's rule | agrees |",
        "| --- | ---: | ---: | ---: | :---: | ---: | ---: | ---: | :---: |",
    ]
    for tile, (paper_buffer, paper_flops) in TABLE_1.items():
        report = buffer_report(found.blocks, tile)
        ours = (se_macs + report.extra_macs) / 1e6
        rule = se_macs / 1e6 if tile == "GAP" else paper_flops_rule(found.blocks, tile, vanilla_macs)
        rule_agrees = "yes" if math.floor(rule * 100 + 1e-9) / 100 == paper_flops else "**no**"
        lines.append(
            f"| {tile} | {'N/A' if paper_buffer is None else f'{paper_buffer:.2f}M'} | {report.total:,} | "
            f"{report.total / 1e6:.4f} | {agrees(report.total, paper_buffer)} | {paper_flops:.2f} | "
            f"{ours:.2f} | {rule:.4f} | {rule_agrees} |"
        )
    return lines


def buffer_rows(rows: list[tuple]) -> list[str]:
    lines = [
        "| model | ours | input | paper SE | ours SE | agrees | paper 7xW | ours 7xW | agrees | SE blocks |",
        "| --- | --- | --- | ---: | ---: | :---: | ---: | ---: | :---: | ---: |",
    ]
    for name, paper_name, size, paper_se, paper_tse in rows:
        found = discover_model(name, size)
        report = buffer_report(found.blocks, "7xW")
        shown = "x".join(map(str, found.input_size))
        lines.append(
            f"| {paper_name} | `{name}` | {shown} | {paper_se:.{decimals_of(paper_se)}f}M | {report.se_total / 1e6:.4f}M | "
            f"{agrees(report.se_total, paper_se)} | {paper_tse}M | {report.total / 1e6:.4f}M | "
            f"{agrees(report.total, paper_tse)} | {len(found.blocks)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "paper-tables.md")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sections = [
        "# The paper's buffer tables, reproduced",
        "",
        "Generated by `python benchmarks/paper_tables.py`; do not edit the tables by hand.",
        "Buffers are elements, summed over every SE block (section 3.2); the paper truncates",
        "to its printed precision, and *agrees* compares our figure truncated the same way.",
        "",
        *table_1(),
        "",
        "## Table 4: RegNetY and EfficientNet at their resolutions",
        "",
        *buffer_rows(TABLE_4),
        "",
        "## Table 5: EfficientDet",
        "",
        *buffer_rows(TABLE_5),
        "",
        "## Table 6: MobileNetV3 backbones at 1024x2048",
        "",
        *buffer_rows(TABLE_6),
        "",
    ]
    text = "\n".join(sections)
    print(text)
    notes = args.out.with_name("paper-tables-notes.md")
    if notes.exists():
        text += "\n" + notes.read_text()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
