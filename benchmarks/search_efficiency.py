"""How fast each search strategy finds a good feasible front, per real evaluation.

    python benchmarks/search_efficiency.py [--evals 40] [--seeds 2] [--val-subset 300] [--out runs/bench-search]

On the shared RegNetY-200MF trained on CIFAR-10 (``../shared``; 128x128, crop
1.0, bilinear; skipped with a message where ``../shared`` is absent) and the
``default`` per-block space under a budget of 50% of the SE buffer, it runs the
same number of trials with random, TPE and NSGA-II sampling (strategy
"sampler") and with the surrogate-seeded strategy (one-block sensitivity scan,
exact front of the additive surrogate enqueued, then NSGA-II), for several seeds.

Metric: the hypervolume of the feasible front after k trials (in trial order),
objectives accuracy (up) and buffer (down), reference point (accuracy 0,
buffer = SE buffer), printed normalised by the reference box (SE buffer x 1).
The surrogate's scan costs real forwards too: its wall time over the median
wall time of one trial is reported as "scan cost in trial-equivalents" and
results are given without and with it.

Each seed scores its own stratified subset (the subset is drawn with the run's
seed), so a sensitivity table cannot be shared between seeds; every surrogate
run measures its own (one per seed, so nothing is recomputed). The held-out
report that ``run_search`` writes at the end (SE and the best config on the
~9,700 images left out) is not part of a strategy's search cost and would
dominate the run time, so it is switched off here.
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


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho: Pearson's correlation of the (average-tie) ranks; needs no scipy."""
    return float(x.rank().corr(y.rank()))


def run_one(args, label: str, seed: int) -> dict:
    """Run (or, with --reuse, load) one study; return its trials and timings."""
    from tilesearch.search import RunSettings, completed_trials, prepare_search, run_search, sensitivity_for

    sampler, strategy = STRATEGIES[label]
    settings = RunSettings(
        model="regnety_002", data=str(VAL), checkpoint=str(CHECKPOINT), num_classes=10,
        input_size=128, crop_pct=1.0, interpolation="bilinear",
        val_subset=args.val_subset, space="default", budget=args.budget,
        sampler=sampler, strategy=strategy, seed=seed,
    )
    name = f"{label}-{seed}"
    run_dir = Path(args.out) / name
    timing_file = run_dir / "bench-timing.json"
    if args.reuse and timing_file.is_file():
        from tilesearch.search import load_study_of_run, read_run_file

        study = load_study_of_run(read_run_file(run_dir))
        timing = json.loads(timing_file.read_text())
        if len(completed_trials(study)) >= args.evals:
            return {"study": study, **timing, "reused_run": True}
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh study: run_search would otherwise add trials to the old one
    search = prepare_search(settings, out_dir=args.out, study_name=name)
    start = time.perf_counter()
    search.load_data()  # decode the subset: the same for every strategy
    setup_s = time.perf_counter() - start
    scan_s = 0.0
    if strategy == "surrogate":
        start = time.perf_counter()
        sensitivity_for(search, use_prefix_cache=True, show_progress=False)  # run_search reuses sensitivity.csv
        scan_s = time.perf_counter() - start
    start = time.perf_counter()
    # The held-out report is not search cost and would take longer than the search itself here.
    result = run_search(search, n_trials=args.evals, show_progress=False, report_holdout=False)
    search_s = time.perf_counter() - start
    timing = {"setup_s": setup_s, "scan_s": scan_s, "search_s": search_s, "se_buffer": search.se_total,
              "budget": search.budget, "images": len(search.scorer.images)}
    timing_file.write_text(json.dumps(timing))
    return {"study": result.study, **timing, "reused_run": False}


def trial_frame(run: dict) -> pd.DataFrame:
    from tilesearch.search import completed_trials

    rows = []
    for t in sorted(completed_trials(run["study"]), key=lambda t: t.number):
        a = t.user_attrs
        rows.append({
            "number": t.number, "accuracy": a["accuracy"], "agreement": a.get("agreement"), "kl": a.get("kl"),
            "buffer": a["buffer"], "feasible": bool(a["feasible"]), "reused": "reused_from" in a,
            "baseline": a.get("baseline"), "surrogate_seed": bool(a.get("surrogate_seed")),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
            "config": "|".join(a["tiles"][k] for k in sorted(a["tiles"])),
        })
    return pd.DataFrame(rows)


def hv_curve(frame: pd.DataFrame, ref_buffer: float, evals: int) -> list[float]:
    """Hypervolume (normalised by ref_buffer x 1) of the feasible front after k = 1..evals trials."""
    curve = []
    for k in range(1, evals + 1):
        head = frame.iloc[:k]
        feasible = head[head["feasible"]]
        curve.append(hypervolume(list(zip(feasible["accuracy"], feasible["buffer"])), ref_buffer) / ref_buffer)
    return curve


def first_reaching(curve: list[float], target: float, offset: float = 0.0) -> float | None:
    """Evaluations (plus ``offset`` trial-equivalents) after which the curve first reaches ``target``."""
    for k, value in enumerate(curve, start=1):
        if value >= target:
            return k + offset
    return None


