"""Prefix-cached sensitivity scan, fidelity metrics, the surrogate strategy, unlabeled data."""

import math

import optuna
import pandas as pd
import pytest
import torch
from conftest import assert_user_error, randomize_
from typer.testing import CliRunner

from tilesearch import create_model, find_se_modules, parse_tile
from tilesearch.cli import app
from tilesearch.scoring import PrefixCache, kl_divergence, scan
from tilesearch.search import load_study_of_run, read_run_file, surrogate_errors
from tilesearch.zoo import DEMO_MODEL_NAME

runner = CliRunner()


@pytest.mark.parametrize(
    "name, size",
    [("regnety_002", 64), ("efficientnet_b0", 64), ("mobilenetv3_small_100", 64), ("seresnet18", 64),
     ("torchvision/mobilenet_v3_small", 64), ("torchvision/efficientnet_b0", 64)],
)
def test_prefix_cached_scan_equals_uncached(name, size):
    torch.manual_seed(0)
    model = randomize_(create_model(name))
    x, labels = torch.randn(3, 3, size, size), torch.tensor([0, 1, 2])
    choices = {n: [parse_tile("GAP"), parse_tile("1x1"), parse_tile("3xW")] for n, _ in find_se_modules(model)}
    cached = scan(model, lambda: iter([(x, labels)]), choices, use_prefix_cache=True)
    uncached = scan(model, lambda: iter([(x, labels)]), choices, use_prefix_cache=False)
    assert cached == uncached
    assert any(row.kl > 0 for row in cached)


@torch.no_grad()
def test_prefix_cache_replays_the_prefix_of_a_detector():
    model = randomize_(create_model("efficientdet_d0", input_size=(128, 128)))
    cache = PrefixCache(model)
    x = torch.randn(1, 3, 128, 128)
    cache.record(x)
    replayed = [len(cache.replayed(name)) for name in cache.se_names]
    assert replayed[-1] > replayed[0] > 0  # later blocks replay more
    for name in cache.se_names[::5]:
        model.get_submodule(name).tse_tile = parse_tile("1x1")
        got, want = cache.run_from(name, x), model(x)
        model.get_submodule(name).tse_tile = parse_tile("GAP")
        for a, b in zip(got[0] + got[1], want[0] + want[1]):
            assert torch.equal(a, b)


def test_prefix_cache_skips_the_computation_before_the_block():
    model = randomize_(create_model("regnety_002"))
    cache = PrefixCache(model)
    x = torch.randn(2, 3, 64, 64)
    cache.record(x)
    last = cache.se_names[-1]
    calls = []
    hook = model.stem.conv.register_forward_hook(lambda *a: calls.append(1))
    cache.run_from(last, x)
    assert "stem" in cache.replayed(last) and not calls  # the stem's convolution did not run
    model(x)
    hook.remove()
    assert calls  # (the hook does see a full forward)


def test_fidelity_metrics_on_hand_built_logits():
    reference = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(kl_divergence(reference, reference), torch.zeros(2))
    p = torch.softmax(reference, 1)
    q_logits = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    q = torch.softmax(q_logits, 1)
    expected = (p[0] * (p[0].log() - q[0].log())).sum()
    got = kl_divergence(reference, q_logits)
    assert math.isclose(float(got[0]), float(expected), rel_tol=1e-6) and float(got[1]) == pytest.approx(0.0, abs=1e-7)


def test_sensitivity_command_writes_csv_and_heatmap(demo_val, tmp_path):
    result = runner.invoke(app, ["sensitivity", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val),
                                 "--val-subset", "80", "--out", str(tmp_path), "--study-name", "s"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "s" / "sensitivity.csv")
    assert (tmp_path / "s" / "sensitivity.png").is_file()
    assert set(frame["tile"]) >= {"GAP", "1xW"} and len(set(frame["block"])) == 7
    gap = frame[frame["tile"] == "GAP"]
    assert (gap["drop"] == 0).all() and (gap["agreement"] == 1).all()
    assert frame.loc[frame["tile"] == "1xW", "drop"].max() > 0


