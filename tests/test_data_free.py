"""Searching without a data set: synthesised images, their cache, label-free fidelity, pretrained weights by default."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.data import (
    DEFAULT_SOURCE,
    ImageSource,
    batchnorm_layers,
    get_source,
    image_sources,
    register_source,
    synthesis_key,
    synthetic_images,
    weights_digest,
)
from tilesearch.data._synthetic import _SOURCES, BatchNormMatchingSource, dead_leaves, pink_noise
from tilesearch.scoring import Scorer, detection_divergence, flatten_maps, kl_divergence
from tilesearch.zoo import DEMO_MODEL_NAME, load_model

from conftest import assert_user_error, randomize_

USER_NETS = Path(__file__).parent / "user_nets" / "se_styles.py"
MEAN, STD = (0.42, 0.42, 0.42), (0.24, 0.24, 0.24)
runner = CliRunner()


@pytest.fixture
def demo_model():
    return load_model(DEMO_MODEL_NAME)


class CountingSource(ImageSource):
    """A source that counts how often it is asked to synthesise."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def synthesise(self, model, count, size, mean, std, seed, device, progress):
        self.calls += 1
        return torch.full((count, 3, *size), seed % 256, dtype=torch.uint8)


@pytest.fixture
def counting_source():
    source = register_source(CountingSource())
    yield source
    _SOURCES.pop(source.name)


# --- the sources ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["noise", "procedural"])
def test_cheap_sources_are_seeded_uint8_images_at_the_size(source, demo_model):
    make = get_source(source).synthesise
    first = make(demo_model, 6, (40, 56), MEAN, STD, 3, torch.device("cpu"), lambda n: None)
    assert first.dtype == torch.uint8 and first.shape == (6, 3, 40, 56)
    assert torch.equal(first, make(demo_model, 6, (40, 56), MEAN, STD, 3, torch.device("cpu"), lambda n: None))
    assert not torch.equal(first, make(demo_model, 6, (40, 56), MEAN, STD, 4, torch.device("cpu"), lambda n: None))
    assert len(torch.unique(first)) > 100  # not a flat image


def test_procedural_images_have_the_models_normalisation_statistics():
    pixels = get_source("procedural").synthesise(None, 16, (64, 64), MEAN, STD, 0, torch.device("cpu"), lambda n: None)
    values = pixels.float() / 255
    assert abs(values.mean().item() - MEAN[0]) < 0.03
    assert abs(values.std().item() - STD[0]) < 0.05  # clipping at 0 and 255 takes a little of the spread


def test_dead_leaves_are_piecewise_constant_and_pink_noise_has_a_falling_spectrum():
    generator = torch.Generator().manual_seed(0)
    leaves = dead_leaves(2, (64, 64), generator)
    same_as_right = (leaves[..., 1:] == leaves[..., :-1]).float().mean()
    assert same_as_right > 0.7  # occluding disks: most neighbours share a colour
    field = pink_noise(4, (64, 64), generator)
    power = torch.fft.rfft2(field).abs().pow(2).mean((0, 1))
    assert power[1:3, 1:3].mean() > 20 * power[20:30, 20:30].mean()


