"""`tilesearch run / resume / pareto / eval` on the demo network and small drawn data sets."""

import hashlib
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from conftest import assert_user_error
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.core import GAP, load_config
from tilesearch.scoring import Scorer
from tilesearch.search import (
    RunSettings,
    load_study_of_run,
    prepare_search,
    read_run_file,
    run_search,
)
from tilesearch.zoo import DEMO_MODEL_NAME

runner = CliRunner()


def run_args(data, out, *extra):
    return ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(data), "--val-subset", "80",
            "--out", str(out), *extra]


def complete_trials(run_dir):
    study = load_study_of_run(read_run_file(run_dir))
    return study, study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_writes_outputs_and_best_respects_the_budget(demo_val, tmp_path):
    result = runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "8", "--buffer-budget", "60%", "--study-name", "s"))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "s"
    for name in ("trials.csv", "pareto.csv", "pareto.png", "best.yaml", "run.yaml", "study.db", "holdout.yaml"):
        assert (run_dir / name).is_file(), name
    budget = read_run_file(run_dir)["budget_elements"]
    assert budget == int(0.6 * read_run_file(run_dir)["se_buffer"])
    best = load_config(run_dir / "best.yaml")
    assert best.totals["buffer"] <= budget and best.model == DEMO_MODEL_NAME
    front = pd.read_csv(run_dir / "pareto.csv")
    assert len(front) >= 1 and (front["buffer"] <= budget).all() and front["feasible"].all()
    assert best.metrics["accuracy"] == front["accuracy"].max()
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 8
    study, done = complete_trials(run_dir)
    assert done[0].user_attrs["baseline"] == "SE" and set(done[0].user_attrs["tiles"].values()) == {"GAP"}
    assert done[1].user_attrs["baseline"] == "7xW"
    assert sorted(t.number for t in study.best_trials) == sorted(front["trial"])
    holdout = yaml.safe_load((run_dir / "holdout.yaml").read_text())
    assert holdout["images"] == 160 - 80
    # Paired intervals: SE's own drop interval is [0, 0]; every interval holds its drop; the paper's 7xW is reported.
    assert (front["drop_ci_low"] <= front["drop"] + 1e-9).all() and (front["drop"] <= front["drop_ci_high"] + 1e-9).all()
    se_row = trials[trials["trial"] == 0].iloc[0]
    assert se_row["drop_ci_low"] == se_row["drop_ci_high"] == 0
    assert {"indistinguishable_from_se", "overlaps_neighbour"} <= set(front)
    for entry in ("best", "uniform_7xW"):
        low, high = holdout[entry]["drop_ci"]
        assert low <= holdout[entry]["drop"] <= high and holdout[entry]["buffer"] > 0
    assert holdout["drop_unit"] == "points" and "95% interval" in result.output


def test_eval_reproduces_the_trial_score_of_best_yaml(demo_val, tmp_path):
    assert runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "6", "--study-name", "s")).exit_code == 0
    best = load_config(tmp_path / "s" / "best.yaml")
    result = runner.invoke(app, ["eval", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val),
                                 "--config", str(tmp_path / "s" / "best.yaml"), "--limit", "80", "--json"])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert data["accuracy"] == best.metrics["accuracy"]  # the same 80 images (seed 0) and the same tiles
    assert data["total"] == 80 and data["buffer"] == best.totals["buffer"]
    assert {"accuracy", "correct", "total", "buffer", "agreement", "se_accuracy"} <= set(data)


