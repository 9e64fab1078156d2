"""COCO data, mAP against hand-built cases, and the detection scorer on EfficientDet."""

import json

import numpy as np
import pytest
import torch
import yaml
from coco_fixture import write_coco_fixture
from conftest import randomize_

from tilesearch import TilesearchError, create_model
from tilesearch.data import decode_detection_images, detection_targets, load_coco
from tilesearch.scoring import DetectionScorer, coco_map
from tilesearch.zoo import load_checkpoint


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_coco_fixture(tmp_path_factory.mktemp("coco"), n_images=6, seed=3)


def ground_truth_rows(coco, image_id, shift=0.0, score=0.9):
    rows = []
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        x, y, w, h = ann["bbox"]
        rows.append([x + shift, y + shift, x + w + shift, y + h + shift, score, ann["category_id"]])
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


def test_map_of_perfect_shifted_and_missing_detections(fixture):
    images_dir, annotations = fixture
    coco = load_coco(images_dir, annotations)
    ids = sorted(coco.imgs)
    perfect = {i: ground_truth_rows(coco, i) for i in ids}
    assert coco_map(coco, perfect, ids) == (pytest.approx(1.0), pytest.approx(1.0))
    shifted = {i: ground_truth_rows(coco, i, shift=6.0) for i in ids}
    shifted_map, shifted_map50 = coco_map(coco, shifted, ids)
    assert 0.0 < shifted_map < 1.0 and shifted_map <= shifted_map50
    assert coco_map(coco, {}, ids) == (0.0, 0.0)
    wrong_class = {i: np.where(np.arange(6) == 5, 3 - rows, rows) for i, rows in perfect.items()}
    assert coco_map(coco, wrong_class, ids)[0] == 0.0


def test_fixture_is_deterministic(tmp_path):
    a = write_coco_fixture(tmp_path / "a", 3, seed=1)
    b = write_coco_fixture(tmp_path / "b", 3, seed=1)
    assert json.loads(a[1].read_text()) == json.loads(b[1].read_text())
    assert (a[0] / "000001.png").read_bytes() == (b[0] / "000001.png").read_bytes()


def test_bad_coco_inputs(fixture, tmp_path):
    images_dir, annotations = fixture
    with pytest.raises(TilesearchError, match="does not exist"):
        load_coco(images_dir, tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(TilesearchError, match="not JSON"):
        load_coco(images_dir, bad)
    other = write_coco_fixture(tmp_path / "other", 9, seed=4)[1]
    with pytest.raises(TilesearchError, match="missing, e.g. '000007.png'"):
        load_coco(images_dir, other)


@torch.no_grad()
def test_detection_scorer_on_efficientdet(fixture):
    images_dir, annotations = fixture
    coco = load_coco(images_dir, annotations)
    torch.manual_seed(0)
    model = randomize_(create_model("efficientdet_d0", num_classes=2, input_size=(128, 128)))
    images = decode_detection_images(images_dir, coco, sorted(coco.imgs), (128, 128), (0.485, 0.456, 0.406))
    assert images.pixels.shape == (6, 3, 128, 128) and images.scales[0] == pytest.approx(160 / 128)
    scorer = DetectionScorer(model, images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), ground_truth=coco,
                             pseudo_threshold=0.0)  # random weights score every box about 0.01
    se = scorer.score("GAP")
    assert se.pseudo_map == pytest.approx(1.0) and se.total == 6 and 0.0 <= se.map <= 1.0
    assert scorer.score("1x1").pseudo_map < 1.0


