"""Paired bootstrap intervals of a config's drop versus SE: known answers, direction, and width with more images."""

import numpy as np
import pytest
import torch

from tilesearch.core import get_metric
from tilesearch.scoring import PerImage, drop_interval
from tilesearch.scoring._classifier import PER_IMAGE_SCORES
from tilesearch.scoring._segmenter import _PerImageRows


def classifier_samples(right: np.ndarray, kl: np.ndarray | None = None) -> PerImage:
    kl = np.zeros(len(right)) if kl is None else kl
    return PerImage(np.stack([right, right, kl, kl, np.ones(len(right))], 1).astype(float), PER_IMAGE_SCORES)


def test_a_hand_built_pair_gives_the_binomial_interval():
    se = np.ones(400)
    config = se.copy()
    config[:40] = 0  # 10% of the images lost: drop 0.10, standard error sqrt(0.1 * 0.9 / 400) = 0.015
    low, high = drop_interval(get_metric("accuracy"), classifier_samples(se), classifier_samples(config))
    assert low == pytest.approx(0.10 - 1.96 * 0.015, abs=0.006) and high == pytest.approx(0.10 + 1.96 * 0.015, abs=0.006)


def test_identical_predictions_have_a_zero_interval_and_the_pairing_matters():
    rng = np.random.default_rng(0)
    se = (rng.random(300) < 0.7).astype(float)
    assert drop_interval(get_metric("accuracy"), classifier_samples(se), classifier_samples(se)) == (0.0, 0.0)
    # Unpaired, two 70% classifiers would differ by +-7 points; paired, one changed image is a tight interval.
    config = se.copy()
    config[np.flatnonzero(se)[0]] = 0
    low, high = drop_interval(get_metric("accuracy"), classifier_samples(se), classifier_samples(config))
    assert 0 <= low <= 1 / 300 <= high < 0.02


def test_the_interval_shrinks_as_images_are_added():
    widths = []
    for count in (100, 1600):
        rng = np.random.default_rng(1)
        se = (rng.random(count) < 0.8).astype(float)
        config = np.where(rng.random(count) < 0.1, 1 - se, se)
        low, high = drop_interval(get_metric("accuracy"), classifier_samples(se), classifier_samples(config))
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # 16 times the images: about a quarter of the width in theory


def test_a_minimised_metric_counts_a_rise_as_a_drop():
    se, config = classifier_samples(np.ones(50)), classifier_samples(np.ones(50), kl=np.full(50, 0.2))
    assert drop_interval(get_metric("kl"), se, config) == pytest.approx((0.2, 0.2))


def test_miou_resamples_whole_confusion_matrices():
    masks = torch.zeros(40, 4, 4, dtype=torch.long)
    masks[:, :2] = 1
    found = masks.clone()
    found[:10, 0] = 0  # ten images lose a row of class 1
    rows = {}
    for name, predictions in (("se", masks), ("config", found)):
        rows[name] = _PerImageRows(2)
        rows[name].add(predictions, masks, masks, torch.zeros(40, 2, 2), ignore_index=255)
    se, config = rows["se"].per_image(), rows["config"].per_image()
    point = se.scores(se.values.sum(0)[None])["miou"][0] - config.scores(config.values.sum(0)[None])["miou"][0]
    low, high = drop_interval(get_metric("miou"), se, config)
    assert 0 < low < point < high
    assert drop_interval(get_metric("pseudo_miou"), se, se) == (0.0, 0.0)


def test_unpaired_samples_are_refused():
    with pytest.raises(ValueError, match="not paired"):
        drop_interval(get_metric("accuracy"), classifier_samples(np.ones(5)), classifier_samples(np.ones(6)))
