"""Shared fixtures: small real models with weights that make SE matter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random affine weights and statistics.

    Freshly built timm/torchvision models zero-initialise the last norm of each
    residual branch, which hides what the SE blocks do; a test that compares a
    tiled and an untiled model must see the SE blocks' effect.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def assert_user_error(result, *fragments) -> None:
    """A CLI result that is a user mistake: exit 2, one stderr line ``error: ...`` naming ``fragments``."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TILESEARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def demo_val(tmp_path_factory) -> Path:
    """A small drawn validation split of the offline demo (20 images per class), shared read-only by the tests."""
    from tilesearch.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo"), "val", 20, seed=5)


def offline_hub(monkeypatch, cache: Path) -> None:
    """What HF_HUB_OFFLINE=1 and HF_HUB_CACHE do, applied to the already imported Hugging Face hub client."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture
def torch_hub_cache(tmp_path, monkeypatch):
    """An empty torch.hub cache that cannot download; ``fill(model_name)`` puts seeded weights of an effdet model
    into it where effdet's own loading looks (its release file name)."""
    from effdet import get_efficientdet_config

    from tilesearch.zoo import load_model

    hub = tmp_path / "torch-hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))

    def fill(model_name: str) -> dict:
        state = randomize_(load_model(model_name, random_weights=True)).state_dict()
        (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save(state, hub / "checkpoints" / get_efficientdet_config(model_name).url.rsplit("/", 1)[1])
        return state

    return fill


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}: the shared fixtures are only beside the project checkout")
    return SHARED


torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
