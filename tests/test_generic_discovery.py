"""Generic discovery: channel-attention blocks found from their own graph, and timm's global-context blocks.

Every tiled output is checked against the slow, obvious reference: a block's own forward run on
the tile alone (its global pool then sees exactly that tile).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
from conftest import randomize_
from torch import nn

from tilesearch.core import GAP, TilesearchError, TilesearchWarning, buffer_report, load_profile, parse_tile
from tilesearch.nn import apply_tiles, discover_se_blocks, find_se_modules, flavour_of

sys.path.insert(0, str(Path(__file__).parent / "user_nets"))
import se_styles  # noqa: E402


def reference_tiled(block: nn.Module, x: torch.Tensor, tile_h: int, tile_w: int) -> torch.Tensor:
    """The block's own forward on each tile alone, pasted back: what tiled channel attention means."""
    out = None
    for top in range(0, x.shape[-2], tile_h):
        for left in range(0, x.shape[-1], tile_w):
            window = (..., slice(top, top + tile_h), slice(left, left + tile_w))
            piece = block(x[window])
            if out is None:  # a block may change the channels (SplitAttn sums its radix splits)
                out = piece.new_empty(piece.shape[:-2] + x.shape[-2:])
            out[window] = piece
    return out


def random_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values for every parameter, so no zero-initialised layer hides what a block's gate does."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return randomize_(model, seed)


