"""`tilesearch finetune / export` and the apply-a-config API, on the demo network."""

import json

import optuna
import pytest
import torch
from conftest import assert_user_error
from typer.testing import CliRunner

import tilesearch
from tilesearch.cli import app
from tilesearch.core import buffer_report, config_document, load_config, save_config
from tilesearch.data import decode_images, resolve_preprocessing, stratified_split
from tilesearch.demo import write_demo_dataset
from tilesearch.scoring import Scorer
from tilesearch.search import blocks_from_run, load_study_of_run, read_run_file
from tilesearch.zoo import DEMO_MODEL_NAME, create_model, load_checkpoint, load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    val = write_demo_dataset(root, "val", 20, seed=7)
    train = write_demo_dataset(root, "train", 40, seed=7)
    result = runner.invoke(app, ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(val),
                                 "--val-subset", "80", "--n-trials", "10", "--buffer-budget", "70%",
                                 "--out", str(root / "runs"), "--study-name", "d"])
    assert result.exit_code == 0, result.output
    return {"dir": root / "runs" / "d", "val": val, "train": train, "root": root}


def uniform_config(run_dir, tile, path):
    document = read_run_file(run_dir)
    report = buffer_report(blocks_from_run(document), tile, document["settings"]["profile"])
    return save_config(path, config_document(DEMO_MODEL_NAME, tuple(document["preprocessing"]["input_size"]), report))


def test_finetune_all_1x1_does_not_lose_accuracy_and_writes_final(demo_run, tmp_path):
    config = uniform_config(demo_run["dir"], "1x1", tmp_path / "1x1.yaml")
    result = runner.invoke(app, ["finetune", str(demo_run["dir"]), "--train-data", str(demo_run["train"]),
                                 "--config", str(config), "--epochs", "4", "--train-subset", "1.0"])
    assert result.exit_code == 0, result.output
    final = demo_run["dir"] / "final"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["score_after"] >= metrics["score_before"] and metrics["metric"] == "accuracy"
    assert metrics["epochs"] == 4 and metrics["train_images"] == 320 and len(metrics["losses"]) == 4
    assert {"se_score", "buffer", "seconds", "held_out_images"} <= set(metrics)
    saved = load_config(final / "config.yaml")
    assert {str(t) for t in saved.tiles.values()} == {"1x1"}
    model = load_checkpoint(create_model(DEMO_MODEL_NAME), final / "model.safetensors")  # complete and strict-loadable
    assert not torch.equal(model.head.fc.weight, load_model(DEMO_MODEL_NAME).head.fc.weight)
    assert not list(demo_run["dir"].glob(".final.tmp*"))


