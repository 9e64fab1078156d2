import itertools
import random

import pytest

from tilesearch.core import TilesearchError
from tilesearch.search import (
    FrontPoint,
    Option,
    best_within,
    pareto_front,
)


def random_blocks(seed: int, n_blocks: int, n_choices: int, max_buffer: int = 100, integer_drops: bool = False):
    rng = random.Random(seed)
    blocks = []
    for _ in range(n_blocks):
        width = rng.randint(1, n_choices)
        if integer_drops:
            # small exact values in binary floating point make ties frequent and exact
            blocks.append([Option(f"t{j}", rng.randint(0, max_buffer), rng.randint(-2, 3) * 0.25) for j in range(width)])
        else:
            blocks.append([Option(f"t{j}", rng.randint(0, max_buffer), rng.uniform(-0.5, 2.0)) for j in range(width)])
    return blocks


def totals(blocks, choices):
    """Sums in block order, as the DP adds them (so floats compare exactly)."""
    buffer, drop = 0, 0.0
    for options, choice in zip(blocks, choices):
        buffer += options[choice].buffer
        drop += options[choice].drop
    return buffer, drop


def brute_front(blocks):
    """Pareto front by enumerating every config in lexicographic order; first found wins ties."""
    best: dict[tuple[int, float], tuple[int, ...]] = {}
    for choices in itertools.product(*(range(len(options)) for options in blocks)):
        best.setdefault(totals(blocks, choices), choices)
    front = []
    for (buffer, drop), choices in sorted(best.items()):
        if not front or drop < front[-1][1]:
            front.append((buffer, drop, choices))
    return front


def check_front(blocks, front):
    expected = brute_front(blocks)
    assert [(p.buffer, p.drop) for p in front] == [(b, d) for b, d, _ in expected]
    for point in front:
        assert totals(blocks, point.choices) == (point.buffer, point.drop)
        assert point.tiles == tuple(blocks[i][c].tile for i, c in enumerate(point.choices))
    return expected


@pytest.mark.parametrize("seed", range(8))
def test_front_matches_brute_force_on_random_instances(seed):
    check_front(random_blocks(seed, n_blocks=5, n_choices=4), pareto_front(random_blocks(seed, 5, 4)))


@pytest.mark.parametrize("seed", range(6))
def test_front_with_ties_keeps_the_lexicographically_first_config(seed):
    blocks = random_blocks(100 + seed, n_blocks=5, n_choices=4, max_buffer=6, integer_drops=True)
    front = pareto_front(blocks)
    expected = check_front(blocks, front)
    assert [p.choices for p in front] == [choices for _, _, choices in expected]


def test_front_is_sorted_by_buffer_with_strictly_decreasing_drop():
    front = pareto_front(random_blocks(7, n_blocks=6, n_choices=4))
    assert all(a.buffer < b.buffer and a.drop > b.drop for a, b in itertools.pairwise(front))


def test_negative_drops():
    blocks = [
        [Option("GAP", 10, 0.0), Option("7xW", 5, -0.3), Option("1xW", 1, 0.4)],
        [Option("GAP", 20, 0.0), Option("7xW", 8, 0.1), Option("3x3", 2, -0.1)],
        [Option("GAP", 4, 0.0), Option("1xW", 1, -1.0)],
    ]
    front = check_front(blocks, pareto_front(blocks))
    assert front[-1][1] < 0


def test_single_block():
    blocks = [[Option("GAP", 9, 0.0), Option("7xW", 5, 0.5), Option("5xW", 5, 0.4), Option("1xW", 1, 2.0), Option("Hx7", 6, 0.6)]]
    front = pareto_front(blocks)
    assert [(p.buffer, p.drop, p.tiles) for p in front] == [(1, 2.0, ("1xW",)), (5, 0.4, ("5xW",)), (9, 0.0, ("GAP",))]


def test_equal_buffers_and_exact_duplicates():
    blocks = [
        [Option("a", 3, 0.5), Option("b", 3, 0.5), Option("c", 3, 0.25)],
        [Option("a", 1, 0.5), Option("b", 1, 0.5)],
    ]
    front = pareto_front(blocks)
    assert [(p.buffer, p.drop, p.choices) for p in front] == [(4, 0.75, (2, 0))]
    check_front(blocks, front)


def test_no_blocks():
    assert pareto_front([]) == [FrontPoint(0, 0.0, (), ())]


@pytest.mark.parametrize(
    "option, message",
    [(Option("x", -1, 0.0), "buffer"), (Option("x", 1.5, 0.0), "buffer"), (Option("x", 1, float("nan")), "drop")],
)
def test_invalid_options_are_rejected(option, message):
    with pytest.raises(TilesearchError, match=message):
        pareto_front([[Option("GAP", 1, 0.0)], [option]])


def test_empty_block_is_rejected():
    with pytest.raises(TilesearchError, match="no options"):
        pareto_front([[Option("GAP", 1, 0.0)], []])


@pytest.mark.parametrize("seed", range(4))
def test_best_within_is_optimal_and_respects_the_budget(seed):
    blocks = random_blocks(200 + seed, n_blocks=5, n_choices=4)
    front = pareto_front(blocks)
    configs = list(itertools.product(*(range(len(options)) for options in blocks)))
    for budget in range(front[0].buffer, front[-1].buffer + 2, 7):
        point = best_within(front, budget)
        feasible = [totals(blocks, c) for c in configs if totals(blocks, c)[0] <= budget]
        assert point is not None and point.buffer <= budget
        assert point.drop == min(drop for _, drop in feasible)


def test_best_within_returns_none_when_nothing_fits():
    front = pareto_front(random_blocks(3, n_blocks=4, n_choices=3))
    assert best_within(front, front[0].buffer - 1) is None
    assert best_within([], 10**9) is None


def test_efficientnet_b3_sized_instance():
    rng = random.Random(0)
    blocks = [[Option(f"t{j}", rng.randint(1, 10**6), rng.uniform(-0.5, 3.0)) for j in range(9)] for _ in range(26)]
    front = pareto_front(blocks)
    min_buffer = [min(range(9), key=lambda j: options[j].buffer) for options in blocks]
    min_drop = [min(range(9), key=lambda j: options[j].drop) for options in blocks]
    assert front[0].buffer == totals(blocks, min_buffer)[0]
    assert front[-1].drop == pytest.approx(totals(blocks, min_drop)[1])
    assert front[-1].choices == tuple(min_drop)
    assert front[0].choices == tuple(min_buffer)
    for point in front:
        assert point.buffer == totals(blocks, point.choices)[0]
        assert point.drop == pytest.approx(totals(blocks, point.choices)[1])
    assert all(a.buffer < b.buffer and a.drop > b.drop for a, b in itertools.pairwise(front))
