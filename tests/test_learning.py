"""The surrogate that learns from every trial: its refit and its acquisition (a search using it: test_sensitivity)."""

import itertools

import numpy as np
import pytest

from tilesearch.core import SEBlock, buffer_report, get_metric, load_profile, parse_tile
from tilesearch.search import (
    AdditiveSurrogate,
    Measured,
    hypervolume_gain,
    next_config,
    refit,
)

ACCURACY = get_metric("accuracy")
TILES = ("GAP", "7xW", "1x1")


def prior(blocks: int = 4, seed: int = 0) -> AdditiveSurrogate:
    rng = np.random.default_rng(seed)
    drops = {}
    for b in range(blocks):
        drops[(f"b{b}", "GAP")] = 0.0
        drops[(f"b{b}", "7xW")] = float(rng.uniform(0.001, 0.01))
        drops[(f"b{b}", "1x1")] = float(rng.uniform(0.02, 0.08))
    return AdditiveSurrogate(ACCURACY, 0.9, drops)


def all_configs(blocks: int):
    for choice in itertools.product(TILES, repeat=blocks):
        yield {f"b{b}": tile for b, tile in enumerate(choice)}


def test_the_prior_is_kept_until_enough_configs_are_measured():
    surrogate = prior()
    one = Measured({"b0": "1x1", "b1": "GAP", "b2": "GAP", "b3": "GAP"}, 10, 0.5)
    assert refit(surrogate, [one]) is surrogate


def test_refit_recovers_a_superadditive_truth_out_of_sample():
    """The truth: every drop 1.6 times the one-block scan's plus one block's 1x1 a lot worse than scanned."""
    surrogate = prior()
    truth = {key: 1.6 * drop for key, drop in surrogate.drops.items()}
    truth[("b2", "1x1")] += 0.05

    def true_drop(tiles):
        return sum(truth[item] for item in tiles.items())

    configs = list(all_configs(4))
    rng = np.random.default_rng(1)
    train = [configs[i] for i in rng.choice(len(configs), 25, replace=False)]
    measured = [Measured(t, 0, true_drop(t) + rng.normal(0, 0.002)) for t in train]
    learned = refit(surrogate, measured)
    test = [t for t in configs if t not in train]
    prior_error = np.mean([abs(surrogate.predict(t) - (0.9 - true_drop(t))) for t in test])
    learned_error = np.mean([abs(learned.predict(t) - (0.9 - true_drop(t))) for t in test])
    assert learned_error < 0.25 * prior_error
    assert learned.drops[("b2", "1x1")] > surrogate.drops[("b2", "1x1")] + 0.05


def test_refit_of_configs_the_prior_already_predicts_changes_nothing_much():
    surrogate = prior()
    measured = [Measured(t, 0, 0.9 - surrogate.predict(t)) for t in list(all_configs(4))[:30]]
    learned = refit(surrogate, measured)
    for key, drop in surrogate.drops.items():
        assert learned.drops[key] == pytest.approx(drop, abs=1e-6)


def test_hypervolume_gain_of_hand_built_points():
    front_buffers, front_drops = np.array([2.0, 6.0]), np.array([0.5, 0.2])
    # The box reaches (10, 1). A point at (4, 0.1) adds the strip below 0.5 from 4 to 6 and below 0.2 from 6 to 10.
    gains = hypervolume_gain(np.array([4.0, 7.0, 1.0]), np.array([0.1, 0.3, 0.9]), front_buffers, front_drops, (10.0, 1.0))
    assert gains[0] == pytest.approx((6 - 4) * (0.5 - 0.1) + (10 - 6) * (0.2 - 0.1))
    assert gains[1] == 0.0  # dominated by (6, 0.2)
    assert gains[2] == pytest.approx((2 - 1) * (1.0 - 0.9))
    empty = hypervolume_gain(np.array([4.0]), np.array([0.1]), np.array([]), np.array([]), (10.0, 1.0))
    assert empty[0] == pytest.approx(6 * 0.9)


def _blocks(count: int) -> list[SEBlock]:
    return [SEBlock(name=f"b{b}", stage=b, kind="SqueezeExcite", channels=16 * (b + 1), height=14, width=14,
                    excite_macs=0) for b in range(count)]


def test_next_config_proposes_the_largest_gain_and_never_a_measured_config():
    blocks, surrogate = _blocks(3), prior(3)
    choices = {block.name: [parse_tile(t) for t in TILES] for block in blocks}
    profile = load_profile("ideal")
    measured, seen = [], set()
    for _ in range(8):
        proposal = next_config(surrogate, choices, blocks, profile, None, measured,
                               excluded=lambda tiles: tuple(sorted(tiles.items())) in seen)
        if proposal is None:
            break
        tiles, gain = proposal
        key = tuple(sorted(tiles.items()))
        assert key not in seen and gain > 0
        seen.add(key)
        measured.append(Measured(tiles, buffer_report(blocks, tiles, profile).total, 0.9 - surrogate.predict(tiles)))
    assert len(seen) >= 4
    budget = min(m.buffer for m in measured if m.drop > 0) + 1
    tiles, _ = next_config(surrogate, choices, blocks, profile, budget, [], excluded=lambda tiles: False)
    assert buffer_report(blocks, tiles, profile).total <= budget