def test_batchnorm_matching_loss_goes_down_and_leaves_the_model_as_it_was(demo_model):
    before = {key: value.clone() for key, value in demo_model.state_dict().items()}
    losses: list[float] = []
    start = torch.randn((16, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    BatchNormMatchingSource().optimise(demo_model, start, MEAN, STD, torch.device("cpu"), steps=25, losses=losses)
    assert len(losses) == 25
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(torch.equal(value, before[key]) for key, value in demo_model.state_dict().items())
    assert all(p.requires_grad for p in demo_model.parameters()) and not demo_model.training


def test_batchnorm_matching_refuses_a_network_without_batchnorm():
    from tilesearch.zoo import create_model

    model = create_model(f"{USER_NETS}:build_without_batchnorm")
    assert not batchnorm_layers(model)
    with pytest.raises(Exception, match="no BatchNorm layer .* use --data-source procedural"):
        get_source("synthetic-bn").check(model)


def test_an_unknown_source_lists_the_known_ones():
    with pytest.raises(Exception, match="unknown data source 'dreams': expected one of synthetic-bn, procedural, noise"):
        get_source("dreams")
    assert image_sources()[:3] == ["synthetic-bn", "procedural", "noise"]


# --- the cache -----------------------------------------------------------------------------------------------------


def test_the_cache_key_changes_with_each_thing_the_images_depend_on():
    base = dict(model_name="m", weights="w", size=(64, 64), mean=MEAN, std=STD, source="noise", count=8, seed=0)
    key = synthesis_key(**base)
    assert synthesis_key(**base) == key
    changes = dict(model_name="n", weights="v", size=(64, 32), mean=(0.5, 0.42, 0.42), std=(0.2, 0.24, 0.24),
                   source="procedural", count=9, seed=1)
    keys = {name: synthesis_key(**{**base, name: value}) for name, value in changes.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(keys)


def test_the_weights_digest_sees_any_change_of_weights(demo_model):
    digest = weights_digest(demo_model)
    assert weights_digest(load_model(DEMO_MODEL_NAME)) == digest
    with torch.no_grad():
        next(demo_model.parameters())[0].flatten()[0] += 1e-3
    assert weights_digest(demo_model) != digest


def test_synthetic_images_are_made_once_per_key_and_read_back(tmp_path, demo_model, counting_source):
    def make(model, seed=0):
        return synthetic_images(model, DEMO_MODEL_NAME, "counting", 4, (64, 64), MEAN, STD, seed=seed,
                                cache_dir=tmp_path, show_progress=False)

    first = make(demo_model)
    (cached,) = tmp_path.glob("synthetic-counting-*.pt")
    assert counting_source.calls == 1
    assert torch.equal(make(demo_model), first) and counting_source.calls == 1  # read back
    make(demo_model, seed=1)
    assert counting_source.calls == 2
    with torch.no_grad():
        next(demo_model.parameters()).mul_(2)
    make(demo_model)  # other weights, other images
    assert counting_source.calls == 3
    cached.write_bytes(b"truncated")
    with pytest.warns(Warning, match="cannot be read"):
        make(load_model(DEMO_MODEL_NAME))  # a corrupt cache file is a miss, made again
    assert counting_source.calls == 4


# --- fidelity ------------------------------------------------------------------------------------------------------


def test_classifier_fidelity_is_the_kl_of_the_logits_by_hand():
    reference = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    logits = torch.tensor([[math.log(3.0), 0.0], [2.0, 0.0]])
    # p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2
    expected = 0.5 * math.log(2 / 3) + 0.5 * math.log(2)
    torch.testing.assert_close(kl_divergence(reference, logits), torch.tensor([expected, 0.0]))


def test_detection_divergence_by_hand():
    # one image, two anchors, one class: SE is sure of anchor 0 (p = 0.5) and anchor 1 is background (p ~ 0)
    ref_classes = torch.tensor([[[0.0], [-30.0]]])
    ref_boxes = torch.zeros((1, 2, 4))
    classes = torch.tensor([[[math.log(3.0)], [-30.0]]])  # q = 3/4 on anchor 0
    boxes = torch.tensor([[[1.0, 0.0, 0.0, -1.0], [9.0, 9.0, 9.0, 9.0]]])  # anchor 1's boxes barely count
    class_kl = (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) / 2  # per anchor
    p1 = torch.sigmoid(torch.tensor(-30.0)).item()
    box = (0.5 * 2 + p1 * 36) / (0.5 + p1)
    result = detection_divergence((ref_classes, ref_boxes), (classes, boxes))
    torch.testing.assert_close(result, torch.tensor([class_kl + box]))
    assert detection_divergence((ref_classes, ref_boxes), (ref_classes, ref_boxes)).item() == 0.0


def test_flatten_maps_orders_anchors_and_classes_as_effdet_does():
    from effdet.bench import _post_process

    generator = torch.Generator().manual_seed(0)
    classes = [torch.randn((2, 3 * 5, 4, 4), generator=generator), torch.randn((2, 3 * 5, 2, 2), generator=generator)]
    boxes = [torch.randn((2, 3 * 4, 4, 4), generator=generator), torch.randn((2, 3 * 4, 2, 2), generator=generator)]
    flat_classes, flat_boxes = flatten_maps(classes, boxes, num_classes=5)
    top_classes, top_boxes, anchors, labels = _post_process(classes, boxes, num_levels=2, num_classes=5,
                                                            max_detection_points=10)
    torch.testing.assert_close(torch.gather(flat_boxes, 1, anchors.unsqueeze(2).expand(-1, -1, 4)), top_boxes)
    torch.testing.assert_close(flat_classes[torch.arange(2).unsqueeze(1), anchors, labels].unsqueeze(2), top_classes)


def test_detector_fidelity_is_zero_for_se_and_grows_as_tiles_shrink(torch_hub_cache):
    from tilesearch.data import DetectionImages
    from tilesearch.scoring import DetectionScorer

    torch_hub_cache("efficientdet_d0")
    model = load_model("efficientdet_d0", input_size=(128, 128))
    pixels = get_source("procedural").synthesise(model, 4, (128, 128), MEAN, STD, 0, torch.device("cpu"), lambda n: None)
    images = DetectionImages(pixels, [1, 2, 3, 4], torch.ones(4), torch.tensor([[128, 128]] * 4))
    scorer = DetectionScorer(model, images, MEAN, STD, keep_outputs=True, batch_size=2)
    se, coarse, fine = scorer.score("GAP"), scorer.score("3xW"), scorer.score("1x1")
    assert se.fidelity == 0.0 and 0.0 < coarse.fidelity < fine.fidelity
    assert DetectionScorer(model, images, MEAN, STD).score("1x1").fidelity is None  # not asked for: not kept


def test_classifier_scores_on_synthetic_images_carry_fidelity(demo_model):
    from tilesearch.data import ImageSet, resolve_preprocessing

    preprocessing = resolve_preprocessing(demo_model, None, None, None, None, None)
    pixels = get_source("procedural").synthesise(demo_model, 16, (64, 64), MEAN, STD, 0, torch.device("cpu"), lambda n: None)
    scorer = Scorer(demo_model, ImageSet(pixels, torch.full((16,), -1), []), preprocessing)
    se, tiled = scorer.score("GAP").to_dict(), scorer.score("1x1").to_dict()
    assert se["fidelity"] == 0.0 and tiled["fidelity"] == tiled["kl"] > 0


# --- the command ---------------------------------------------------------------------------------------------------


def run(*args):
    return runner.invoke(app, ["run", *args])


def test_a_detector_searches_without_data_on_a_seeded_weight_cache(tmp_path, torch_hub_cache):
    """The issue's done-when, smaller: efficientdet_d0, pretrained weights from the cache, no --data."""
    torch_hub_cache("efficientdet_d0")
    result = run("--model", "efficientdet_d0", "--input-size", "128", "--buffer-budget", "50%", "--n-trials", "3",
                 "--val-subset", "4", "--data-source", "procedural", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "efficientdet_d0 at 128x128: 16 attention blocks; buffer SE" in text and "uniform 7xW" in text
    assert "weights: effdet pretrained weights (efficientdet_d0-f3276ba8.pth)" in text
    assert "4 images synthesised by procedural" in text and "metric fidelity" in text
    assert "no held-out accuracy exists" in text and "RANDOM" not in text
    run_dir = tmp_path / "efficientdet_d0-procedural-fidelity-50pct"
    document = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert document["settings"]["data"] is None and document["settings"]["metric"] == "fidelity"
    assert "synthesised by procedural" in document["scored_on"]
    assert "no held-out accuracy" in yaml.safe_load((run_dir / "holdout.yaml").read_text())["note"]
    assert len(list((run_dir / "cache").glob("synthetic-procedural-*.pt"))) == 1


def test_a_classifier_checkpoint_searches_without_data_and_resumes_on_the_cached_images(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from tilesearch.zoo import create_model

    checkpoint = tmp_path / "net.safetensors"
    save_file(randomize_(create_model("regnety_002", num_classes=10)).state_dict(), str(checkpoint))
    args = ["--model", "regnety_002", "--checkpoint", str(checkpoint), "--num-classes", "10", "--input-size", "64",
            "--val-subset", "16", "--space", "uniform", "--n-trials", "3", "--data-source", "procedural",
            "--out", str(tmp_path)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert f"weights: checkpoint {checkpoint}" in " ".join(result.stdout.split())
    run_dir = tmp_path / "regnety_002-procedural-uniform-fidelity"
    assert (run_dir / "pareto.png").is_file() and (run_dir / "best.yaml").is_file()

    def no_more(*_args, **_kwargs):
        raise AssertionError("synthesised again instead of read from the run folder's cache")

    monkeypatch.setattr(type(get_source("procedural")), "synthesise", no_more)
    resumed = runner.invoke(app, ["resume", str(run_dir), "--n-trials", "1"])
    assert resumed.exit_code == 0, resumed.output


def test_random_weights_are_said_everywhere(tmp_path):
    result = run("--model", DEMO_MODEL_NAME, "--random-weights", "--val-subset", "8", "--space", "uniform",
                 "--n-trials", "2", "--data-source", "noise", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "weights: RANDOM weights" in text and "note: RANDOM weights" in text
    assert "noise ranked configs at Spearman" in text  # the benchmark's verdict on the source, said by the run
    run_dir = next(tmp_path.glob("tilesearch_demo_net-*"))
    document = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert document["weights"].startswith("RANDOM") and any("RANDOM" in c for c in document["caveats"])
    assert document["settings"]["random_weights"] is True


def test_pretrained_weights_missing_offline_is_one_line_with_the_way_out(tmp_path, torch_hub_cache):
    result = run("--model", "efficientdet_d0", "--input-size", "128", "--out", str(tmp_path))
    assert_user_error(result, "efficientdet_d0-f3276ba8.pth", "torch-hub", "--checkpoint FILE", "--random-weights")
    assert not tmp_path.joinpath("efficientdet_d0-procedural-fidelity").exists()


def test_the_flagship_command_as_typed_prints_its_plan_then_refuses_to_randomise(tmp_path):
    """effdet publishes no efficientdet_d2 weights: the plan still shows, then one line, never random weights."""
    result = run("--model", "efficientdet_d2", "--buffer-budget", "5M", "--out", str(tmp_path))
    assert_user_error(result, "no pretrained weights for efficientdet_d2", "tf_efficientdet_d2", "--random-weights")
    text = " ".join(result.stdout.split())
    assert ("efficientdet_d2 at 768x768: 23 attention blocks; buffer SE 43.601M, uniform 7xW 4.185M elements; "
            "budget 5.000M (11.5% of SE)") in text  # the paper's D2 at 768, and the 43.6M and 4.19M
    assert f"32 images synthesised by {DEFAULT_SOURCE}" in text and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--data-source", "dreams"], ["unknown data source 'dreams'", "procedural"]),
        (["--metric", "accuracy"], ["--metric accuracy needs labelled --data", "fidelity"]),
        (["--annotations", "x.json"], ["--annotations is for detectors"]),
        (["--holdout", "somewhere"], ["--holdout describes images of --data"]),
        (["--data-source", "noise", "--data", "somewhere"], ["--data-source noise synthesises images when no --data"]),
        (["--val-subset", "0"], ["invalid validation subset 0"]),
        (["--checkpoint", "x.pth", "--random-weights"], ["either --random-weights or --checkpoint"]),
    ],
)
def test_bad_data_free_settings_are_one_line(tmp_path, args, fragments):
    assert_user_error(run("--model", DEMO_MODEL_NAME, *args, "--out", str(tmp_path)), *fragments)
    assert not any(tmp_path.iterdir())


def test_detector_metric_map_without_data_is_one_line(tmp_path):
    assert_user_error(run("--model", "efficientdet_d0", "--metric", "map", "--random-weights", "--out", str(tmp_path)),
                      "--metric map needs labelled --data")


def test_synthetic_bn_on_a_network_without_batchnorm_names_procedural(tmp_path):
    result = run("--model", f"{USER_NETS}:build_without_batchnorm", "--data-source", "synthetic-bn",
                 "--out", str(tmp_path))
    assert_user_error(result, "no BatchNorm layer", "--data-source procedural")


def test_data_without_model_and_source_for_the_demo_are_refused(tmp_path):
    assert_user_error(run("--data", "somewhere", "--out", str(tmp_path)), "--data needs --model")
    assert_user_error(run("--data-source", "noise", "--out", str(tmp_path)), "offline demo", "--data-source")
    assert_user_error(run("--random-weights", "--out", str(tmp_path)), "offline demo", "--random-weights")
