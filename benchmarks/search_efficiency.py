"""Search efficiency as a ratio: evaluations each strategy needs to reach the best front, early stopping's
savings on the same trials, the learning surrogate's out-of-sample error, and held-out regret.

    python benchmarks/search_efficiency.py [--evals 200] [--surrogate-evals 80] [--seeds 1] [--val-subset 1000]
                                           [--budget 50%] [--holdout-top 5] [--out runs/bench-search] [--reuse]

On the shared RegNetY-200MF trained on CIFAR-10 (``../shared``; 128x128, crop 1.0,
bilinear; skipped with a message where ``../shared`` is absent), per-block ``default``
space, budget 50% of the SE buffer, ``--val-subset`` images per trial:

* random, TPE and NSGA-II sampling (strategy "sampler") run ``--evals`` trials each,
  the learning surrogate (one-block scan as prior, refit and re-queued before every
  trial, NSGA-II when it proposes nothing) ``--surrogate-evals``; every seed of every
  strategy scores the same stratified subset of that seed.
* Hypervolume of the feasible front after k trials, objectives accuracy (up) and
  buffer (down), reference (accuracy 0, buffer = SE buffer), normalised by that box.
  Target: 99% of the best final hypervolume any strategy reached with that seed.
  Evaluations to the target count the scan's forwards as trial-equivalents (the scan's
  image-forwards over one trial's).
* Early stopping watches every run without pruning (``EarlyStop(prune=False)``): each
  trial records the verdict it would have had on its first quarter of the images, and
  scores every image anyway. So its savings and its effect on the final front are
  measured on one and the same sequence of trials: the image-forwards the stopped
  trials would not have run, and the final front without them.
* The surrogate's error on each trial before it was measured (out-of-sample), mean
  of the trials after the 20th and in windows of 10.
* Held out: the config each strategy hands back (its best feasible trial) and the
  ``--holdout-top`` best feasible configs by search accuracy of every strategy are
  scored on the images the subset leaves out (~9,000); regret = the best of those
  held-out accuracies minus the handed-back config's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINT = SHARED / "models" / "regnety_002_cifar10_128.safetensors"
VAL = SHARED / "cifar10" / "val"
STRATEGIES = {  # label: (sampler, strategy)
    "random": ("random", "sampler"),
    "tpe": ("tpe", "sampler"),
    "nsga2": ("nsga2", "sampler"),
    "surrogate": ("nsga2", "surrogate"),
}


def hypervolume(points: list[tuple[float, float]], ref_buffer: float) -> float:
    """2-D hypervolume of (accuracy up, buffer down) points against (accuracy 0, ref_buffer)."""
    points = sorted((b, a) for a, b in points if b < ref_buffer and a > 0)
    volume, best = 0.0, 0.0
    for i, (buffer, accuracy) in enumerate(points):
        best = max(best, accuracy)
        right = points[i + 1][0] if i + 1 < len(points) else ref_buffer
        volume += (right - buffer) * best
    return volume


def settings_for(args, label: str, seed: int):
    from tilesearch.search import RunSettings

    sampler, strategy = STRATEGIES[label]
    return RunSettings(model="regnety_002", data=str(VAL), checkpoint=str(CHECKPOINT), num_classes=10,
                       input_size=128, crop_pct=1.0, interpolation="bilinear", val_subset=args.val_subset,
                       space="default", budget=args.budget, sampler=sampler, strategy=strategy, seed=seed)


def run_one(args, label: str, seed: int) -> dict:
    """Run (or, with --reuse, load) one study with early stopping watching; its trials, timings and search."""
    from tilesearch.search import EarlyStop, completed_trials, load_study_of_run, prepare_search, read_run_file, run_search, sensitivity_for

    evals = args.surrogate_evals if label == "surrogate" else args.evals
    name = f"{label}-{seed}"
    run_dir = Path(args.out) / name
    timing_file = run_dir / "bench-timing.json"
    if args.reuse and timing_file.is_file():
        study = load_study_of_run(read_run_file(run_dir))
        if len(completed_trials(study)) >= evals:
            return {"study": study, **json.loads(timing_file.read_text()), "reused_run": True}
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh study: run_search would otherwise add trials to the old one
    search = prepare_search(settings_for(args, label, seed), out_dir=args.out, study_name=name)
    search.early_stop = EarlyStop(prune=False)
    start = time.perf_counter()
    search.load_data()
    setup_s = time.perf_counter() - start
    scan_s = scan_forwards = 0.0
    if label == "surrogate":
        start = time.perf_counter()
        rows = sensitivity_for(search, use_prefix_cache=True, show_progress=False)  # run_search reuses sensitivity.csv
        scan_s = time.perf_counter() - start
        scan_forwards = float(len([r for r in rows if r.tile != "GAP"]))  # configs scanned (each a partial pass)
    start = time.perf_counter()
    result = run_search(search, n_trials=evals, show_progress=False, report_holdout=False)
    timing = {"setup_s": setup_s, "scan_s": scan_s, "scan_configs": scan_forwards, "search_s": time.perf_counter() - start,
              "se_buffer": search.se_total, "budget": search.budget, "images": len(search.scorer.images)}
    timing_file.write_text(json.dumps(timing))
    return {"study": result.study, **timing, "reused_run": False}


def trial_frame(study) -> pd.DataFrame:
    from tilesearch.search import completed_trials

    rows = []
    for t in sorted(completed_trials(study), key=lambda t: t.number):
        a = t.user_attrs
        rows.append({
            "number": t.number, "accuracy": a["accuracy"], "buffer": a["buffer"], "feasible": bool(a["feasible"]),
            "reused": "reused_from" in a, "baseline": a.get("baseline"), "predicted": a.get("predicted"),
            "verdict": a.get("early_verdict"), "images": a.get("images_scored", 0),
            "verdict_images": a.get("early_verdict_images"),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
            "tiles": a["tiles"],
        })
    return pd.DataFrame(rows)


def hv_curve(frame: pd.DataFrame, ref_buffer: float) -> list[float]:
    """Normalised hypervolume of the feasible front after each of the trials, in order."""
    curve, points = [], []
    for row in frame.itertuples():
        if row.feasible:
            points.append((row.accuracy, row.buffer))
        curve.append(hypervolume(points, ref_buffer) / ref_buffer)
    return curve


def front_points(frame: pd.DataFrame) -> set[tuple[float, int]]:
    """The feasible (accuracy, buffer) front of a frame's trials."""
    feasible = sorted({(r.buffer, r.accuracy) for r in frame.itertuples() if r.feasible})
    front, best = set(), -1.0
    for buffer, accuracy in feasible:
        if accuracy > best:
            front.add((accuracy, buffer))
            best = accuracy
    return front


