"""How well each surrogate predicts configs it was not fit on, from the configs a benchmark search measured.

    python benchmarks/surrogate_fit.py [--runs runs/bench-search] [--seed 0] [--folds 20]

Reads the run folders ``benchmarks/search_efficiency.py`` leaves (every strategy of one
seed scored the same images, so their measured configs pool): the one-block scan of
the surrogate run (``sensitivity.csv``) and every measured config of every strategy.
For training sets of n random measured configs it predicts all the others and reports
the mean absolute error (accuracy points) of:

* the additive surrogate (the scan's sum, Vosco et al. Table 3), not fit at all;
* the learning surrogate's refit (``tilesearch.search.refit``: ridge towards the scan,
  a common scale, the penalty by leave-one-out);
* the same plus interaction terms, one 0/1 column per pair of tiled blocks in the same
  stage, to see whether they pay off (they are not in the product: its front must stay
  additive to be an exact knapsack).

Configs with fewer than two tiled blocks are left out of the test sets (the scan
measured them). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import numpy as np
import pandas as pd


def load(runs: Path, seed: int):
    import optuna

    from tilesearch.core import get_metric
    from tilesearch.scoring import SensitivityRow
    from tilesearch.search import AdditiveSurrogate, Measured, completed_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = get_metric("accuracy")
    rows = [SensitivityRow.from_dict(r) for r in pd.read_csv(runs / f"surrogate-{seed}" / "sensitivity.csv").to_dict("records")]
    prior = AdditiveSurrogate.from_rows(rows, metric)
    configs = {}
    for folder in sorted(runs.glob(f"*-{seed}")):
        if not (folder / "study.db").is_file():
            continue
        study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")
        for trial in completed_trials(study):
            attrs = trial.user_attrs
            if "reused_from" not in attrs:
                configs.setdefault(tuple(sorted(attrs["tiles"].items())), attrs["accuracy"])
    measured = [Measured(dict(key), 0, metric.worse_by(prior.se_score, accuracy)) for key, accuracy in configs.items()]
    return prior, measured


def stage_of(block: str) -> str:
    """timm RegNet block names: ``s3.b2.se`` is in stage ``s3``."""
    return block.split(".")[0]


def interaction_fit(prior, train, test) -> list[float]:
    """Ridge towards the refit's drops with same-stage pair columns added; predictions (drops) of ``test``."""
    from tilesearch.search import refit

    base = refit(prior, train)

    def pairs(tiles):
        tiled = sorted(block for block, tile in tiles.items() if tile != "GAP")
        return [(a, b) for a, b in itertools.combinations(tiled, 2) if stage_of(a) == stage_of(b)]

    columns = sorted({pair for m in train for pair in pairs(m.tiles)})
    index = {pair: j for j, pair in enumerate(columns)}

    def design(measured):
        matrix = np.zeros((len(measured), len(columns)))
        for row, m in enumerate(measured):
            for pair in pairs(m.tiles):
                if pair in index:
                    matrix[row, index[pair]] = 1.0
        return matrix

    def additive(m):
        return sum(base.drops.get(item, 0.0) for item in m.tiles.items())

    residual = np.array([m.drop - additive(m) for m in train])
    x = design(train)
    best = None
    for penalty in (0.3, 1.0, 3.0, 10.0, 30.0):
        inverse = np.linalg.inv(x.T @ x + penalty * np.eye(len(columns)))
        leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
        coefficients = inverse @ x.T @ residual
        loo = float(np.mean(((residual - x @ coefficients) / np.clip(1 - leverage, 1e-9, None)) ** 2))
        if best is None or loo < best[0]:
            best = (loo, coefficients)
    return list(np.array([additive(m) for m in test]) + design(test) @ best[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/bench-search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=20, help="random training sets per size")
    args = parser.parse_args()
    from tilesearch.search import refit

    prior, measured = load(Path(args.runs), args.seed)
    multi = [m for m in measured if sum(t != "GAP" for t in m.tiles.values()) >= 2]
    print(f"{len(measured)} measured configs pooled from {args.runs} seed {args.seed} ({len(multi)} with 2+ tiled blocks)")
    print("| train configs | additive (scan) | learning refit | refit + same-stage pairs |")
    print("| ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for size in (10, 20, 50, 100, 200, 400):
        if size >= len(measured) - 10:
            break
        errors = {"prior": [], "refit": [], "pairs": []}
        for _ in range(args.folds):
            chosen = set(rng.choice(len(measured), size, replace=False).tolist())
            train = [m for i, m in enumerate(measured) if i in chosen]
            test = [m for i, m in enumerate(measured) if i not in chosen and m in multi]
            truth = np.array([m.drop for m in test])
            learned = refit(prior, train)
            for name, predictions in (
                ("prior", [sum(prior.drops.get(item, 0.0) for item in m.tiles.items()) for m in test]),
                ("refit", [sum(learned.drops.get(item, 0.0) for item in m.tiles.items()) for m in test]),
                ("pairs", interaction_fit(prior, train, test)),
            ):
                errors[name].append(float(np.mean(np.abs(np.array(predictions) - truth))))
        print(f"| {size} | " + " | ".join(f"{100 * statistics.mean(errors[k]):.2f} pts" for k in ("prior", "refit", "pairs")) + " |")


if __name__ == "__main__":
    main()