def test_surrogate_strategy_queues_its_front_and_reports_its_error(demo_val, tmp_path):
    result = runner.invoke(app, ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val),
                                 "--val-subset", "80", "--n-trials", "10", "--buffer-budget", "60%",
                                 "--out", str(tmp_path), "--study-name", "s"])
    assert result.exit_code == 0, result.output
    assert "surrogate error" in result.stdout
    study = load_study_of_run(read_run_file(tmp_path / "s"))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    queued = [t for t in trials if "surrogate_gain" in t.user_attrs]
    assert len(queued) >= 4 and all(t.user_attrs["feasible"] for t in queued)  # proposals come from the feasible front
    keys = [tuple(sorted(t.user_attrs["tiles"].items())) for t in queued]
    assert len(set(keys)) == len(keys)  # the learning surrogate never proposes a config measured before
    errors = surrogate_errors(study)  # each prediction made before its trial was measured
    assert len(errors) >= 4 and any(error > 0 for _, error in errors)
    assert "surrogate error before each trial was measured" in result.stdout
    assert all("predicted" in t.user_attrs for t in trials)
    se = next(t for t in trials if t.user_attrs.get("baseline") == "SE")
    assert se.user_attrs["predicted"] == pytest.approx(se.user_attrs["accuracy"])
    assert (tmp_path / "s" / "sensitivity.csv").is_file()


def test_unlabeled_flat_folder_with_agreement(demo_val, tmp_path):
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted(demo_val.rglob("*.png"))[::2]):
        shutil.copy(path, flat / f"{i:04d}.png")
    base = ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(flat), "--val-subset", "40",
            "--n-trials", "4", "--out", str(tmp_path), "--space", "uniform"]
    assert_user_error(runner.invoke(app, base), "unlabeled", "--metric agreement")
    result = runner.invoke(app, base + ["--metric", "agreement", "--study-name", "a"])
    assert result.exit_code == 0, result.output
    front = pd.read_csv(tmp_path / "a" / "pareto.csv")
    assert front["agreement"].max() == 1.0  # SE agrees with itself
    result = runner.invoke(app, base + ["--metric", "kl", "--study-name", "k"])
    assert result.exit_code == 0, result.output
    study = load_study_of_run(read_run_file(tmp_path / "k"))
    assert study.directions[0] == optuna.study.StudyDirection.MINIMIZE


def test_bad_metric_and_strategy(demo_val, tmp_path):
    base = ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val), "--out", str(tmp_path)]
    assert_user_error(runner.invoke(app, base + ["--metric", "f1"]), "'f1'", "agreement")
    assert_user_error(runner.invoke(app, base + ["--strategy", "magic"]), "'magic'", "surrogate")
    assert_user_error(runner.invoke(app, base + ["--strategy", "surrogate", "--space", "uniform"]), "per_block")


def test_surrogate_prediction_follows_the_metric_direction():
    from tilesearch.core import get_metric
    from tilesearch.scoring import SensitivityRow
    from tilesearch.search import AdditiveSurrogate

    drops = {("a", "1x1"): 0.2, ("b", "7xW"): 0.05}
    kl = AdditiveSurrogate(get_metric("kl"), 0.0, drops)
    assert kl.predict({"a": "1x1", "b": "7xW"}) == pytest.approx(0.25)  # KL grows with the drops
    accuracy = AdditiveSurrogate(get_metric("accuracy"), 0.9, drops)
    assert accuracy.predict({"a": "1x1", "b": "GAP"}) == pytest.approx(0.7)  # accuracy falls
    rows = [SensitivityRow("a", "GAP", {"accuracy": 0.9, "agreement": 1.0, "kl": 0.0}, 0.0),
            SensitivityRow("a", "1x1", {"accuracy": 0.7, "agreement": 0.8, "kl": 0.3}, 0.2)]
    assert AdditiveSurrogate.from_rows(rows, get_metric("kl")).drops[("a", "1x1")] == pytest.approx(0.3)
    assert AdditiveSurrogate.from_rows(rows, get_metric("agreement")).drops[("a", "1x1")] == pytest.approx(0.2)
