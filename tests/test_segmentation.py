"""Segmenters: non-square sizes, the heads' global-pool branches, mIoU search, fine-tuning and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from conftest import assert_user_error, randomize_
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from tilesearch import apply_tiles, discover_se_blocks, find_se_modules, parse_tile
from tilesearch.cli import app
from tilesearch.core import TilesearchError, parse_input_size
from tilesearch.nn import flavour_of
from tilesearch.scoring import scan
from tilesearch.search import RunSettings
from tilesearch.search._settings import first_difference
from tilesearch.zoo import create_model

runner = CliRunner()
CLASSES = 5
SIZE = (48, 72)  # height x width: not square, so a swapped axis shows


@pytest.fixture(scope="module")
def seg_folder(tmp_path_factory) -> Path:
    """Ten photos-to-be with PNG label maps of the same stems (a band of ignored pixels on top)."""
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    for split, count in (("val", 10), ("train", 4)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            mask = rng.integers(0, CLASSES, (60, 90)).astype(np.uint8)
            mask[:4] = 255
            image = (rng.random((60, 90, 3)) * 255).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"frame{i:02d}.jpg")
            Image.fromarray(mask).save(root / split / "masks" / f"frame{i:02d}.png")
    return root


def _seg_args(folder: Path, out: Path) -> list[str]:
    return ["run", "--model", "lraspp_mobilenet_v3_small", "--random-weights", "--num-classes", str(CLASSES),
            "--input-size", f"{SIZE[0]}x{SIZE[1]}", "--data", str(folder / "val" / "images"),
            "--masks", str(folder / "val" / "masks"), "--out", str(out)]


# ------------------------------------------------------------------------------------------- input sizes


@pytest.mark.parametrize("text, size", [("224", (224, 224)), ("1024x2048", (1024, 2048)), (" 64 X 96 ", (64, 96)),
                                        (128, (128, 128)), ((3, 5), (3, 5)), ([7, 9], (7, 9))])
def test_input_sizes_parse_as_height_by_width(text, size):
    assert parse_input_size(text) == size


@pytest.mark.parametrize("text", ["1024x", "0x2048", "x", "-3", "64x96x3", "abc", "1.5"])
def test_a_bad_input_size_is_one_line_naming_it(text):
    with pytest.raises(TilesearchError, match="invalid input size") as error:
        parse_input_size(text)
    assert repr(text) in str(error.value) and "1024x2048" in str(error.value)


@pytest.mark.parametrize("text", ["1024x", "0x2048"])
def test_the_cli_refuses_a_bad_size_before_loading_anything(text, tmp_path):
    assert_user_error(runner.invoke(app, ["buffer", "lraspp_mobilenet_v3_large", "--input-size", text]), repr(text))
    result = runner.invoke(app, ["run", "--model", "lraspp_mobilenet_v3_small", "--random-weights",
                                 "--input-size", text, "--out", str(tmp_path)])
    assert_user_error(result, repr(text))
    assert not any(tmp_path.iterdir())


def test_settings_saved_with_one_side_resume_as_a_square():
    old = RunSettings.from_dict({"model": "regnety_002", "input_size": 128})
    assert old.input_size == (128, 128)
    assert first_difference({"input_size": [128, 128]}, {"input_size": (128, 128)}) is None
    assert RunSettings(model="m", input_size="64x96").to_dict()["input_size"] == [64, 96]


# ------------------------------------------------------------------------------- the heads' pool branches


def test_buffer_lists_the_backbone_and_the_head_branch_at_1024x2048():
    result = runner.invoke(app, ["buffer", "lraspp_mobilenet_v3_large", "--input-size", "1024x2048", "--tile", "7xW",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["input_size"] == [1024, 2048]
    blocks = {block["name"]: block for block in report["blocks"]}
    backbone = [name for name in blocks if name.startswith("backbone.")]
    assert len(backbone) == 8 and "classifier.scale" in blocks
    scale = blocks["classifier.scale"]
    # The gated tensor waits: cbr(high), 128 channels at output stride 16, not high's 960.
    assert (scale["channels"], scale["height"], scale["width"]) == (128, 64, 128)
    assert scale["tile_h"] == 7 and scale["tile_w"] == 128 and scale["tiles"] == 10
    assert all(block["width"] == 2 * block["height"] for block in blocks.values())
    assert report["se_total"] == sum(b["channels"] * b["height"] * b["width"] for b in blocks.values())


@pytest.mark.parametrize("name, branch, kind", [
    ("lraspp_mobilenet_v3_large", "classifier.scale", "Sequential (branch)"),
    ("deeplabv3_mobilenet_v3_large", "classifier.0.convs.4", "ASPPPooling (branch)"),
])
def test_gap_is_bit_identical_and_tiling_the_branch_changes_the_output(name, branch, kind):
    model = randomize_(create_model(name))
    blocks = {block.name: block for block in discover_se_blocks(model, (64, 96))}
    assert blocks[branch].kind == kind
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        original = model(x)["out"]
        assert torch.equal(apply_tiles(model, "GAP")(x)["out"], original)
        changed = apply_tiles(model, {branch: "1x1"})(x)["out"]
    assert (changed - original).abs().max() > 1e-6


def _per_tile_reference(branch: nn.Module, x: torch.Tensor, tile_h: int, tile_w: int) -> torch.Tensor:
    """The branch's own forward on every tile alone, its value written over exactly that tile."""
    out = None
    for top in range(0, x.shape[-2], tile_h):
        for left in range(0, x.shape[-1], tile_w):
            tile = x[..., top : top + tile_h, left : left + tile_w]
            value = branch(tile)
            if out is None:
                out = x.new_zeros(x.shape[0], value.shape[1], *x.shape[-2:])
            out[..., top : top + tile_h, left : left + tile_w] = value
    return out