def first_reaching(curve: list[float], target: float) -> int | None:
    return next((k for k, value in enumerate(curve, start=1) if value >= target - 1e-12), None)


def fmt(value, spec: str = ".1f") -> str:
    return "never" if value is None else format(value, spec)


def held_out(args, seed: int, frames: dict[str, pd.DataFrame]) -> dict[str, dict]:
    """Held-out accuracy of each strategy's handed-back config, and regret against the best evaluated one."""
    from tilesearch.search import prepare_search

    search = prepare_search(settings_for(args, "nsga2", seed), out_dir=args.out, study_name=f"holdout-{seed}")
    scorer = search.holdout_scorer()
    candidates, handed = {}, {}
    for label, frame in frames.items():
        feasible = frame[frame["feasible"] & ~frame["reused"]].sort_values(["accuracy", "buffer"], ascending=[False, True])
        for rank, row in enumerate(feasible.head(args.holdout_top).itertuples()):
            key = tuple(sorted(row.tiles.items()))
            candidates.setdefault(key, row.tiles)
            if rank == 0:
                handed[label] = (key, row.accuracy, row.buffer, row.number)
    scores = {}
    for index, (key, tiles) in enumerate(candidates.items()):
        scores[key] = scorer.score(tiles).accuracy
        print(f"    held-out {index + 1}/{len(candidates)}: {scores[key]:.4f}", flush=True)
    best = max(scores.values())
    return {label: {"trial": number, "search": accuracy, "buffer": buffer, "held_out": scores[key],
                    "regret": best - scores[key], "best_held_out": best, "images": len(scorer.images)}
            for label, (key, accuracy, buffer, number) in handed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, default=200, help="trials of each sampler (random, TPE, NSGA-II)")
    parser.add_argument("--surrogate-evals", type=int, default=80, help="trials of the learning surrogate")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per strategy")
    parser.add_argument("--val-subset", type=int, default=1000, help="images scored per trial")
    parser.add_argument("--budget", default="50%", help="buffer budget (a share of the SE buffer or elements)")
    parser.add_argument("--holdout-top", type=int, default=5, help="best configs per strategy scored held out (0: no held-out view)")
    parser.add_argument("--out", default="runs/bench-search", help="folder of the benchmark's run folders")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of " + ",".join(STRATEGIES))
    parser.add_argument("--reuse", action="store_true", help="analyse existing complete runs in --out instead of rerunning")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library leaves Optuna's log level to its caller
    if not (CHECKPOINT.is_file() and VAL.is_dir()):
        print(f"skipped: {SHARED} (regnety_002 CIFAR-10 checkpoint and cifar10/val) is absent; "
              "this benchmark needs the shared fixtures")
        return
    from tilesearch.search import surrogate_error_trend, surrogate_errors

    labels = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = list(range(args.seeds))
    total_start = time.perf_counter()
    print(f"model/data : regnety_002 ({CHECKPOINT.name}), {VAL}; 128x128, crop 1.0, bilinear")
    print(f"settings   : space default, budget {args.budget} of the SE buffer, metric accuracy, val_subset "
          f"{args.val_subset}; samplers {args.evals} trials, surrogate {args.surrogate_evals}; seeds {seeds}")
    print(f"torch      : {torch.__version__}, threads {torch.get_num_threads()}; out {args.out}")

    runs: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for label in labels:
            start = time.perf_counter()
            run = runs[(label, seed)] = run_one(args, label, seed)
            run["frame"] = frame = trial_frame(run["study"])
            print(f"  ran {label:9s} seed {seed}: {len(frame)} trials, {int((~frame['reused']).sum())} measured, "
                  f"{int(frame['feasible'].sum())} feasible; scan {run['scan_s']:.1f}s, trials {run['search_s']:.1f}s"
                  + (" (loaded)" if run["reused_run"] else "") + f" [{time.perf_counter() - start:.0f}s]", flush=True)

    trial_s = statistics.median(float(s) for run in runs.values()
                                for s in run["frame"].loc[~run["frame"]["reused"] & run["frame"]["baseline"].isna(), "seconds"])
    print(f"\nmedian trial {trial_s:.2f} s on {runs[(labels[0], seeds[0])]['images']} images; SE buffer "
          f"{runs[(labels[0], seeds[0])]['se_buffer']}, budget {runs[(labels[0], seeds[0])]['budget']} elements")

    # 1. Evaluations to 99% of the best hypervolume
    curves = {key: hv_curve(run["frame"], run["se_buffer"]) for key, run in runs.items()}
    best = {s: max(curves[(label, s)][-1] for label in labels) for s in seeds}
    scan_equiv = {}  # the scan's cost in trials: its wall time over the same run's median trial (prefix-cached
    for s in seeds:  # passes are partial forwards, so counting scanned configs as full passes would overstate it)
        if ("surrogate", s) in runs:
            run = runs[("surrogate", s)]
            own = run["frame"].loc[~run["frame"]["reused"] & run["frame"]["baseline"].isna(), "seconds"].median()
            scan_equiv[s] = run["scan_s"] / own
            print(f"scan, seed {s}: {run['scan_configs']:.0f} configs in {run['scan_s']:.1f} s = "
                  f"{scan_equiv[s]:.1f} trial-equivalents (median trial {own:.2f} s)")
    print("\n| strategy | trials | final HV | evaluations to 99% of best HV | + scan (trial-equivalents) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    reach = {}
    for label in labels:
        per_seed = [first_reaching(curves[(label, s)], 0.99 * best[s]) for s in seeds]
        with_scan = [None if k is None else k + (scan_equiv.get(s, 0.0) if label == "surrogate" else 0.0)
                     for k, s in zip(per_seed, seeds)]
        reach[label] = with_scan
        finals = [curves[(label, s)][-1] for s in seeds]
        print(f"| {label} | {len(runs[(label, seeds[0])]['frame'])} | {' / '.join(f'{v:.4f}' for v in finals)} | "
              f"{' / '.join(fmt(k, '.0f') for k in per_seed)} | {' / '.join(fmt(k, '.1f') for k in with_scan)} |")
    if "surrogate" in reach and "nsga2" in reach:
        pairs = list(zip(reach["surrogate"], reach["nsga2"]))
        for s, (a, b) in zip(seeds, pairs):
            ratio = f"{a / b:.3f}" if a is not None and b is not None else "undefined (a strategy never reached it)"
            print(f"seed {s}: surrogate (scan counted) / NSGA-II evaluations to the target = {ratio}")
    if "surrogate" in labels:  # where a sampler never reaches the target: the surrogate's cost to match its final front
        for label in (other for other in labels if other != "surrogate"):
            for s in seeds:
                final, evals = curves[(label, s)][-1], len(curves[(label, s)])
                k = first_reaching(curves[("surrogate", s)], final)
                cost = None if k is None else k + scan_equiv.get(s, 0.0)
                print(f"seed {s}: the surrogate reaches {label}'s final HV after {evals} trials ({final:.4f}, "
                      f"{final / best[s]:.0%} of the best) after {fmt(k, '.0f')} trials, {fmt(cost, '.1f')} counting the "
                      f"scan: {fmt(None if cost is None else cost / evals, '.3f')} of {label}'s evaluations")

    # 2. Early stopping on the same trials
    print("\n| strategy | trials stopped | image-forwards saved | final front unchanged | final HV without stopped |")
    print("| --- | ---: | ---: | --- | ---: |")
    for label in labels:
        for s in seeds:
            frame, run = runs[(label, s)]["frame"], runs[(label, s)]
            measured = frame[~frame["reused"]]
            stopped = measured[measured["verdict"].notna()]
            full = run["images"]
            saved = int((full - stopped["verdict_images"]).sum())
            total = int(measured["images"].sum())
            flagged = {tuple(sorted(t.items())) for t in stopped["tiles"]}  # reused copies of them go too
            kept = frame[[tuple(sorted(t.items())) not in flagged for t in frame["tiles"]]]
            same = front_points(kept) == front_points(frame)
            hv_kept = hypervolume(list(front_points(kept)), run["se_buffer"]) / run["se_buffer"]
            print(f"| {label} (seed {s}) | {len(stopped)} of {len(measured)} | {saved:,} of {total:,} "
                  f"({saved / max(total, 1):.0%}) | {'yes' if same else 'no'} | {hv_kept:.4f} vs {curves[(label, s)][-1]:.4f} |")

    # 3. The learning surrogate's out-of-sample error
    for s in seeds:
        if ("surrogate", s) not in runs:
            continue
        study = runs[("surrogate", s)]["study"]
        errors = surrogate_errors(study)
        order = sorted(t.number for t in study.trials)
        after = [e for number, e in errors if order.index(number) >= 20]
        trend = " -> ".join(f"{100 * e:.2f}" for _, _, e in surrogate_error_trend(study, window=10))
        summary = f"after trial 20: {100 * statistics.mean(after):.2f} pts over {len(after)}" if after else "no trial after the 20th"
        print(f"\nsurrogate seed {s}: out-of-sample |predicted - measured| accuracy, mean "
              f"{100 * statistics.mean(e for _, e in errors):.2f} pts over {len(errors)} trials; {summary}")
        print(f"  per 10 trials (pts): {trend}")

    # 4. Held out
    for s in seeds if args.holdout_top > 0 else []:
        print(f"\nheld out, seed {s}: scoring the best {args.holdout_top} feasible configs of each strategy")
        report = held_out(args, s, {label: runs[(label, s)]["frame"] for label in labels})
        print("| strategy | handed back (trial) | buffer | search accuracy | held-out accuracy | regret |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, row in report.items():
            print(f"| {label} | {row['trial']} | {row['buffer']:,} | {100 * row['search']:.2f}% | "
                  f"{100 * row['held_out']:.2f}% | {100 * row['regret']:.2f} pts |")
        print(f"best held-out accuracy among the configs scored: {100 * next(iter(report.values()))['best_held_out']:.2f}% "
              f"on {next(iter(report.values()))['images']} images")
    print(f"\ntotal wall time: {time.perf_counter() - total_start:.1f} s")


if __name__ == "__main__":
    main()
