"""Segmentation data (pairing, decoding, the cache, flips) and the segmentation scorer against hand-built cases."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from tilesearch.core import DataError
from tilesearch.data import (
    SegmentationSet,
    decode_segmentation,
    flip_images,
    flip_masks,
    segmentation_pairs,
)
from tilesearch.data import _segmentation
from tilesearch.scoring import (
    SegmentationScorer,
    confusion_matrix,
    miou,
    pixel_accuracy,
    segmentation_logits,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


def write_pair(images, masks, stem, size=(8, 12), label=1, image_suffix="", mask_suffix="", seed=0):
    """An RGB image (height, width) = size and its one-label mask."""
    rng = np.random.default_rng(seed)
    write_png(images / f"{stem}{image_suffix}.png", rng.integers(0, 256, (*size, 3)))
    write_png(masks / f"{stem}{mask_suffix}.png", np.full(size, label))


# --- scores ------------------------------------------------------------------------------------------------------


def test_confusion_matrix_miou_and_pixel_accuracy_by_hand():
    targets = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    predictions = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])  # the last two pixels are ignored
    expected = torch.tensor([
        [1, 1, 0],  # target 0: one right, one predicted 1
        [0, 2, 0],  # target 1: both right
        [1, 0, 1],  # target 2: one right, one predicted 0
    ])
    confusion = confusion_matrix(predictions, targets, num_classes=3)
    assert confusion.dtype == torch.int64
    assert torch.equal(confusion, expected)
    # IoU: class 0 = 1 / (1 + 1 + 1), class 1 = 2 / (2 + 1 + 0), class 2 = 1 / (1 + 0 + 1)
    assert miou(confusion) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(confusion) == pytest.approx(4 / 6)


def test_miou_leaves_out_classes_absent_from_target_and_prediction():
    confusion = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), num_classes=4)
    assert miou(confusion) == 1.0  # classes 2 and 3 appear nowhere: not counted
    assert math.isnan(miou(torch.zeros(3, 3, dtype=torch.long)))
    assert math.isnan(pixel_accuracy(torch.zeros(3, 3, dtype=torch.long)))


def test_confusion_matrix_refuses_a_label_outside_the_classes():
    with pytest.raises(DataError, match="label 7 .* 3"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), num_classes=3)


def test_segmentation_logits_accepts_a_tensor_and_torchvision_dict():
    logits = torch.zeros(1, 3, 4, 4)
    assert segmentation_logits(logits) is logits
    assert segmentation_logits({"out": logits, "aux": None}) is logits
    with pytest.raises(ValueError, match="tuple"):
        segmentation_logits((logits,))


class TinySegmenter(nn.Module):
    """conv -> SqueezeExcitation -> 1x1 conv to K classes, at half the input resolution (upsampled by the scorer)."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, stride=2)
        self.se = SqueezeExcitation(8, 4)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return {"out": self.head(self.se(torch.relu(self.stem(x))))}


def tiny_set(n=4, size=(16, 24), num_classes=3, labelled=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, *size), generator=generator, dtype=torch.uint8)
    masks = torch.randint(0, num_classes, (n, *size), generator=generator).to(torch.uint8) if labelled else None
    if masks is not None:
        masks[:, 0] = 255  # an ignored row
    return SegmentationSet(pixels, masks, [f"img{i}" for i in range(n)], num_classes=num_classes)


def seeded_model(seed=0):
    torch.manual_seed(seed)
    model = TinySegmenter()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4)  # strong excitation: tiles change the output
    return model


def test_scorer_gap_is_its_own_reference_and_a_tile_moves_away():
    scorer = SegmentationScorer(seeded_model(), tiny_set(), MEAN, STD, batch_size=3, device="cpu")
    assert scorer.block_names == ["se"]
    se = scorer.score("GAP")
    assert se.pseudo_miou == 1.0 and se.fidelity == 0.0 and se.total == 4
    assert 0.0 <= se.miou <= 1.0 and 0.0 <= se.pixel_accuracy <= 1.0
    tiled = scorer.score("1x1")
    assert tiled.pseudo_miou < 1.0 and tiled.fidelity > 0.0
    assert set(tiled.to_dict()) == {"miou", "pixel_accuracy", "pseudo_miou", "fidelity", "total"}