@pytest.mark.parametrize("tile", ["3x3", "4xW", "Hx5", "1x1"])
def test_a_tiled_branch_is_the_branch_run_on_each_tile(tile):
    lraspp = randomize_(create_model("lraspp_mobilenet_v3_large"))
    deeplab = randomize_(create_model("deeplabv3_mobilenet_v3_large"))
    x = torch.randn(2, 960, 10, 13)  # partial edge tiles on both axes
    for model, name in ((lraspp, "classifier.scale"), (deeplab, "classifier.0.convs.4")):
        branch = model.get_submodule(name)
        spec = parse_tile(tile)
        tile_h, tile_w = spec.resolve(10, 13)
        with torch.no_grad():
            expected = _per_tile_reference(branch, x, tile_h, tile_w)
            tiled = apply_tiles(model, {name: tile}).get_submodule(name)(x)
        assert torch.allclose(tiled.expand_as(expected), expected, atol=1e-5)


class _Head(nn.Module):
    """A user's LR-ASPP-style head: a pool branch gating a 1x1 projection."""

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Conv2d(16, 8, 1)
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 8, 1), nn.Hardsigmoid())
        self.classify = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.ReLU())

    def forward(self, x):
        return self.project(x) * self.scale(x), self.classify(x), self.pool(x)


def test_user_pool_branches_are_found_and_other_pooled_heads_are_not():
    head = _Head()
    assert flavour_of(head.scale).family == "branch"
    assert flavour_of(head.classify) is None  # a flattened classifier: its value is not spread over the map
    assert flavour_of(head.pool) is None  # a bare pool: what uses it lies outside the module
    (block,) = discover_se_blocks(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), head), (20, 30))
    assert block.name == "1.scale" and (block.channels, block.height, block.width) == (8, 20, 30)


# ------------------------------------------------------------------------------------- the whole pipeline


def test_prefix_cached_segmentation_scan_equals_uncached(seg_folder):
    from tilesearch.data import decode_segmentation, segmentation_pairs
    from tilesearch.scoring import SegmentationScorer

    model = randomize_(create_model("lraspp_mobilenet_v3_small", num_classes=CLASSES))
    pairs = segmentation_pairs(seg_folder / "val" / "images", seg_folder / "val" / "masks")
    images = decode_segmentation(pairs[:4], SIZE, num_classes=CLASSES)
    scorer = SegmentationScorer(model, images, (0.5,) * 3, (0.25,) * 3, batch_size=2)
    choices = {name: [parse_tile("GAP"), parse_tile("1x1"), parse_tile("3xW")] for name, _ in find_se_modules(model)}
    cached = scan(model, scorer.batches, choices, use_prefix_cache=True, tally=scorer.tally)
    uncached = scan(model, scorer.batches, choices, use_prefix_cache=False, tally=scorer.tally)
    assert [(r.block, r.tile) for r in cached] == [(r.block, r.tile) for r in uncached]
    for a, b in zip(cached, uncached):
        assert a.scores == pytest.approx(b.scores, abs=1e-6)
    assert set(cached[0].scores) == {"miou", "pixel_accuracy", "pseudo_miou", "fidelity"}
    assert any(row.fidelity > 0 for row in cached) and all(0 <= row.pseudo_miou <= 1 for row in cached)