def fmt(value, spec: str = ".1f") -> str:
    return "never" if value is None else format(value, spec)


def mean_or_never(values: list) -> str:
    reached = [v for v in values if v is not None]
    if len(reached) == len(values):
        return f"{statistics.mean(reached):.1f}"
    return f"never ({len(values) - len(reached)}/{len(values)} seeds)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, default=40, help="trials per study (the same budget for every strategy)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per strategy")
    parser.add_argument("--val-subset", type=int, default=300, help="images scored per trial")
    parser.add_argument("--budget", default="50%", help="buffer budget (a share of the SE buffer or elements)")
    parser.add_argument("--out", default="runs/bench-search", help="folder of the benchmark's run folders")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of " + ",".join(STRATEGIES))
    parser.add_argument("--reuse", action="store_true", help="analyse existing complete runs in --out instead of rerunning")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library leaves Optuna's log level to its caller

    if not (CHECKPOINT.is_file() and VAL.is_dir()):
        print(f"skipped: {SHARED} (regnety_002 CIFAR-10 checkpoint and cifar10/val) is absent; "
              "this benchmark needs the shared fixtures")
        return

    import torch

    labels = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = list(range(args.seeds))
    total_start = time.perf_counter()
    print(f"model/data : regnety_002 ({CHECKPOINT.name}), {VAL}; 128x128, crop 1.0, bilinear")
    print(f"settings   : space default, budget {args.budget} of the SE buffer, profile ideal, metric accuracy, "
          f"val_subset {args.val_subset}, {args.evals} trials per study, seeds {seeds}")
    print(f"torch      : {torch.__version__}, threads {torch.get_num_threads()}; out {args.out}")
    print("sensitivity: measured once per surrogate run (each seed has its own val subset; no sharing); "
          "held-out report disabled")

    runs: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for label in labels:
            start = time.perf_counter()
            run = run_one(args, label, seed)
            run["frame"] = trial_frame(run)
            runs[(label, seed)] = run
            frame = run["frame"]
            print(f"  ran {label:9s} seed {seed}: {len(frame)} trials, {int((~frame['reused']).sum())} real evaluations, "
                  f"{int(frame['feasible'].sum())} feasible; setup {run['setup_s']:.1f}s, scan {run['scan_s']:.1f}s, "
                  f"trials {run['search_s']:.1f}s" + (" (loaded, not rerun)" if run["reused_run"] else "")
                  + f" [{time.perf_counter() - start:.0f}s]", flush=True)

    # Cost of one trial: median wall time of trials that ran a forward (not reused, not the cached SE baseline).
    def real(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[~frame["reused"] & (frame["baseline"] != "SE")]

    all_real = pd.concat([real(run["frame"]) for run in runs.values()])
    trial_s = float(all_real["seconds"].median())
    scan_equiv = {}
    for (_label, seed), run in runs.items():
        if run["scan_s"]:
            own = float(real(run["frame"])["seconds"].median())
            scan_equiv[seed] = run["scan_s"] / own
            run["trial_s"] = own

    ref = {seed: runs[(labels[0], seed)]["se_buffer"] for seed in seeds}
    curves = {key: hv_curve(run["frame"], ref[key[1]], args.evals) for key, run in runs.items()}
    best = {seed: max(curves[(label, seed)][-1] for label in labels) for seed in seeds}

    print(f"\nSE buffer {ref[seeds[0]]} elements, budget {runs[(labels[0], seeds[0])]['budget']} elements; "
          f"{runs[(labels[0], seeds[0])]['images']} images per trial; "
          f"median trial wall time {trial_s:.3f} s (over {len(all_real)} trials that ran a forward)")
    if scan_equiv:
        print("surrogate scan: " + "; ".join(
            f"seed {seed}: {runs[('surrogate', seed)]['scan_s']:.1f} s = {eq:.1f} trial-equivalents "
            f"(own median trial {runs[('surrogate', seed)]['trial_s']:.3f} s)" for seed, eq in scan_equiv.items()))

    # Hypervolume table
    print("\nhypervolume of the feasible front (normalised: 1.0 = accuracy 1 at zero buffer), "
          "target = 99% of the best final HV any strategy reached per seed")
    header = (f"{'strategy':10s} | {'final HV mean':>13s} | {'final HV per seed':>22s} | {'real evals':>10s} | "
              f"{'evals to 99% per seed':>22s} | {'mean':>18s} | {'+scan: per seed':>22s} | {'+scan mean':>18s}")
    print(header)
    print("-" * len(header))
    reach, reach_cost = {}, {}
    for label in labels:
        finals = [curves[(label, s)][-1] for s in seeds]
        reach[label] = [first_reaching(curves[(label, s)], 0.99 * best[s]) for s in seeds]
        reach_cost[label] = [first_reaching(curves[(label, s)], 0.99 * best[s], scan_equiv.get(s, 0.0) if label == "surrogate" else 0.0)
                             for s in seeds]
        evals = [int((~runs[(label, s)]["frame"]["reused"]).sum()) for s in seeds]
        print(f"{label:10s} | {statistics.mean(finals):13.4f} | {' '.join(f'{v:.4f}' for v in finals):>22s} | "
              f"{'/'.join(map(str, evals)):>10s} | {' '.join(fmt(v, '.0f') for v in reach[label]):>22s} | "
              f"{mean_or_never(reach[label]):>18s} | {' '.join(fmt(v, '.1f') for v in reach_cost[label]):>22s} | "
              f"{mean_or_never(reach_cost[label]):>18s}")

    # HV after k trials, mean over seeds (and, for the surrogate, at equal total cost)
    ks = sorted({k for k in (1, 2, 5, 10, 15, 20, 25, 30, 35, args.evals) if k <= args.evals})
    print("\nmean HV after k trials")
    print(f"{'strategy':10s} | " + " | ".join(f"{'k=' + str(k):>7s}" for k in ks))
    print("-" * (13 + 10 * len(ks)))
    for label in labels:
        print(f"{label:10s} | " + " | ".join(f"{statistics.mean(curves[(label, s)][k - 1] for s in seeds):7.4f}" for k in ks))
    if "surrogate" in labels and scan_equiv:
        row = []
        for k in ks:
            values = []
            for s in seeds:
                k_real = int(k - scan_equiv[s])  # trials left once the scan's cost is paid
                values.append(curves[("surrogate", s)][k_real - 1] if k_real >= 1 else 0.0)
            row.append(statistics.mean(values))
        print(f"{'surr+scan':10s} | " + " | ".join(f"{v:7.4f}" for v in row) + "   (k counts the scan's trial-equivalents)")

    if "surrogate" in labels and "nsga2" in labels:
        print("\nsurrogate / NSGA-II")
        final_s = statistics.mean(curves[("surrogate", s)][-1] for s in seeds)
        final_n = statistics.mean(curves[("nsga2", s)][-1] for s in seeds)
        print(f"  final HV ratio (same {args.evals} trials, scan not counted): {final_s / final_n:.4f}")
        if scan_equiv:
            equal = []
            for s in seeds:
                k_real = int(args.evals - scan_equiv[s])
                equal.append(curves[("surrogate", s)][k_real - 1] if k_real >= 1 else 0.0)
            print(f"  HV ratio at equal total cost ({args.evals} trial-equivalents, scan counted): "
                  f"{statistics.mean(equal) / final_n:.4f}")
        for name, table in (("without scan cost", reach), ("with scan cost", reach_cost)):
            pairs = [(a, b) for a, b in zip(table["surrogate"], table["nsga2"])]
            if all(a is not None and b is not None for a, b in pairs):
                ratio = statistics.mean(a for a, _ in pairs) / statistics.mean(b for _, b in pairs)
                print(f"  evaluations to 99% of best HV, {name}: {statistics.mean(a for a, _ in pairs):.1f} vs "
                      f"{statistics.mean(b for _, b in pairs):.1f} -> ratio {ratio:.3f}")
            else:
                print(f"  evaluations to 99% of best HV, {name}: surrogate {[fmt(a, '.1f') for a, _ in pairs]} vs "
                      f"NSGA-II {[fmt(b, '.1f') for _, b in pairs]} (ratio undefined: some seed never reached it)")

    # Same seed, same random start: how many leading trials each sampler shares with random sampling
    if "random" in labels:
        shared = []
        for label in labels:
            if label == "random":
                continue
            lengths = []
            for s in seeds:
                a, b = list(runs[("random", s)]["frame"]["config"]), list(runs[(label, s)]["frame"]["config"])
                n = 0
                while n < min(len(a), len(b)) and a[n] == b[n]:
                    n += 1
                lengths.append(n)
            shared.append(f"{label} {'/'.join(map(str, lengths))}")
        print("\nleading trials identical to the random sampler's (same seed), per seed: " + ", ".join(shared))

    # Rank correlations over every trial that ran a forward (reused duplicates dropped), all runs pooled
    pooled = pd.concat([run["frame"][~run["frame"]["reused"]].assign(seed=s, strategy=l) for (l, s), run in runs.items()])
    print(f"\nSpearman rank correlation over all evaluated trials (n={len(pooled)}, all strategies and seeds pooled)")
    print(f"  accuracy vs agreement: {spearman(pooled['accuracy'], pooled['agreement']):+.3f}")
    print(f"  accuracy vs -kl      : {spearman(pooled['accuracy'], -pooled['kl']):+.3f}")
    for s in seeds:
        part = pooled[pooled["seed"] == s]
        print(f"  seed {s} only (n={len(part)}): agreement {spearman(part['accuracy'], part['agreement']):+.3f}, "
              f"-kl {spearman(part['accuracy'], -part['kl']):+.3f}")
    print(f"\ntotal wall time: {time.perf_counter() - total_start:.1f} s")


if __name__ == "__main__":
    main()
