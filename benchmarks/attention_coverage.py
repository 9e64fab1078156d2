"""Which timm families tilesearch can tile, and how it finds their blocks, from one model per family.

    python benchmarks/attention_coverage.py [--families regnety,gcresnet,...]

Builds the first timm model of every family (the name up to its first digit or
underscore) on the meta device, lists its tileable blocks by how discovery found
them (``class``: shipped flavours, ``registered``, ``generic``: torch.fx) and every
global pool it refused with the reason. No weights, no forward: the GAP check on
discovery needs real tensors, so blocks counted here are those found, not checked.
Nothing is asserted: the table is printed.
"""

from __future__ import annotations

import argparse
import collections
import re
import warnings

import timm
import torch

from tilesearch.nn import find_se_modules, found_by, refused_blocks


def family_representatives(only: set[str] | None) -> dict[str, str]:
    representatives: dict[str, str] = {}
    for name in timm.list_models():
        family = re.sub(r"[_\d].*$", "", name)
        if only is None or family in only:
            representatives.setdefault(family, name)
    return representatives


def build(name: str) -> torch.nn.Module:
    try:
        with torch.device("meta"):
            return timm.create_model(name)
    except Exception:  # builders that compute with tensors
        return timm.create_model(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated families (default: all of timm's)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    only = set(args.families.split(",")) if args.families else None
    totals: collections.Counter[str] = collections.Counter()
    print("| model | blocks found (how) | global pools refused (class: reason) |\n| --- | --- | --- |")
    for family, name in sorted(family_representatives(only).items()):
        try:
            model = build(name)
        except Exception as error:  # some timm models need arguments or downloads to build
            print(f"| {name} | not built: {type(error).__name__} | |")
            continue
        found = collections.Counter(f"{type(m).__name__} ({found_by(m)})" for _, m in find_se_modules(model))
        refused = collections.Counter(f"{kind}: {verdict.reason}" for _, kind, verdict in refused_blocks(model)
                                      if kind != "SelectAdaptivePool2d")  # every classifier head's pool
        totals["families"] += 1
        totals["with blocks"] += bool(found)
        for how in {found_by(m) for _, m in find_se_modules(model)}:
            totals[how] += 1
        blocks = ", ".join(f"{count} {kind}" for kind, count in found.items()) or "-"
        print(f"| {name} | {blocks} | {'; '.join(f'{count}x {reason}' for reason, count in refused.items()) or '-'} |")
    print(f"\n{totals['families']} families, {totals['with blocks']} with tileable blocks; families found by class: "
          f"{totals['class']}, by registration: {totals['registered']}, by generic discovery: {totals['generic']}")


if __name__ == "__main__":
    main()