def test_resume_and_rerun_add_trials_without_reevaluating(demo_val, tmp_path, monkeypatch):
    args = run_args(demo_val, tmp_path, "--n-trials", "5", "--study-name", "s", "--space", "uniform")
    assert runner.invoke(app, args).exit_code == 0
    run_dir = tmp_path / "s"
    _, first = complete_trials(run_dir)
    before = {t.number: (t.values, t.datetime_complete) for t in first}

    scored = []
    original = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda self, tiles: scored.append(tiles) or original(self, tiles))
    result = runner.invoke(app, ["resume", str(run_dir), "--n-trials", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, args[:args.index("--n-trials")] + ["--n-trials", "3"] + args[args.index("--n-trials") + 2:])
    assert result.exit_code == 0, result.output

    _, after = complete_trials(run_dir)
    assert len(after) == 5 + 4 + 3
    assert {t.number: (t.values, t.datetime_complete) for t in after if t.number in before} == before
    new = [t for t in after if t.number not in before]
    keys = {tuple(sorted(t.user_attrs["tiles"].items())) for t in first}
    for trial in new:  # a config measured before is reused, never scored again
        if tuple(sorted(trial.user_attrs["tiles"].items())) in keys:
            assert "reused_from" in trial.user_attrs
    fresh = [t for t in new if "reused_from" not in t.user_attrs]
    configs = [tiles for tiles in scored if tiles is not GAP]  # GAP itself: SE, the reference of drops
    holdout_passes = 2 * 2  # each of the two runs scores best and uniform 7xW on the held-out images
    assert len(configs) == len(fresh) + holdout_passes
    # SE: once per run on the held-out images, and at most once per run as the search's interval reference.
    assert len(scored) - len(configs) <= 2 * 2


def test_ctrl_c_keeps_completed_trials_and_resume_continues(demo_val, tmp_path, monkeypatch):
    calls = []
    original = Scorer.score

    def interrupt_on_fourth(self, tiles):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, tiles)

    monkeypatch.setattr(Scorer, "score", interrupt_on_fourth)
    result = runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "10", "--study-name", "s", "--space", "patches"))
    assert result.exit_code == 130
    assert "tilesearch resume" in result.stderr
    study, done = complete_trials(tmp_path / "s")
    assert len(done) == 3
    assert [t.state.name for t in study.trials][3] == "FAIL"
    monkeypatch.setattr(Scorer, "score", original)
    assert runner.invoke(app, ["resume", str(tmp_path / "s")]).exit_code == 0  # finishes the 10 it was asked for
    assert len(complete_trials(tmp_path / "s")[1]) == 10
    assert runner.invoke(app, ["resume", str(tmp_path / "s"), "--n-trials", "2"]).exit_code == 0  # and 2 more
    assert len(complete_trials(tmp_path / "s")[1]) == 12


def test_pareto_command_reads_the_front_from_storage(demo_val, tmp_path):
    assert runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "6", "--study-name", "s")).exit_code == 0
    (tmp_path / "s" / "pareto.csv").unlink()
    result = runner.invoke(app, ["pareto", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    study = load_study_of_run(read_run_file(tmp_path / "s"))
    assert sorted(pd.read_csv(tmp_path / "s" / "pareto.csv")["trial"]) == sorted(t.number for t in study.best_trials)
    assert "Pareto front" in result.stdout


def test_pareto_holdout_scores_the_whole_front_on_held_out_images(demo_val, tmp_path):
    assert runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "6", "--study-name", "s")).exit_code == 0
    result = runner.invoke(app, ["pareto", str(tmp_path / "s"), "--holdout"])
    assert result.exit_code == 0, result.output
    held_out = pd.read_csv(tmp_path / "s" / "pareto_holdout.csv")
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    assert list(held_out["trial"]) == list(front["trial"]) and (tmp_path / "s" / "pareto_holdout.png").is_file()
    holdout = yaml.safe_load((tmp_path / "s" / "holdout.yaml").read_text())
    best = held_out[held_out["trial"] == holdout["best"]["trial"]].iloc[0]
    assert best["accuracy"] == pytest.approx(holdout["best"]["accuracy"])  # the same 80 held-out images
    assert (held_out["drop_ci_low"] <= held_out["drop"] + 1e-9).all() and (held_out["drop"] <= held_out["drop_ci_high"] + 1e-9).all()
    assert "held out" in result.stdout


def test_pareto_holdout_of_a_run_without_held_out_images_is_refused(demo_val, tmp_path):
    args = run_args(demo_val, tmp_path, "--n-trials", "3", "--study-name", "s")
    args[args.index("--val-subset") + 1] = "160"  # every image: nothing held out
    assert runner.invoke(app, args).exit_code == 0
    assert_user_error(runner.invoke(app, ["pareto", str(tmp_path / "s"), "--holdout"]), "no held-out images")
    assert not (tmp_path / "s" / "pareto_holdout.csv").exists()


