"""The segmentation demo: its drawn data set, its LR-ASPP network and the weights shipped with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from tilesearch.demo._seg_dataset import (
    BACKGROUND,
    IGNORE_INDEX,
    SEG_CLASSES,
    _split_rng,
    draw_scene,
    mirror_scene,
    render_segmentation_split,
    sample_scene,
    write_segmentation_folder,
)
from tilesearch.demo._seg_train import _augment, evaluate_tiles, train_demo_segmenter
from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._demo_segmenter import (
    CHECKPOINT,
    DEMO_SEGMENTER_NAME,
    IMAGE_SIZE,
    METADATA,
    NUM_CLASSES,
    DemoSegmenterZoo,
    demo_segmenter,
)


@pytest.fixture(scope="module")
def shipped() -> nn.Module:
    return load_checkpoint(demo_segmenter(), CHECKPOINT).eval()


def test_splits_are_deterministic_per_seed():
    images, masks = render_segmentation_split("val", 6, seed=3)
    again_images, again_masks = render_segmentation_split("val", 6, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(masks, again_masks)
    assert images.shape == (6, *IMAGE_SIZE, 3) and images.dtype == np.uint8
    assert masks.shape == (6, *IMAGE_SIZE) and masks.dtype == np.uint8
    assert masks.max() < NUM_CLASSES == len(SEG_CLASSES) and SEG_CLASSES[BACKGROUND] == "background"
    assert not np.array_equal(images, render_segmentation_split("val", 6, seed=4)[0])
    assert not np.array_equal(images, render_segmentation_split("train", 6, seed=3)[0])
    with pytest.raises(ValueError, match="unknown split"):
        render_segmentation_split("test", 1, 0)


def test_a_mirrored_scene_draws_the_mirrored_image_and_mask():
    rng = _split_rng("train", 11)
    for _ in range(8):
        scene = sample_scene(rng)
        image, mask = draw_scene(scene)
        mirrored_image, mirrored_mask = draw_scene(mirror_scene(scene))
        np.testing.assert_array_equal(mirrored_image, image[:, ::-1])
        np.testing.assert_array_equal(mirrored_mask, mask[:, ::-1])


def test_masks_label_the_pixels_that_show_each_object():
    rng = _split_rng("val", 5)
    for _ in range(8):
        scene = sample_scene(rng)
        image, mask = draw_scene(scene)
        covered = np.zeros(mask.shape, bool)
        for obj in scene.objects:
            covered |= obj.mask()
        assert (mask[~covered] == BACKGROUND).all() and (mask[covered] != BACKGROUND).all()
        top = scene.objects[-1]  # painted last, so wholly visible
        inside = top.mask()
        assert inside.sum() > 100 and (mask[inside] == top.label).all()
        expected = np.clip(np.asarray(top.reflectance) * scene.light, 0, 1) * 255
        assert np.abs(np.median(image[inside].astype(float), axis=0) - expected).max() < 6  # the object's lit colour


def test_segmentation_folder_pairs_images_and_masks(tmp_path):
    root = write_segmentation_folder(tmp_path / "seg", "val", 3, seed=2)
    images, masks = render_segmentation_split("val", 3, seed=2)
    stems = sorted(path.stem for path in (root / "images").glob("*.png"))
    assert stems == sorted(path.stem for path in (root / "masks").glob("*.png")) and len(stems) == 3
    np.testing.assert_array_equal(np.asarray(Image.open(root / "images" / f"{stems[1]}.png")), images[1])
    saved = Image.open(root / "masks" / f"{stems[1]}.png")
    assert saved.mode == "L"
    np.testing.assert_array_equal(np.asarray(saved), masks[1])


def test_training_flips_flip_the_masks_with_the_images():
    masks = torch.from_numpy(render_segmentation_split("train", 8, seed=0)[1]).long()
    images = masks[:, None].float().repeat(1, 3, 1, 1)  # an image that is its mask
    flipped_images, flipped_masks = _augment(images, masks, torch.Generator().manual_seed(1))
    assert torch.equal(flipped_images[:, 0].long(), flipped_masks)
    assert not torch.equal(flipped_masks, masks)  # some were flipped


def test_the_network_is_an_lraspp_with_se_blocks_and_a_scale_branch():
    model = demo_segmenter()
    assert 50_000 <= sum(p.numel() for p in model.parameters()) <= 150_000
    scale = model.classifier.scale
    assert [type(m) for m in scale] == [nn.AdaptiveAvgPool2d, nn.Conv2d, nn.Sigmoid]
    assert scale[0].output_size in (1, (1, 1))
    assert sum(isinstance(m, SqueezeExcitation) for m in model.backbone.modules()) == 6
    with torch.no_grad():
        out = model.eval()(torch.zeros(2, 3, *IMAGE_SIZE))
    assert list(out) == ["out"] and out["out"].shape == (2, NUM_CLASSES, *IMAGE_SIZE)
    assert model.pretrained_cfg["input_size"] == (3, *IMAGE_SIZE)


def test_zoo_builds_the_segmenter():
    zoo = DemoSegmenterZoo()
    assert zoo.task == "segmenter" and zoo.names() == [DEMO_SEGMENTER_NAME] and zoo.owns(DEMO_SEGMENTER_NAME)
    assert zoo.default_input_size(DEMO_SEGMENTER_NAME) == IMAGE_SIZE == (64, 96)
    assert zoo.create(DEMO_SEGMENTER_NAME, 3, None).classifier.low_classifier.out_channels == 3
    reheaded = zoo.pretrained(DEMO_SEGMENTER_NAME, 5, None)
    assert reheaded.classifier.high_classifier.out_channels == 5 and reheaded.pretrained_cfg["num_classes"] == 5


def test_training_is_deterministic(tmp_path):
    first = train_demo_segmenter(tmp_path / "a.safetensors", seed=1, n_train=2, epochs=1, batch_size=2)
    second = train_demo_segmenter(tmp_path / "b.safetensors", seed=1, n_train=2, epochs=1, batch_size=2)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "a.safetensors").is_file()


def test_shipped_weights_need_the_global_pool(shipped):
    assert CHECKPOINT.stat().st_size < 1_000_000
    images, masks = render_segmentation_split("val", 60, seed=0)
    mious = evaluate_tiles(shipped, images, masks, ("GAP", "1x1"))
    assert mious["GAP"] > 0.4 and mious["GAP"] > mious["1x1"] + 0.1, mious
    zoo_model = DemoSegmenterZoo().pretrained(DEMO_SEGMENTER_NAME, None, None)
    for a, b in zip(shipped.state_dict().values(), zoo_model.state_dict().values()):
        assert torch.equal(a, b)


def test_metadata_describes_the_shipped_weights():
    metadata = json.loads(METADATA.read_text())
    assert metadata["model"] == DEMO_SEGMENTER_NAME and metadata["classes"] == list(SEG_CLASSES)
    assert metadata["input_size"] == [3, *IMAGE_SIZE]
    miou = metadata["zero_shot_miou"]
    assert miou["GAP"] >= miou["7xW"] - 0.02 and miou["GAP"] > miou["1x1"] + 0.1
    assert "--rebuild" in metadata["rebuild"]
