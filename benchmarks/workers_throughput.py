"""Trial throughput of 1 vs 2 (vs more) local workers on one study, on the offline demo.

    python benchmarks/workers_throughput.py [--trials 40] [--workers 1 2]

Each configuration runs `tilesearch run --workers K` on a fresh study in a journal file
(the sampler strategy, so every trial is a real evaluation of 400 demo images), and
reports the wall time of the whole command (process start-up, model and image loading
included) and the trial phase alone: trials per minute from the first trial's start to
the last trial's end, read from the study. On a CPU each of K workers gets cores/K threads.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tilesearch.demo import demo_data
from tilesearch.search import load_study_of_run, read_run_file
from tilesearch.zoo import DEMO_MODEL_NAME


def measure(workers: int, trials: int, data: Path, out: Path) -> dict:
    name = f"w{workers}"
    command = [sys.executable, "-m", "tilesearch", "run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(data),
               "--val-subset", "400", "--buffer-budget", "50%", "--strategy", "sampler", "--n-trials", str(trials),
               "--workers", str(workers), "--storage", str(out / name / "study.log"), "--study-name", name, "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    study = load_study_of_run(read_run_file(out / name))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    span = (max(t.datetime_complete for t in complete) - min(t.datetime_start for t in complete)).total_seconds()
    return {"workers": workers, "trials": len(complete), "wall": wall, "span": span, "per_minute": 60 * len(complete) / span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        data = demo_data(out / "demo")
        rows = [measure(k, args.trials, data, out) for k in args.workers]
    base = rows[0]["per_minute"]
    print(f"{'workers':>7} {'trials':>6} {'command s':>9} {'trial phase s':>13} {'trials/min':>10} {'vs first':>8}")
    for row in rows:
        print(f"{row['workers']:>7} {row['trials']:>6} {row['wall']:>9.1f} {row['span']:>13.1f} "
              f"{row['per_minute']:>10.1f} {row['per_minute'] / base:>7.2f}x")


if __name__ == "__main__":
    main()