def unzero_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Small random values for the parameters timm initialises to zero (GCNet's last context layer, say)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(scope="module")
def styled_net() -> nn.Module:
    torch.manual_seed(0)
    return random_weights_(se_styles.build()).eval()


def test_every_hand_written_style_is_found_with_no_registration(styled_net):
    found = {type(module).__name__: flavour_of(module).family for _, module in find_se_modules(styled_net)}
    assert found == {style.__name__: "generic" for style in se_styles.STYLES}


def test_buffer_totals_match_the_shapes_hooks_see(styled_net):
    """SE buffers the whole input of each block; a 3x3 tile buffers 3 x 3 x C (ideal) or 3 rows (row-stationary)."""
    seen = []
    handles = [module.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape[1:])))
               for module in styled_net.modules() if isinstance(module, se_styles.STYLES)]
    with torch.no_grad():
        styled_net(torch.zeros(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    blocks = discover_se_blocks(styled_net, 64)
    assert [(b.channels, b.height, b.width) for b in blocks] == seen
    assert buffer_report(blocks, GAP, load_profile("ideal")).se_total == sum(c * h * w for c, h, w in seen)
    assert buffer_report(blocks, parse_tile("3x3"), load_profile("ideal")).total == sum(
        c * min(h, 3) * min(w, 3) for c, h, w in seen)
    assert buffer_report(blocks, parse_tile("3x3"), load_profile("row-stationary")).total == sum(
        c * min(h, 3) * w for c, h, w in seen)


@pytest.mark.parametrize("style", se_styles.STYLES, ids=lambda style: style.__name__)
@pytest.mark.parametrize("tile", ["1x1", "2x2", "3x3", "4xW", "Hx5", "GAP"])
def test_each_style_tiles_like_its_own_forward_on_each_tile(style, tile):
    torch.manual_seed(1)
    block = random_weights_(style(12)).eval()
    x = torch.randn(2, 12, 10, 9)  # 3x3 and Hx5 leave partial tiles at the edges
    with torch.no_grad():
        expected = reference_tiled(block, x, *parse_tile(tile).resolve(10, 9))
        tiled = apply_tiles(block, tile)
        actual = tiled(x)
    if tile == "GAP":
        assert torch.equal(actual, expected)  # the block's own code: bit-identical
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(actual, block(x), atol=1e-3)  # and it is not GAP any more


@torch.no_grad()
def assert_gap_identical_and_1x1_changes(model: nn.Module, side: int = 64, change: float = 1e-3) -> None:
    """GAP runs each block's own code (bit-identical); a 1x1 tile changes the network's output."""
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    expected = model(x)
    apply_tiles(model, "GAP")
    assert torch.equal(model(x), expected)
    apply_tiles(model, "1x1")
    assert (model(x) - expected).abs().max() > change
    apply_tiles(model, "GAP")


def test_gap_is_bit_identical_and_a_small_tile_changes_the_network(styled_net):
    assert_gap_identical_and_1x1_changes(styled_net, change=1e-2)


class ScaledByWidthSE(nn.Module):
    """Reads the input's width inside its gate: traceable, but its one-pixel reconstruction is not the block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)) * x.shape[-1])


class UntraceableSE(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        if x.shape[-1] > 1:  # data-dependent control flow: torch.fx cannot trace it
            x = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        return x


class ResidualGate(nn.Module):
    """Pools globally but adds: not a gate on its input."""

    def forward(self, x):
        return x + x.mean((2, 3), keepdim=True)


def test_a_block_failing_the_gap_check_is_reported_and_left_as_it_is():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), ScaledByWidthSE(8), nn.Conv2d(8, 8, 1), se_styles.ConvSE(8))
    with pytest.warns(TilesearchWarning, match=r"block 1 \(ScaledByWidthSE\) is left as it is: .*differs"):
        blocks = discover_se_blocks(model, 16)
    assert [block.name for block in blocks] == ["3"]
    assert [name for name, _ in find_se_modules(model)] == ["3"]  # tiles never reach the refused block
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected_first = model[1](model[0](x))
        apply_tiles(model, "1x1")
        assert torch.equal(model[1](model[0](x)), expected_first)


def test_a_model_without_a_tileable_block_says_which_pools_it_saw_and_why():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), UntraceableSE(8), ResidualGate(), se_styles.build_plain())
    with pytest.raises(TilesearchError) as error:
        discover_se_blocks(model, 32)
    message = str(error.value)
    assert "torch.fx could not trace 1 (UntraceableSE)" in message and "register_flavour" in message
    assert "2 (ResidualGate): its output is neither its input multiplied by a gate nor computed from global pools alone" in message
    assert "3 (StyledNet)" in message and "\n" not in message


def test_without_any_global_pool_the_error_says_so():
    with pytest.raises(TilesearchError, match="no module's forward pools its input globally"):
        discover_se_blocks(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), 16)


# ---------------------------------------------------------------------------- timm's global-context blocks


@pytest.mark.parametrize(("name", "kind", "count"), [
    ("gcresnet50t", "GlobalContext", 16),
    ("skresnet18", "SelectiveKernelAttn", 8),
    ("resnest14d", "SplitAttn", 4),
])
def test_timm_global_context_networks_are_discovered_gap_identical_and_tileable(name, kind, count):
    model = randomize_(unzero_(timm.create_model(name)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TilesearchWarning)  # every block passes its GAP check
        blocks = discover_se_blocks(model, 64)
    assert len(blocks) == count and {block.kind.split(" ")[0] for block in blocks} == {kind}
    assert_gap_identical_and_1x1_changes(model)


def test_global_context_attention_pools_softmax_weighted_per_tile():
    from timm.layers.global_context import GlobalContext

    torch.manual_seed(0)
    block = random_weights_(GlobalContext(16, fuse_add=True, fuse_scale=True)).eval()
    x = torch.randn(2, 16, 9, 10)
    with torch.no_grad():
        expected = reference_tiled(block, x, 4, 3)
        torch.testing.assert_close(apply_tiles(block, "4x3")(x), expected, rtol=1e-5, atol=1e-5)


def test_selective_kernel_weights_are_per_tile():
    from timm.layers.selective_kernel import SelectiveKernelAttn

    torch.manual_seed(0)
    attn = random_weights_(SelectiveKernelAttn(16, num_paths=2, attn_channels=8)).eval()
    paths = torch.randn(2, 2, 16, 7, 6)
    with torch.no_grad():
        expected = torch.empty(2, 2, 16, 7, 6)
        for top in range(0, 7, 3):
            for left in range(0, 6, 4):
                window = (..., slice(top, top + 3), slice(left, left + 4))
                expected[window] = attn(paths[window]).expand_as(expected[window])
        torch.testing.assert_close(apply_tiles(attn, "3x4")(paths), expected, rtol=1e-5, atol=1e-6)


def test_split_attention_is_tiled_after_its_convolution():
    from timm.layers.split_attn import SplitAttn

    torch.manual_seed(0)
    block = random_weights_(SplitAttn(8, 16, stride=2, radix=2, norm_layer=nn.BatchNorm2d)).eval()
    x = torch.randn(2, 8, 14, 12)
    blocks = discover_se_blocks(nn.Sequential(nn.Conv2d(3, 8, 1), block), (14, 12))
    assert (blocks[0].channels, blocks[0].height, blocks[0].width) == (32, 7, 6)  # radix x C after the stride
    # Reference: the same block with its convolution stage made the identity, run per tile of that stage's output.
    import copy
    attention_only = copy.deepcopy(block)
    attention_only.conv, attention_only.bn0, attention_only.act0 = nn.Identity(), nn.Identity(), nn.Identity()
    with torch.no_grad():
        features = block.act0(block.bn0(block.conv(x)))
        expected = reference_tiled(attention_only, features, 2, 4)
        torch.testing.assert_close(apply_tiles(block, "2x4")(x), expected, rtol=1e-5, atol=1e-6)


def test_cbam_channel_attention_is_found_generically_with_both_pools_per_tile():
    from timm.layers import create_attn

    torch.manual_seed(0)
    cbam = random_weights_(create_attn("cbam", 16)).eval()
    assert [name for name, _ in find_se_modules(cbam)] == ["channel"]  # the spatial gate pools over channels only
    assert flavour_of(cbam.channel).family == "generic"
    x = torch.randn(2, 16, 8, 7)
    with torch.no_grad():
        expected = reference_tiled(cbam.channel, x, 3, 3)
        apply_tiles(cbam, "3x3")
        torch.testing.assert_close(cbam.channel(x), expected, rtol=1e-5, atol=1e-6)


def test_gather_excite_is_tiled_with_a_global_extent_and_refused_with_a_learned_gather():
    from timm.layers.gather_excite import GatherExcite

    torch.manual_seed(0)
    block = random_weights_(GatherExcite(16, extent=0, use_mlp=False, add_maxpool=True)).eval()
    x = torch.randn(2, 16, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(apply_tiles(block, "4x4")(x), reference_tiled(block, x, 4, 4), rtol=1e-5, atol=1e-6)
    learned = GatherExcite(16, extent=0, use_mlp=False)
    # What extra_params=True builds (timm's own builder for it is broken in this version): a global depthwise conv.
    learned.gather = nn.Sequential(nn.Conv2d(16, 16, 8, groups=16), nn.BatchNorm2d(16))
    with pytest.raises(TilesearchError, match="learned depthwise convolution"):
        discover_se_blocks(nn.Sequential(nn.Conv2d(3, 16, 1), learned), 8)


def test_onnx_export_of_every_kind_of_tiled_block_matches_pytorch(tmp_path):
    """Partial edge tiles (3x3 on 20x20 and 10x10 maps) through GC, SK, SplitAttn and generic blocks."""
    from timm.layers.global_context import GlobalContext
    from timm.layers.selective_kernel import SelectiveKernel
    from timm.layers.split_attn import SplitAttn

    from tilesearch.deploy import export_onnx, onnx_parity

    torch.manual_seed(0)
    model = randomize_(unzero_(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), GlobalContext(16, fuse_add=True, fuse_scale=True), SelectiveKernel(16, 16),
        SplitAttn(16, 16, stride=2, radix=2, norm_layer=nn.BatchNorm2d), se_styles.LinearSE(16),
        se_styles.KeepdimMaxSE(16),
    )))
    assert len(discover_se_blocks(model, 20)) == 5
    apply_tiles(model, "3x3")
    export_onnx(model, tmp_path / "model.onnx", (20, 20))
    assert onnx_parity(model, tmp_path / "model.onnx", torch.randn(2, 3, 20, 20)) < 1e-4
