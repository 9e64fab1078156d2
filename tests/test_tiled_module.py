"""The tiled SE block is a real module: swapped in by apply_tiles, picklable, copyable, exportable, compilable."""

import copy
import io

import pytest
import timm
import torch
from conftest import randomize_
from torch import nn

from tilesearch import (
    TilesearchError,
    apply_tiles,
    current_tiles,
    find_se_modules,
    parse_tile,
)
from tilesearch.nn import TiledSqueezeExcite, discover_se_blocks, register_flavour


@pytest.fixture
def tiled_regnet():
    torch.manual_seed(0)
    model = randomize_(timm.create_model("regnety_002"))
    names = [name for name, _ in find_se_modules(model)]
    apply_tiles(model, {names[0]: "7xW", names[1]: "3x3", names[-1]: "Hx2"})
    return model


def test_blocks_are_swapped_for_tiled_modules_with_the_same_state_dict_keys():
    model = randomize_(timm.create_model("regnety_002"))
    keys, state = list(model.state_dict()), copy.deepcopy(model.state_dict())
    apply_tiles(model, "7xW")
    assert all(isinstance(module, TiledSqueezeExcite) for _, module in find_se_modules(model))
    assert list(model.state_dict()) == keys
    untouched = timm.create_model("regnety_002")
    untouched.load_state_dict(model.state_dict())  # a tiled model's checkpoint loads into the plain model
    model.load_state_dict(state)  # and the plain model's into the tiled one
    assert all(torch.equal(model.state_dict()[k], untouched.state_dict()[k]) for k in keys)


@torch.no_grad()
def test_torch_save_load_and_deepcopy_give_the_same_outputs(tiled_regnet):
    x = torch.randn(2, 3, 96, 96)
    expected = tiled_regnet(x)
    buffer = io.BytesIO()
    torch.save(tiled_regnet, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    copied = copy.deepcopy(tiled_regnet)
    torch.testing.assert_close(copied(x), expected, rtol=0, atol=0)
    apply_tiles(copied, "1x1")  # the copy is independent of the original
    torch.testing.assert_close(tiled_regnet(x), expected, rtol=0, atol=0)
    assert current_tiles(loaded) == current_tiles(tiled_regnet)


def test_repr_shows_each_block_s_tile(tiled_regnet):
    text = repr(tiled_regnet)
    assert "tile=7xW, block=SEModule" in text and "tile=3x3" in text and "tile=Hx2" in text
    assert text.count("TiledSqueezeExcite") == len(find_se_modules(tiled_regnet))


def test_retiling_changes_only_the_tile_attribute(tiled_regnet):
    modules = [module for _, module in find_se_modules(tiled_regnet)]
    apply_tiles(tiled_regnet, "1xW")
    assert [module for _, module in find_se_modules(tiled_regnet)] == modules
    assert {str(module.tile) for module in modules} == {"1xW"}


@torch.no_grad()
def test_onnx_export_matches_pytorch(tiled_regnet, tmp_path):
    from tilesearch.deploy import export_onnx, onnx_parity

    export_onnx(tiled_regnet, tmp_path / "model.onnx", (96, 96))
    assert onnx_parity(tiled_regnet, tmp_path / "model.onnx", torch.randn(2, 3, 96, 96)) < 1e-4


@torch.no_grad()
def test_torch_compile_traces_the_tiled_model_whole(tiled_regnet):
    x = torch.randn(2, 3, 96, 96)
    compiled = torch.compile(tiled_regnet, backend="aot_eager", fullgraph=True)  # a graph break fails here
    torch.testing.assert_close(compiled(x), tiled_regnet(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_train_and_eval_reach_the_adopted_block():
    model = timm.create_model("regnety_002").eval()
    apply_tiles(model, "7xW")
    module = find_se_modules(model)[0][1]
    model.train()
    assert module.training and module.block.training and module.fc1.training
    model.eval()
    assert not (module.training or module.block.training or module.fc1.training)


class UserSE(nn.Module):
    """An SE block written in a user's repository, with a shape check that torch.fx cannot trace."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // 2)
        self.expand = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError("expected an NCHW tensor")
        gate = torch.sigmoid(self.expand(torch.relu(self.squeeze(x.mean((2, 3))))))
        return x * gate[:, :, None, None]


def excite_user_se(block: UserSE, pooled: torch.Tensor) -> torch.Tensor:
    """The same excite on every tile: the linear layers act on the channel axis, moved last."""
    s = pooled.permute(0, 2, 3, 1)
    return torch.sigmoid(block.expand(torch.relu(block.squeeze(s)))).permute(0, 3, 1, 2)


@torch.no_grad()
def test_register_flavour_makes_a_user_s_se_class_tileable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), UserSE(8), nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 9, 7)
    with pytest.raises(TilesearchError, match=r"no channel-attention block.*torch.fx could not trace 1 \(UserSE\)"):
        apply_tiles(model, "GAP")
    expected = model(x)
    register_flavour(UserSE, excite_user_se)
    assert [name for name, _ in find_se_modules(model)] == ["1"]
    assert discover_se_blocks(model, (9, 7))[0].kind == "UserSE"
    apply_tiles(model, "GAP")
    torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    apply_tiles(model, "2x3")
    features = model[0](x)
    reference = torch.empty_like(features)  # the slow, obvious tiled SE
    for top in range(0, 9, 2):
        for left in range(0, 7, 3):
            patch = features[:, :, top : top + 2, left : left + 3]
            gate = excite_user_se(model[1].block, patch.mean((2, 3), keepdim=True))
            reference[:, :, top : top + 2, left : left + 3] = patch * gate
    torch.testing.assert_close(model(x), model[2](reference))


@torch.no_grad()
def test_hooks_on_a_block_keep_firing_once_it_is_tiled():
    model = timm.create_model("regnety_002").eval()
    name, block = find_se_modules(model)[0]
    seen = []
    handle = block.register_forward_hook(lambda _m, _i, output: seen.append(output.shape))
    apply_tiles(model, "7xW")
    model(torch.randn(1, 3, 64, 64))
    assert len(seen) == 1
    handle.remove()
    model(torch.randn(1, 3, 64, 64))
    assert len(seen) == 1


def test_a_block_with_a_patched_forward_is_refused_not_skipped():
    model = timm.create_model("regnety_002")
    name, block = find_se_modules(model)[0]
    block.forward = lambda x: x
    with pytest.raises(TilesearchError, match=name):
        apply_tiles(model, "7xW")


def test_a_model_that_is_itself_an_se_block_is_returned_tiled():
    from timm.layers import SEModule

    tiled = apply_tiles(SEModule(16), parse_tile("3x3"))
    assert isinstance(tiled, TiledSqueezeExcite) and str(tiled.tile) == "3x3"


@torch.no_grad()
def test_a_data_parallel_replica_computes_with_its_own_layers(tiled_regnet):
    """nn.DataParallel replicates a module with new dicts and sets each replica's layers into them."""
    name, module = find_se_modules(tiled_regnet)[0]
    replica = module._replicate_for_data_parallel()
    replica.fc1 = copy.deepcopy(module.fc1)  # what replicate() does with the copy on the replica's device
    replica.fc1.weight.zero_()
    x = torch.randn(1, module.fc1.in_channels, 14, 14)
    assert replica.block.fc1 is replica.fc1 and module.block.fc1 is module.fc1
    assert not torch.equal(replica(x), module(x))