def test_eval_command_scores_a_detector(fixture):
    from conftest import assert_user_error
    from typer.testing import CliRunner

    from tilesearch.cli import app

    images_dir, annotations = fixture
    runner = CliRunner()
    args = ["eval", "--model", "efficientdet_d0", "--data", str(images_dir), "--input-size", "128", "--num-classes", "2",
            "--random-weights"]
    result = runner.invoke(app, args + ["--annotations", str(annotations), "--tile", "7xW", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 6 and 0.0 <= data["map"] <= 1.0 and 0.0 <= data["pseudo_map"] <= 1.0
    assert data["buffer"] < data["se_buffer"]
    assert_user_error(runner.invoke(app, args + ["--tile", "7xW"]), "--annotations")
    assert_user_error(runner.invoke(app, args + ["--annotations", str(images_dir / "none.json"), "--tile", "GAP"]),
                      "does not exist")
    classifier = ["eval", "--model", "regnety_002", "--data", str(images_dir), "--annotations", str(annotations),
                  "--tile", "GAP"]
    assert_user_error(runner.invoke(app, classifier), "for detectors", "'regnety_002'")


def test_detector_search_with_annotations_and_label_free(fixture, tmp_path):
    from conftest import assert_user_error
    from typer.testing import CliRunner

    from tilesearch.cli import app
    from tilesearch.search import load_study_of_run, read_run_file

    images_dir, annotations = fixture
    runner = CliRunner()
    base = ["run", "--model", "efficientdet_d0", "--random-weights", "--input-size", "128", "--num-classes", "2",
            "--data", str(images_dir), "--val-subset", "4", "--n-trials", "3", "--buffer-budget", "90%", "--out", str(tmp_path)]
    result = runner.invoke(app, base + ["--annotations", str(annotations), "--study-name", "a"])
    assert result.exit_code == 0, result.output
    document = read_run_file(tmp_path / "a")
    assert document["settings"]["metric"] == "map"
    trials = load_study_of_run(document).get_trials()
    assert len(trials) == 3 and all(0.0 <= t.user_attrs["map"] <= 1.0 for t in trials)
    assert (tmp_path / "a" / "best.yaml").is_file()
    holdout = yaml.safe_load((tmp_path / "a" / "holdout.yaml").read_text())  # the 2 images outside --val-subset
    assert holdout["images"] == 2 and holdout["metric"] == "map" and 0 <= holdout["best"]["map"] <= 1
    assert "held-out (2 images): map SE" in result.output.replace("\n", " ")

    train_dir, train_annotations = write_coco_fixture(tmp_path / "train", n_images=6, seed=11)
    assert_user_error(runner.invoke(app, ["finetune", str(tmp_path / "a"), "--train-data", str(train_dir)]),
                      "--train-annotations")
    result = runner.invoke(app, ["finetune", str(tmp_path / "a"), "--train-data", str(train_dir), "--train-annotations",
                                 str(train_annotations), "--epochs", "3", "--train-subset", "1.0", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "a" / "final" / "metrics.json").read_text())
    assert metrics["metric"] == "map" and metrics["train_images"] == 6 and metrics["held_out_images"] == 2
    assert metrics["se_score"] == pytest.approx(holdout["se"]["map"])  # scored in eval mode, before any training
    assert metrics["losses"][-1] < metrics["losses"][0]  # effdet's loss falls on the drawn boxes
    model = create_model("efficientdet_d0", num_classes=2, input_size=(128, 128))
    before = model.state_dict()["class_net.predict.conv_pw.weight"].clone()
    load_checkpoint(model, tmp_path / "a" / "final" / "model.safetensors")
    assert not torch.equal(model.state_dict()["class_net.predict.conv_pw.weight"], before)

    result = runner.invoke(app, ["export", str(tmp_path / "a"), "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    exported = json.loads((tmp_path / "export" / "export.json").read_text())
    assert exported["weights"].startswith("fine-tuned") and exported["onnx_max_abs_diff"] < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [f"class_{i}" for i in range(5)] + [f"box_{i}" for i in range(5)]
    assert session.get_inputs()[0].shape == [1, 3, 128, 128]

    # No annotations: pseudo-mAP against SE, which random weights cannot give (no detection scores 0.3)
    assert_user_error(runner.invoke(app, base + ["--study-name", "p"]), "detects nothing", "--metric fidelity")
    result = runner.invoke(app, base + ["--study-name", "f", "--metric", "fidelity"])
    assert result.exit_code == 0, result.output
    study = load_study_of_run(read_run_file(tmp_path / "f"))
    assert study.user_attrs["settings"]["metric"] == "fidelity"
    values = {t.user_attrs["baseline"]: t.values[0] for t in study.get_trials() if "baseline" in t.user_attrs}
    assert values["SE"] == 0.0 and values["7xW"] > 0.0

    assert_user_error(runner.invoke(app, base + ["--metric", "map"]), "--annotations")
    assert_user_error(runner.invoke(app, base + ["--study-name", "t", "--train-data", str(train_dir)]), "--train-annotations")
    assert not (tmp_path / "t").exists()  # refused before the search started
    assert_user_error(runner.invoke(app, base + ["--val-subset", "0"]), "validation subset 0")
    assert_user_error(runner.invoke(app, ["sensitivity", "--model", "efficientdet_d0", "--data", str(images_dir)]),
                      "for classifiers")
    other = write_coco_fixture(tmp_path / "other", 9, seed=4)[1]
    assert_user_error(runner.invoke(app, base + ["--annotations", str(other)]), "do not match the images")
    demo = ["run", "--model", "tilesearch_demo_net", "--pretrained", "--data", str(images_dir), "--annotations",
            str(annotations), "--out", str(tmp_path)]
    assert_user_error(runner.invoke(app, demo), "for detectors")


@pytest.mark.slow
def test_flagship_efficientdet_d2_at_768_runs_end_to_end(tmp_path):
    """`tilesearch run --model efficientdet_d2 --buffer-budget 5M` on a drawn COCO set, CPU, random weights."""
    from typer.testing import CliRunner

    from tilesearch.cli import app
    from tilesearch.search import read_run_file

    images_dir, annotations = write_coco_fixture(tmp_path / "coco", 3, seed=0, size=(320, 256))
    result = CliRunner().invoke(app, ["run", "--model", "efficientdet_d2", "--buffer-budget", "5M", "--random-weights",
                                      "--data", str(images_dir),
                                      "--annotations", str(annotations), "--val-subset", "2", "--n-trials", "2",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "efficientdet_d2-map-5M"
    document = read_run_file(run_dir)
    assert document["preprocessing"]["input_size"] == [768, 768]
    assert document["se_buffer"] == 43_600_896 and document["budget_elements"] == 5_000_000  # paper: 50.8M SE
    from tilesearch.core import load_config

    assert load_config(run_dir / "best.yaml").totals["buffer"] <= 5_000_000


def test_training_targets_are_boxes_in_input_pixels_and_flips_mirror_them(tmp_path):
    """A flipped batch's loss equals the loss of the mirrored image file with mirrored boxes."""
    from PIL import Image

    from tilesearch.data import Preprocessing
    from tilesearch.deploy import detection_loss

    images_dir, annotations = write_coco_fixture(tmp_path / "a", n_images=2, seed=5, size=(128, 96))
    coco = load_coco(images_dir, annotations)
    mirrored_dir = tmp_path / "b"
    mirrored_dir.mkdir()
    data = json.loads(annotations.read_text())
    for image in data["images"]:
        Image.open(images_dir / image["file_name"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored_dir / image["file_name"])
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        annotation["bbox"] = [128 - x - w, y, w, h]
    (tmp_path / "b.json").write_text(json.dumps(data))
    mirrored = load_coco(mirrored_dir, tmp_path / "b.json")

    mean = (0.485, 0.456, 0.406)
    images = decode_detection_images(images_dir, coco, [1, 2], (128, 128), mean)  # width fits: padding only below
    boxes, classes = detection_targets(coco, images)
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    x, y, w, h = first[0]["bbox"]
    assert boxes[0, 0].tolist() == [y, x, y + h, x + w] and classes[0, 0] == first[0]["category_id"]
    assert (classes[0, len(first):] == -1).all()
    half = decode_detection_images(images_dir, coco, [1, 2], (64, 64), mean)  # resized to half: boxes halve too
    assert half.scales.tolist() == [2.0, 2.0] and detection_targets(coco, half)[0][0, 0].tolist() == [y / 2, x / 2, (y + h) / 2, (x + w) / 2]

    flipped_images = decode_detection_images(mirrored_dir, mirrored, [1, 2], (128, 128), mean)
    assert torch.equal(flipped_images.pixels, images.pixels.flip(-1))
    model = create_model("efficientdet_d0", num_classes=2, input_size=(128, 128))
    preprocessing = Preprocessing((128, 128), "bilinear", 1.0, "resize-pad", mean, (0.229, 0.224, 0.225))
    loss_of = detection_loss(model, images, boxes, classes, preprocessing.normalize, torch.device("cpu"))
    loss_of_mirrored = detection_loss(model, flipped_images, *detection_targets(mirrored, flipped_images),
                                      preprocessing.normalize, torch.device("cpu"))
    index = torch.tensor([0, 1])
    model.eval()  # no dropout or drop-path: the two losses are then comparable
    with torch.no_grad():
        flipped = loss_of(index, torch.tensor([True, True]))
        assert torch.allclose(flipped, loss_of_mirrored(index, torch.tensor([False, False])), atol=1e-5)
        assert not torch.allclose(flipped, loss_of(index, torch.tensor([False, False])), atol=1e-3)


def test_random_initialisation_is_seeded():
    """Workers and resumed studies on random weights score the very same model."""
    first, second = (create_model("efficientdet_d0", num_classes=2, input_size=(128, 128)) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    create_model("regnety_002")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone
