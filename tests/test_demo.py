"""The offline demo: synthetic dataset, the demo network in the zoo and its committed checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.data import create_transform, resolve_data_config
from timm.layers.squeeze_excite import SEModule
from torchvision.datasets import ImageFolder

import tilesearch
from tilesearch import demo
from tilesearch.zoo import DEMO_MODEL_NAME, create_model, load_model
from tilesearch.zoo._demo import CHECKPOINT, DEMO_INPUT_SIZE, IMAGE_SIZE, MEAN, STD


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.png"))}


def test_same_seed_writes_identical_files(tmp_path):
    first = demo.write_demo_dataset(tmp_path / "a", "val", n_per_class=2, seed=3)
    second = demo.write_demo_dataset(tmp_path / "b", "val", n_per_class=2, seed=3)
    assert _files(first) == _files(second)


@pytest.mark.parametrize(("split", "seed"), [("val", 4), ("train", 3)])
def test_other_seed_or_split_gives_other_images(split, seed):
    images, _ = demo.render_split("val", 2, seed=3)
    other, _ = demo.render_split(split, 2, seed=seed)
    assert not np.array_equal(images, other)


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        demo.write_demo_dataset(tmp_path, "test", n_per_class=1, seed=0)


def test_dataset_is_an_image_folder_of_the_rendered_images(tmp_path):
    folder = demo.write_demo_dataset(tmp_path, "train", n_per_class=3, seed=0)
    dataset = ImageFolder(str(folder))
    images, labels = demo.render_split("train", 3, seed=0)
    assert folder == tmp_path / "train"
    assert dataset.classes == list(demo.CLASSES) and len(demo.CLASSES) == 8
    assert len(dataset) == 3 * len(demo.CLASSES)
    assert [label for _, label in dataset.samples] == labels.tolist()
    for (path, _), image in zip(dataset.samples, images):
        with Image.open(path) as png:
            assert png.mode == "RGB" and png.size == (IMAGE_SIZE, IMAGE_SIZE)
            assert np.array_equal(np.asarray(png), image)  # PNG is lossless


def test_normalisation_matches_the_rendered_images():
    mean, std = demo.dataset_stats(demo.render_split("train", 100, seed=0)[0])
    np.testing.assert_allclose(mean, MEAN, atol=0.02)
    np.testing.assert_allclose(std, STD, atol=0.02)


def test_timm_eval_transform_matches_to_tensor(tmp_path):
    folder = demo.write_demo_dataset(tmp_path, "val", n_per_class=1, seed=0)
    model = create_model(DEMO_MODEL_NAME)
    transform = create_transform(**resolve_data_config(model=model))
    dataset = ImageFolder(str(folder), transform=transform)
    images, _ = demo.render_split("val", 1, seed=0)
    loaded = torch.stack([x for x, _ in dataset])
    torch.testing.assert_close(loaded, demo.to_tensor(images))


def test_demo_network_builds_with_its_se_blocks_and_data_config():
    model = create_model(DEMO_MODEL_NAME, num_classes=3)
    blocks = tilesearch.find_se_modules(model)
    assert len(blocks) == 7 and all(isinstance(module, SEModule) for _, module in blocks)
    assert model(torch.zeros(2, *DEMO_INPUT_SIZE)).shape == (2, 3)
    assert resolve_data_config(model=model)["input_size"] == DEMO_INPUT_SIZE
    assert tilesearch.default_input_size(DEMO_MODEL_NAME) == (IMAGE_SIZE, IMAGE_SIZE)
    assert create_model(DEMO_MODEL_NAME).num_classes == len(demo.CLASSES)


def test_importing_tilesearch_leaves_timm_s_registry_alone():
    import tilesearch.cli  # noqa: F401  (everything, the demo included)

    assert not timm.is_model(DEMO_MODEL_NAME)


def test_checkpoint_loads_strict_with_timm_keys():
    state = load_file(CHECKPOINT)
    model = create_model(DEMO_MODEL_NAME)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    pretrained = load_model(DEMO_MODEL_NAME)
    torch.testing.assert_close(pretrained.state_dict(), model.state_dict())


def test_gap_beats_chance_and_tiny_tiles():
    model = load_model(DEMO_MODEL_NAME)
    images, labels = demo.render_split("val", n_per_class=25, seed=1)
    accuracy = demo.tile_accuracies(model, images, labels, tiles=("GAP", "7xW", "1x1"))
    chance = 1 / len(demo.CLASSES)
    assert accuracy["GAP"] > 4 * chance
    assert accuracy["GAP"] > accuracy["1x1"]
    assert accuracy["7xW"] > accuracy["1x1"]
    assert tilesearch.current_tiles(model) == {name: tilesearch.GAP for name, _ in tilesearch.find_se_modules(model)}