def test_exported_yaml_applied_to_a_fresh_model_reproduces_the_trial(demo_run, tmp_path):
    study = load_study_of_run(read_run_file(demo_run["dir"]))
    trial = next(t for t in study.best_trials if set(t.user_attrs["tiles"].values()) != {"GAP"})
    result = runner.invoke(app, ["export", str(demo_run["dir"]), "--trial", str(trial.number), "--format", "yaml",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    model = load_model(DEMO_MODEL_NAME)
    tilesearch.apply_tiles(model, tmp_path / "config.yaml")  # a user's own model, the config's path
    preprocessing = resolve_preprocessing(model)
    from torchvision.datasets import ImageFolder

    labels = [label for _, label in ImageFolder(str(demo_run["val"])).samples]
    indices, _ = stratified_split(labels, 80, seed=0)
    images = decode_images(demo_run["val"], preprocessing, indices)
    config = load_config(tmp_path / "config.yaml")
    assert Scorer(model, images, preprocessing).score(config.tiles).accuracy == trial.user_attrs["accuracy"]


def test_onnx_export_matches_pytorch(demo_run, tmp_path):
    result = runner.invoke(app, ["export", str(demo_run["dir"]), "--format", "all", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["onnx_max_abs_diff"] <= 1e-4
    import onnx

    graph = onnx.load(str(tmp_path / "model.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert "AveragePool" in ops and not any(node.domain not in ("", "ai.onnx") for node in graph.graph.node)
    assert graph.opset_import[0].version >= 17
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert json.loads(handle.metadata()["tilesearch_config"])


def test_export_survives_a_damaged_image_cache(demo_run, tmp_path):
    for cached in (demo_run["dir"] / "cache").glob("*.pt"):
        cached.write_bytes(cached.read_bytes()[:64])  # a disk that filled up while an older version wrote it
    with pytest.warns(UserWarning, match="cannot be read"):
        result = runner.invoke(app, ["export", str(demo_run["dir"]), "--format", "all", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {"config.yaml", "model.safetensors", "model.onnx", "export.json"} <= {p.name for p in tmp_path.iterdir()}


def test_onnx_parity_on_the_shared_regnety(shared_dir, tmp_path):
    from tilesearch.deploy import export_onnx, onnx_parity
    from tilesearch.zoo import load_model

    model = load_model("regnety_002", checkpoint=shared_dir / "models" / "regnety_002_cifar10_128.safetensors",
                       num_classes=10)
    names = [name for name, _ in tilesearch.find_se_modules(model)]
    tiles = ["1x1", "3xW", "Hx5", "7x7", "5x5", "9xW", "GAP"]
    tilesearch.apply_tiles(model, {name: tiles[i % len(tiles)] for i, name in enumerate(names)})
    preprocessing = resolve_preprocessing(model, input_size=128, crop_pct=1.0, interpolation="bilinear")
    images = decode_images(shared_dir / "cifar10" / "val", preprocessing, list(range(0, 10000, 1250)))
    export_onnx(model, tmp_path / "m.onnx", (128, 128))
    assert onnx_parity(model, tmp_path / "m.onnx", preprocessing.normalize(images.pixels)) <= 1e-4


def test_apply_tiles_refuses_a_config_of_another_model(demo_run, tmp_path):
    import timm

    config = uniform_config(demo_run["dir"], "7xW", tmp_path / "c.yaml")
    with pytest.raises(tilesearch.TilesearchError, match="does not match this model's SE blocks"):
        tilesearch.apply_tiles(timm.create_model("regnety_002"), config)
    tilesearch.apply_tiles(load_model(DEMO_MODEL_NAME), tilesearch.load_config(config))


def test_bad_deploy_inputs(demo_run, tmp_path):
    run_dir = str(demo_run["dir"])
    study = load_study_of_run(read_run_file(demo_run["dir"]))
    assert_user_error(runner.invoke(app, ["export", run_dir, "--trial", "999"]), "trial 999", "front's trials")
    over = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if not t.user_attrs["feasible"]]
    if over:
        assert_user_error(runner.invoke(app, ["export", run_dir, "--trial", str(over[0].number)]), "over the buffer budget")
    other = tmp_path / "other.yaml"
    other.write_text(load_config_text(demo_run["dir"]).replace(f"model: {DEMO_MODEL_NAME}", "model: regnety_002"))
    assert_user_error(runner.invoke(app, ["export", run_dir, "--config", str(other)]), "regnety_002")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(runner.invoke(app, ["export", run_dir, "--out", str(blocker / "sub")]), "cannot write")
    assert_user_error(runner.invoke(app, ["export", run_dir, "--format", "tflite"]), "'tflite'", "onnx")
    train = str(demo_run["train"])
    assert_user_error(runner.invoke(app, ["finetune", run_dir, "--train-data", train, "--batch-size", "0"]), "batch size 0")
    assert_user_error(runner.invoke(app, ["finetune", run_dir, "--train-data", train, "--train-annotations", "x.json"]),
                      "for detectors", DEMO_MODEL_NAME)
    wrong = tmp_path / "wrong"
    for cls in ("a", "b"):
        (wrong / cls).mkdir(parents=True)
        from PIL import Image

        Image.new("RGB", (64, 64)).save(wrong / cls / "x.png")
    before = sorted(p.name for p in demo_run["dir"].iterdir())
    assert_user_error(runner.invoke(app, ["finetune", run_dir, "--train-data", str(wrong)]), "same classes")
    assert sorted(p.name for p in demo_run["dir"].iterdir()) == before  # nothing half-written


def load_config_text(run_dir):
    return (run_dir / "best.yaml").read_text()