def test_api_run_search(demo_val, tmp_path):
    settings = RunSettings(model=DEMO_MODEL_NAME, data=str(demo_val), val_subset=40, space="uniform")
    result = run_search(prepare_search(settings, out_dir=tmp_path), n_trials=4, show_progress=False)
    assert result.completed_after == 4 and not result.interrupted
    assert result.run_dir == tmp_path / "tilesearch_demo_net-uniform"


@pytest.fixture()
def three_class_data(tmp_path):
    from PIL import Image

    for cls in ("a", "b", "c"):
        (tmp_path / "three" / cls).mkdir(parents=True)
        Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "three" / cls / "x.png")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_bad_run_inputs(demo_val, tmp_path, three_class_data):
    def run(*args):
        return runner.invoke(app, list(args))

    base = ["--pretrained", "--out", str(tmp_path)]
    assert_user_error(run("run", "--model", "regnety_08", "--data", str(demo_val)), "'regnety_08'", "regnety_008")
    assert_user_error(run("run", "--model", DEMO_MODEL_NAME, "--data", str(tmp_path / "nope"), *base), "does not exist")
    assert_user_error(run("run", "--model", DEMO_MODEL_NAME, "--data", str(tmp_path / "empty"), *base), "no images")
    assert_user_error(run("run", "--model", DEMO_MODEL_NAME, "--data", str(three_class_data / "three"), *base),
                      "3 classes", "8 outputs")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--buffer-budget", "5Q")), "'5Q'", "5M")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--buffer-budget", "10")), "'10'", "smallest buffer")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--sampler", "cmaes")), "'cmaes'", "nsga2")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--n-trials", "0")), "number of trials 0")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--batch-size", "0")), "batch size 0")
    assert_user_error(run(*run_args(demo_val, tmp_path, "--timeout", "-1", "--study-name", "t")), "timeout -1")
    assert not (tmp_path / "t").exists()
    assert_user_error(run(*run_args(demo_val, tmp_path, "--space", "nope")), "'nope'", "default")
    assert_user_error(run("run", "--data", str(demo_val)), "--data needs --model")
    assert_user_error(run("resume", str(tmp_path / "missing")), "not a tilesearch run folder")
    assert_user_error(run("pareto", str(tmp_path / "missing")), "not a tilesearch run folder")
    assert_user_error(run("eval", "--model", DEMO_MODEL_NAME, "--data", str(demo_val), "--pretrained"), "exactly one of")


def test_a_failed_start_leaves_the_study_untouched(demo_val, tmp_path):
    assert runner.invoke(app, run_args(demo_val, tmp_path, "--n-trials", "3", "--study-name", "s")).exit_code == 0
    db = tmp_path / "s" / "study.db"
    before = digest(db), digest(tmp_path / "s" / "run.yaml")
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, "--study-name", "s", "--sampler", "x")), "'x'")
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, "--study-name", "s", "--buffer-budget", "5Q")), "'5Q'")
    changed = run_args(demo_val, tmp_path, "--study-name", "s", "--buffer-budget", "50%")
    assert_user_error(runner.invoke(app, changed), "study 's' was made with budget=None", "--study-name")
    assert (digest(db), digest(tmp_path / "s" / "run.yaml")) == before


def test_offline_demo_runs_with_no_arguments(tmp_path):
    result = runner.invoke(app, ["run", "--out", str(tmp_path), "--n-trials", "12"])
    assert result.exit_code == 0, result.output
    run_dir = next(p for p in tmp_path.iterdir() if (p / "run.yaml").is_file())
    assert (run_dir / "best.yaml").is_file() and (run_dir / "pareto.png").is_file()
    assert (tmp_path / "demo-data" / "val").is_dir() and (tmp_path / "demo-data" / "train").is_dir()
    metrics = json.loads((run_dir / "final" / "metrics.json").read_text())  # the demo always fine-tunes
    assert metrics["score_after"] >= metrics["score_before"] and metrics["metric"] == "accuracy"


@torch.no_grad()
def test_all_gap_equals_the_unmodified_timm_model_image_for_image(shared_dir):
    """The shared trained RegNetY on CIFAR-10: tilesearch's SE scoring vs plain timm, per image."""
    import timm
    from safetensors.torch import load_file
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    from tilesearch.data import decode_images, resolve_preprocessing, stratified_split
    from tilesearch.zoo import load_model

    data = shared_dir / "cifar10" / "val"
    checkpoint = shared_dir / "models" / "regnety_002_cifar10_128.safetensors"
    model = load_model("regnety_002", checkpoint=checkpoint, num_classes=10)
    preprocessing = resolve_preprocessing(model, input_size=128, crop_pct=1.0, interpolation="bilinear")
    dataset = ImageFolder(str(data))
    indices, _ = stratified_split([label for _, label in dataset.samples], 300, seed=0)
    scorer = Scorer(model, decode_images(data, preprocessing, indices), preprocessing, batch_size=100)
    ours = scorer.logits("GAP").argmax(1)

    plain = timm.create_model("regnety_002", num_classes=10)
    plain.load_state_dict(load_file(str(checkpoint)))
    plain.eval()
    transform = create_transform(input_size=(3, 128, 128), interpolation="bilinear", crop_pct=1.0,
                                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images = torch.stack([transform(dataset.loader(dataset.samples[i][0])) for i in indices])
    with torch.inference_mode():
        plain_logits = plain(images)
    theirs = plain_logits.argmax(1)
    assert torch.equal(ours, theirs)
    # scored in the memory format the scorer measured to be faster (channels_last on most CPUs): the same logits up to
    # float rounding, not bit for bit
    torch.testing.assert_close(scorer.logits("GAP"), plain_logits, rtol=1e-4, atol=1e-4)
    accuracy = (ours == scorer.images.labels).float().mean().item()
    assert accuracy > 0.75  # the model card says 84.6% on all 10,000 images
    assert scorer.score("1x1").accuracy < accuracy


def test_a_killed_run_loses_no_completed_trial(demo_val, tmp_path):
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "tilesearch", *run_args(demo_val, tmp_path, "--n-trials", "500", "--study-name", "k")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "k" / "study.db"
    try:
        deadline = time.time() + 240
        done = []
        while time.time() < deadline and len(done) < 3:
            time.sleep(0.5)
            if (tmp_path / "k" / "run.yaml").is_file():
                done = complete_trials(tmp_path / "k")[1]
        assert len(done) >= 3, "the run did not get going"
    finally:
        process.kill()  # SIGKILL: no handler runs
        process.wait()
    _, survived = complete_trials(tmp_path / "k")
    assert len(survived) >= len(done)
    result = runner.invoke(app, ["resume", str(tmp_path / "k"), "--timeout", "3"])  # on towards its 500
    assert result.exit_code == 0, result.output
    assert len(complete_trials(tmp_path / "k")[1]) > len(survived)
    assert db.is_file()


def test_a_first_start_that_fails_on_the_data_does_not_lock_the_study(tmp_path, three_class_data):
    data = str(three_class_data / "three")
    first = runner.invoke(app, ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", data, "--out", str(tmp_path)])
    assert_user_error(first, "3 classes", "--num-classes 3")
    second = runner.invoke(app, ["run", "--model", DEMO_MODEL_NAME, "--num-classes", "3", "--data", data,
                                 "--n-trials", "2", "--space", "uniform", "--out", str(tmp_path)])
    assert second.exit_code == 0, second.output


def test_kl_studies_pick_the_lowest_kl_for_deployment(demo_val, tmp_path):
    args = run_args(demo_val, tmp_path, "--metric", "kl", "--space", "uniform", "--n-trials", "6", "--study-name", "k")
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["export", str(tmp_path / "k"), "--format", "yaml", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    study = load_study_of_run(read_run_file(tmp_path / "k"))
    lowest = min(study.best_trials, key=lambda t: (t.values[0], t.values[1]))
    exported = load_config(tmp_path / "e" / "config.yaml")
    assert {k: str(v) for k, v in exported.tiles.items()} == lowest.user_attrs["tiles"]
    assert {k: str(v) for k, v in load_config(tmp_path / "k" / "best.yaml").tiles.items()} == lowest.user_attrs["tiles"]