def test_scorer_gap_pass_matches_a_recomputed_gap_pass_and_without_masks_gives_nan():
    scorer = SegmentationScorer(seeded_model(), tiny_set(labelled=False), MEAN, STD, batch_size=2, device="cpu")
    se = scorer.score("GAP")
    assert math.isnan(se.miou) and math.isnan(se.pixel_accuracy)
    assert se.pseudo_miou == 1.0
    recomputed = scorer.score({"se": "HxW"})  # GAP spelled as a tile: served from the SE pass
    assert recomputed == se
    batches = list(scorer.batches())
    assert len(batches) == 2 and batches[0][1] is None and batches[0][0].dtype == torch.float32
    stages = list(scorer.score_stages("1x1", looks=[1]))  # the first image, then all, the first not forwarded twice
    assert [len(stage.per_image) for stage in stages] == [1, len(scorer.images)]
    full = scorer.score("1x1")
    np.testing.assert_allclose(stages[1].per_image.values, full.per_image.values)
    np.testing.assert_allclose(stages[0].per_image.values, full.per_image.values[:1])


def test_se_reference_keeps_uint8_argmax_at_full_size_and_pooled_float16_log_probs():
    scorer = SegmentationScorer(seeded_model(), tiny_set(n=2, size=(300, 520)), MEAN, STD, device="cpu")
    predictions, log_probs, _ = scorer._se_pass
    assert predictions.shape == (2, 300, 520) and predictions.dtype == torch.uint8
    assert log_probs.dtype == torch.float16 and log_probs.shape[1] == 3
    assert log_probs.shape[2] <= 128 and log_probs.shape[3] <= 256  # the model's 150 x 260 output, pooled
    assert torch.allclose(log_probs.float().exp().sum(1), torch.ones(1), atol=1e-2)  # renormalised
    assert 0.0 < scorer.score("1x1").fidelity < math.inf


def test_scorer_refuses_a_model_with_another_class_count():
    scorer = SegmentationScorer(seeded_model(), tiny_set(num_classes=5), MEAN, STD, device="cpu")
    with pytest.raises(DataError, match="outputs 3 classes .* 5"):
        scorer.score("GAP")


# --- flips -------------------------------------------------------------------------------------------------------


def test_flip_masks_mirrors_exactly_the_flagged_masks():
    masks = torch.arange(3 * 2 * 4).reshape(3, 2, 4)
    flip = torch.tensor([True, False, True])
    flipped = flip_masks(masks, flip)
    assert torch.equal(flipped[0], masks[0].flip(-1))
    assert torch.equal(flipped[1], masks[1])
    assert torch.equal(flipped[2], masks[2].flip(-1))
    assert torch.equal(flip_masks(masks, flip, dim=-2)[0], masks[0].flip(-2))


