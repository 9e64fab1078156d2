import pytest
import timm
import torch
import torchvision
from conftest import randomize_
from timm.layers import SEModule
from torch import nn

from tilesearch import (
    TilesearchError,
    apply_tiles,
    create_model,
    current_tiles,
    find_se_modules,
    parse_tile,
)
from tilesearch.nn import scale_by_tile, tiled_pool


def reference_tiled_se(x, excite, tile_h, tile_w):
    """Tiled SE written the slow, obvious way: loop over tiles, pool, excite, scale."""
    out = torch.empty_like(x)
    for top in range(0, x.shape[2], tile_h):
        for left in range(0, x.shape[3], tile_w):
            patch = x[:, :, top : top + tile_h, left : left + tile_w]
            gate = excite(patch.mean((2, 3), keepdim=True))
            out[:, :, top : top + tile_h, left : left + tile_w] = patch * gate
    return out


def test_tiled_pool_averages_only_valid_elements_of_edge_tiles():
    x = torch.arange(35.0).reshape(1, 1, 7, 5)
    pooled = tiled_pool(x, 3, 2)
    assert pooled.shape == (1, 1, 3, 3)
    assert pooled[0, 0, 2, 2] == x[0, 0, 6:, 4:].mean()  # a 1x1 corner tile
    assert pooled[0, 0, 2, 0] == x[0, 0, 6:, 0:2].mean()  # a 1x2 bottom tile
    assert pooled[0, 0, 0, 2] == x[0, 0, 0:3, 4:].mean()  # a 3x1 right tile


@pytest.mark.parametrize("shape, tile", [((2, 3, 7, 5), (3, 2)), ((2, 3, 8, 6), (4, 3)), ((1, 2, 5, 9), (5, 4))])
def test_scale_by_tile_gives_each_tile_its_own_gate(shape, tile):
    x = torch.randn(shape)
    nh, nw = -(-shape[2] // tile[0]), -(-shape[3] // tile[1])
    gate = torch.randn(shape[0], shape[1], nh, nw)
    out = scale_by_tile(x, gate, *tile)
    for i in range(shape[2]):
        for j in range(shape[3]):
            torch.testing.assert_close(out[:, :, i, j], x[:, :, i, j] * gate[:, :, i // tile[0], j // tile[1]])


@pytest.mark.parametrize("size, tile", [((7, 5), "3x2"), ((7, 7), "2xW"), ((9, 6), "Hx4"), ((8, 8), "4x4"), ((6, 6), "1x1")])
def test_tiled_se_matches_loop_reference_on_ragged_sizes(size, tile):
    torch.manual_seed(0)
    se = SEModule(16, rd_channels=4).eval()
    x = torch.randn(2, 16, *size)
    spec = parse_tile(tile)
    expected = reference_tiled_se(x, lambda s: se.gate(se.fc2(se.act(se.bn(se.fc1(s))))), *spec.resolve(*size))
    wrapper = nn.Sequential(se)
    apply_tiles(wrapper, tile)
    torch.testing.assert_close(wrapper(x), expected)


REAL_MODELS = [
    ("timm", "regnety_002", 96),  # SEModule
    ("timm", "efficientnet_b0", 96),  # SqueezeExcite
    ("timm", "mobilenetv3_small_100", 96),  # SqueezeExcite with hard-sigmoid
    ("timm", "seresnet18", 96),  # SEModule in a ResNet
    ("timm", "ecaresnet26t", 96),  # EcaModule (beyond the paper)
    ("torchvision", "mobilenet_v3_small", 96),  # torchvision SqueezeExcitation
    ("torchvision", "efficientnet_b0", 96),
    ("torchvision", "regnet_y_400mf", 96),
]


def build(zoo, name):
    if zoo == "timm":
        model = timm.create_model(name, pretrained=False)
    else:
        model = torchvision.models.get_model(name, weights=None)
    return randomize_(model)


def se_outputs(model, x):
    """The model's output and every SE block's output, by block name."""
    captured = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: captured.setdefault(name, out))
        for name, module in find_se_modules(model)
    ]
    try:
        return model(x), captured
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("zoo, name, size", REAL_MODELS, ids=[m[1] for m in REAL_MODELS])
@torch.no_grad()
def test_gap_everywhere_equals_original_and_smaller_tiles_differ(zoo, name, size):
    model = build(zoo, name)
    x = torch.randn(2, 3, size, size)
    original, original_se = se_outputs(model, x)
    apply_tiles(model, "GAP")
    gap, gap_se = se_outputs(model, x)
    torch.testing.assert_close(gap, original, rtol=0, atol=0)
    apply_tiles(model, "1x1")
    _, tiled_se = se_outputs(model, x)
    first = next(iter(original_se))
    change = (tiled_se[first] - original_se[first]).abs().max() / original_se[first].abs().max()
    assert change > 1e-2, "tiling had no effect: the tiled forward is not in use"


@torch.no_grad()
def test_effdet_gap_equals_original():
    torch.manual_seed(0)
    model = randomize_(create_model("efficientdet_d0", input_size=(128, 128)))
    x = torch.randn(1, 3, 128, 128)
    classes, boxes = model(x)
    apply_tiles(model, "GAP")
    tiled_classes, tiled_boxes = model(x)
    for got, want in zip(tiled_classes + tiled_boxes, classes + boxes):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    apply_tiles(model, "1xW")
    assert not torch.allclose(model(x)[0][0], classes[0], atol=1e-5)


@torch.no_grad()
def test_retiling_reuses_the_same_model_and_weights():
    model = build("timm", "regnety_002")
    x = torch.randn(2, 3, 96, 96)
    original = model(x)
    params_before = {name: p.data_ptr() for name, p in model.named_parameters()}
    keys_before = list(model.state_dict())

    first = apply_tiles(model, "7xW")(x)
    se_before = [id(module) for _, module in find_se_modules(model)]  # the tiled blocks, swapped in once
    apply_tiles(model, "1x1")
    apply_tiles(model, "7xW")
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    apply_tiles(model, "GAP")
    torch.testing.assert_close(model(x), original, rtol=0, atol=0)

    assert {name: p.data_ptr() for name, p in model.named_parameters()} == params_before
    assert list(model.state_dict()) == keys_before  # checkpoints still load
    assert [id(module) for _, module in find_se_modules(model)] == se_before


@torch.no_grad()
def test_per_block_config_tiles_only_named_blocks():
    model = build("timm", "regnety_002")
    names = [name for name, _ in find_se_modules(model)]
    apply_tiles(model, {names[-1]: "1x1"})
    tiles = current_tiles(model)
    assert str(tiles[names[-1]]) == "1x1"
    assert all(str(tiles[name]) == "GAP" for name in names[:-1])
    with pytest.raises(TilesearchError, match="not.a.block"):
        apply_tiles(model, {"not.a.block": "7xW"})


def test_model_without_se_is_refused():
    with pytest.raises(TilesearchError, match="no channel-attention block"):
        apply_tiles(timm.create_model("resnet18"), "7xW")


def test_tiled_model_trains():
    model = build("timm", "regnety_002").train()
    apply_tiles(model, "3x3")
    loss = model(torch.randn(2, 3, 64, 64)).logsumexp(1).mean()
    loss.backward()
    se_param = next(module for _, module in find_se_modules(model)).fc1.weight
    assert se_param.grad is not None and se_param.grad.abs().sum() > 0