def test_run_finetune_and_export_a_segmenter(seg_folder, tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, _seg_args(seg_folder, out) + [
        "--n-trials", "4", "--val-subset", "6", "--train-data", str(seg_folder / "train" / "images"),
        "--train-masks", str(seg_folder / "train" / "masks"), "--epochs", "1", "--train-subset", "1.0"])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    assert (run_dir / "sensitivity.csv").is_file()  # the surrogate strategy's one-block scan
    holdout = (run_dir / "holdout.yaml").read_text()
    assert "miou" in holdout
    metrics = json.loads((run_dir / "final" / "metrics.json").read_text())
    assert metrics["metric"] == "miou" and metrics["held_out_images"] == 4
    assert 0 <= metrics["score_after"] <= 1
    exported = runner.invoke(app, ["export", str(run_dir)])
    assert exported.exit_code == 0, exported.output
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert report["onnx_max_abs_diff"] < 1e-4 and report["weights"].startswith("fine-tuned")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(run_dir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": np.zeros((1, 3, *SIZE), np.float32)})
    assert output.shape == (1, CLASSES, *SIZE)  # the network up to its logits, at the input's size


def test_eval_scores_a_segmenter_with_and_without_masks(seg_folder):
    base = ["eval", "--model", "lraspp_mobilenet_v3_small", "--random-weights", "--num-classes", str(CLASSES),
            "--input-size", "48x72", "--data", str(seg_folder / "val" / "images"), "--json"]
    labelled = runner.invoke(app, base + ["--masks", str(seg_folder / "val" / "masks"), "--tile", "GAP"])
    assert labelled.exit_code == 0, labelled.output
    score = json.loads(labelled.stdout)
    assert score["miou"] == score["se_miou"] and score["pseudo_miou"] == 1.0 and score["fidelity"] == 0.0
    unlabelled = json.loads(runner.invoke(app, base + ["--tile", "1x1"]).stdout)
    assert unlabelled["miou"] is None and unlabelled["pixel_accuracy"] is None  # no masks: null in the JSON
    assert unlabelled["buffer"] < unlabelled["se_buffer"]


# ------------------------------------------------------------------------------------------- bad input


def test_masks_missing_for_some_images_are_named(seg_folder, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in sorted((seg_folder / "val" / "masks").iterdir())[:7]:
        (masks / path.name).write_bytes(path.read_bytes())
    args = _seg_args(seg_folder, tmp_path / "runs")
    args[args.index("--masks") + 1] = str(masks)
    assert_user_error(runner.invoke(app, args), "frame07", "frame09")
    assert not (tmp_path / "runs").exists()


def test_a_mask_of_another_size_is_refused(seg_folder, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in sorted((seg_folder / "val" / "masks").iterdir()):
        (masks / path.name).write_bytes(path.read_bytes())
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(masks / "frame03.png")
    args = _seg_args(seg_folder, tmp_path / "runs")
    args[args.index("--masks") + 1] = str(masks)
    assert_user_error(runner.invoke(app, args + ["--val-subset", "10"]), "frame03", "30")


def test_a_label_beyond_the_classes_is_refused_unless_ignored(seg_folder, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for path in sorted((seg_folder / "val" / "masks").iterdir()):
        (masks / path.name).write_bytes(path.read_bytes())
    bad = np.zeros((60, 90), np.uint8)
    bad[10, 10] = 7
    Image.fromarray(bad).save(masks / "frame05.png")
    args = _seg_args(seg_folder, tmp_path / "runs")
    args[args.index("--masks") + 1] = str(masks)
    assert_user_error(runner.invoke(app, args + ["--val-subset", "10"]), "frame05", "7")


def test_masks_for_a_classifier_and_miou_without_masks_are_refused(seg_folder, demo_val, tmp_path):
    result = runner.invoke(app, ["run", "--model", "regnety_002", "--random-weights", "--data", str(demo_val),
                                 "--masks", str(seg_folder / "val" / "masks"), "--out", str(tmp_path)])
    assert_user_error(result, "--masks", "segmenters")
    result = runner.invoke(app, ["run", "--model", "lraspp_mobilenet_v3_small", "--random-weights",
                                 "--data", str(seg_folder / "val" / "images"), "--metric", "miou", "--out", str(tmp_path)])
    assert_user_error(result, "--metric miou", "--masks")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- the demo


def test_segmentation_demo_searches_and_finetunes_offline(tmp_path):
    result = runner.invoke(app, ["run", "--demo", "segmentation", "--out", str(tmp_path), "--n-trials", "10"])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "run.yaml").is_file()]
    data = tmp_path / "demo-segmentation-data"
    assert {p.name for p in (data / "val").iterdir()} >= {"images", "masks"} and (data / "train" / "masks").is_dir()
    blocks = pd.read_csv(run_dir / "sensitivity.csv")["block"].unique()
    assert "classifier.scale" in blocks and len(blocks) == 7  # six SE blocks and the head's pool branch
    front = pd.read_csv(run_dir / "pareto.csv")
    assert front["score"].is_monotonic_increasing and front["buffer"].is_monotonic_increasing
    assert (front["score"] == front["miou"]).all() and {"pixel_accuracy", "pseudo_miou", "fidelity"} <= set(front)
    assert "miou" in (run_dir / "best.yaml").read_text()
    assert (front["drop_ci_low"] <= front["drop_ci_high"]).all()
    holdout = yaml.safe_load((run_dir / "holdout.yaml").read_text())
    assert holdout["uniform_7xW"]["buffer"] > holdout["best"]["buffer"] and len(holdout["best"]["drop_ci"]) == 2
    metrics = json.loads((run_dir / "final" / "metrics.json").read_text())
    assert metrics["metric"] == "miou" and metrics["held_out_images"] == 400
    assert metrics["se_score"] > 0.6 and metrics["buffer"] <= 0.2 * metrics["se_buffer"]


def test_demo_choices_are_checked(tmp_path):
    assert_user_error(runner.invoke(app, ["run", "--demo", "detection", "--out", str(tmp_path)]), "'detection'",
                      "segmentation")
    assert_user_error(runner.invoke(app, ["run", "--demo", "segmentation", "--model", "regnety_002",
                                          "--out", str(tmp_path)]), "--demo")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------- segmentation_models_pytorch


def test_smp_models_are_found_with_their_encoder_se_blocks_and_aspp_pooling():
    pytest.importorskip("segmentation_models_pytorch", reason="the smp extra is not installed")
    result = runner.invoke(app, ["buffer", "smp:DeepLabV3Plus/tu-mobilenetv3_large_100", "--input-size", "128x256",
                                 "--json"])
    assert result.exit_code == 0, result.output
    names = [block["name"] for block in json.loads(result.stdout)["blocks"]]
    assert any(name.startswith("encoder.") for name in names) and "decoder.aspp.0.convs.4" in names
    model = randomize_(create_model("smp:Unet/tu-efficientnet_b0", num_classes=3))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        original = model(x)
        assert torch.equal(apply_tiles(model, "GAP")(x), original)
    assert_user_error(runner.invoke(app, ["buffer", "smp:Foo/tu-efficientnet_b0"]), "'smp:Foo/tu-efficientnet_b0'", "unet")


def test_a_one_channel_segmenter_is_scored_as_two_classes(tmp_path):
    pytest.importorskip("segmentation_models_pytorch", reason="the smp extra is not installed")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, 2, (64, 64)).astype(np.uint8)).save(tmp_path / "masks" / f"{i}.png")
    from tilesearch.scoring import evaluate_segmentation

    score = evaluate_segmentation("smp:Unet/tu-efficientnet_b0", tmp_path / "images", "1x1", tmp_path / "masks",
                                  random_weights=True, input_size=64)
    assert 0 <= score["miou"] <= 1 and 0 <= score["pseudo_miou"] <= 1 and score["fidelity"] >= 0
    pretrained = runner.invoke(app, ["eval", "--model", "smp:Unet/tu-efficientnet_b0", "--data", str(tmp_path / "images"),
                                     "--tile", "GAP"])
    assert_user_error(pretrained, "encoder weights only", "--checkpoint")


def test_batches_are_capped_by_input_pixels():
    from tilesearch.scoring import segmentation_batch_size

    assert segmentation_batch_size(64, (1024, 2048)) == 1  # Cityscapes: one image per forward
    assert segmentation_batch_size(256, (520, 520)) == 7
    assert segmentation_batch_size(64, (64, 96)) == 64  # small inputs keep the requested batch


def test_a_segmenter_finetune_takes_masks_not_annotations(seg_folder, tmp_path):
    out = tmp_path / "runs"
    assert runner.invoke(app, _seg_args(seg_folder, out) + ["--n-trials", "2", "--val-subset", "6",
                                                           "--strategy", "sampler"]).exit_code == 0
    (run_dir,) = out.iterdir()
    train = str(seg_folder / "train" / "images")
    assert_user_error(runner.invoke(app, ["finetune", str(run_dir), "--train-data", train, "--train-annotations", "x.json"]),
                      "--train-annotations is for detectors", "segmenter")
    assert_user_error(runner.invoke(app, ["finetune", str(run_dir), "--train-data", train]), "--train-masks")
    assert not (run_dir / "final").exists()