def test_flipping_image_and_mask_together_keeps_them_aligned():
    masks = torch.randint(0, 3, (4, 5, 7), dtype=torch.uint8)
    pixels = masks[:, None].repeat(1, 3, 1, 1) * 80  # every pixel's colour tells its label
    flip = torch.tensor([True, False, True, False])
    images, labels = flip_images(pixels, flip), flip_masks(masks, flip)
    assert torch.equal(images[:, 0] // 80, labels)
    assert not torch.equal(labels, masks)


# --- pairing and decoding ----------------------------------------------------------------------------------------


def test_pairs_in_plain_layout(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ("b", "a"):
        write_pair(images / "sub", masks, stem)
    pairs = segmentation_pairs(images, masks)
    assert [(image.name, mask.name) for image, mask in pairs] == [("a.png", "a.png"), ("b.png", "b.png")]
    assert [mask for _, mask in segmentation_pairs(images, None)] == [None, None]


def test_pairs_in_cityscapes_layout(tmp_path):
    images, masks = tmp_path / "leftImg8bit" / "val", tmp_path / "gtFine" / "val"
    stem = "frankfurt_000000_000294"
    write_pair(images / "frankfurt", masks / "frankfurt", stem,
               image_suffix="_leftImg8bit", mask_suffix="_gtFine_labelTrainIds")
    for other in ("color", "instanceIds", "labelIds"):
        write_png(masks / "frankfurt" / f"{stem}_gtFine_{other}.png", np.zeros((8, 12)))
    [(image, mask)] = segmentation_pairs(images, masks)
    assert image.name == f"{stem}_leftImg8bit.png" and mask.name == f"{stem}_gtFine_labelTrainIds.png"
    decoded = decode_segmentation([(image, mask)], (4, 6))
    assert decoded.names == [stem]


def test_missing_masks_are_named(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ("a", "b", "c", "d", "e"):
        write_pair(images, masks, stem)
    for stem in ("a", "b", "c", "d"):
        (masks / f"{stem}.png").unlink()
    with pytest.raises(DataError, match=r"4 of 5 images have no mask .*'a', 'b', 'c', \.\.\.") as error:
        segmentation_pairs(images, masks)
    assert "\n" not in str(error.value)


def test_empty_or_missing_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'.*empty' holds no images"):
        segmentation_pairs(tmp_path / "empty", None)
    write_pair(tmp_path / "images", tmp_path / "masks", "a")
    with pytest.raises(DataError, match="masks folder '.*nowhere' does not exist"):
        segmentation_pairs(tmp_path / "images", tmp_path / "nowhere")


def test_a_mask_of_another_size_is_refused(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    write_pair(images, masks, "a")
    write_png(masks / "a.png", np.zeros((9, 12)))
    with pytest.raises(DataError, match=r"mask '.*a\.png' is 12x9 but its image is 12x8"):
        decode_segmentation(segmentation_pairs(images, masks), (4, 6))


def test_a_label_above_the_class_count_is_refused_but_the_ignore_index_is_not(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    write_pair(images, masks, "a", label=255)
    write_pair(images, masks, "b", label=1)
    pairs = segmentation_pairs(images, masks)
    decoded = decode_segmentation(pairs, (4, 6), num_classes=3)
    assert decoded.masks.dtype == torch.uint8 and set(decoded.masks.unique().tolist()) == {1, 255}
    write_pair(images, masks, "b", label=7)
    with pytest.raises(DataError, match=r"'.*b\.png' holds label 7, but there are 3 classes.*ignore index 255"):
        decode_segmentation(pairs, (4, 6), num_classes=3)


def test_decode_resizes_whole_images_and_nearest_masks(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    write_pair(images, masks, "a", size=(8, 12))
    label_map = np.zeros((8, 12))
    label_map[:, 6:] = 2
    write_png(masks / "a.png", label_map)
    decoded = decode_segmentation(segmentation_pairs(images, masks), (4, 6))
    assert decoded.pixels.shape == (1, 3, 4, 6) and decoded.pixels.dtype == torch.uint8
    assert torch.equal(decoded.masks[0], torch.tensor([[0, 0, 0, 2, 2, 2]] * 4, dtype=torch.uint8))
    assert len(decoded) == 1 and decoded.skipped == []


def test_decode_uses_its_cache_without_reading_files(tmp_path, monkeypatch):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem in ("a", "b"):
        write_pair(images, masks, stem, label=2)
    pairs = segmentation_pairs(images, masks)
    first = decode_segmentation(pairs, (4, 6), cache_dir=tmp_path / "cache", num_classes=3)

    def refuse(*_):
        raise AssertionError("a file was decoded again")

    monkeypatch.setattr(_segmentation, "_read_image", refuse)
    monkeypatch.setattr(_segmentation, "_read_mask", refuse)
    again = decode_segmentation(pairs, (4, 6), cache_dir=tmp_path / "cache", num_classes=3)
    assert torch.equal(again.pixels, first.pixels) and torch.equal(again.masks, first.masks)
    assert again.names == ["a", "b"] and again.num_classes == 3
    with pytest.raises(AssertionError, match="decoded again"):  # another recipe is another cache entry
        decode_segmentation(pairs, (4, 8), cache_dir=tmp_path / "cache", num_classes=3)
