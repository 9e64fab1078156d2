"""Fine-tuning an aggressive config (every SE block 1x1) regains accuracy.

Runs a two-trial search to get a run folder, then `tilesearch finetune` with an
all-1x1 config, on the offline demo and (where ../shared exists) on the shared
RegNetY-200MF trained on CIFAR-10 with ../shared/cifar10/train. Prints held-out
top-1 of SE, of all-1x1 before and after fine-tuning.

    python benchmarks/finetune_aggressive.py [--out runs/bench-finetune] [--epochs 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tilesearch.core import buffer_report, config_document, save_config
from tilesearch.demo import demo_data
from tilesearch.deploy import finetune
from tilesearch.search import RunSettings, prepare_search, run_search
from tilesearch.zoo import DEMO_MODEL_NAME

SHARED = Path(__file__).resolve().parents[2] / "shared"


def all_1x1(run_dir: Path, search) -> Path:
    report = buffer_report(search.blocks, "1x1", search.profile)
    return save_config(run_dir / "all-1x1.yaml", config_document(search.settings.model, search.preprocessing.input_size, report))


def measure(settings: RunSettings, out: Path, train: Path, **finetune_args) -> dict:
    search = prepare_search(settings, out_dir=out)
    run_search(search, n_trials=2, show_progress=False)
    return finetune(search.run_dir, train, config=all_1x1(search.run_dir, search), **finetune_args)


def main() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library leaves Optuna's log level to its caller
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-finetune"))
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    demo = RunSettings(model=DEMO_MODEL_NAME, data=str(demo_data(args.out)), val_subset=400, space="uniform")
    rows.append(("demo (tilesearch_demo_net)", measure(demo, args.out, demo_data(args.out, "train"),
                                                       epochs=args.epochs, train_subset=1.0)))
    if SHARED.is_dir():
        shared = RunSettings(
            model="regnety_002", data=str(SHARED / "cifar10" / "val"),
            checkpoint=str(SHARED / "models" / "regnety_002_cifar10_128.safetensors"), num_classes=10,
            input_size=128, crop_pct=1.0, interpolation="bilinear", val_subset=1000, space="uniform",
        )
        rows.append(("regnety_002 CIFAR-10", measure(shared, args.out, SHARED / "cifar10" / "train",
                                                     epochs=args.epochs, train_subset=0.1)))
    else:
        print(f"skipping the shared model: {SHARED} not found")
    print(f"\n{'model':28} {'held-out':>9} {'train':>6} {'epochs':>6} {'SE':>7} {'1x1 before':>11} {'1x1 after':>10} {'seconds':>8}")
    for name, m in rows:
        print(f"{name:28} {m['held_out_images']:>9} {m['train_images']:>6} {m['epochs']:>6} {100 * m['se_score']:>6.2f}% "
              f"{100 * m['score_before']:>10.2f}% {100 * m['score_after']:>9.2f}% {m['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
