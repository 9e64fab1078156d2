import pytest
import torch

from tilesearch import (
    TilesearchError,
    create_model,
    default_input_size,
    discover_model,
    discover_se_blocks,
)
from tilesearch.nn import excite_macs, stage_of
from tilesearch.zoo import matching_names, model_source


def test_regnety_008_blocks_shapes_and_stages():
    found = discover_model("regnety_008")
    assert found.input_size == (224, 224)
    blocks = found.blocks
    assert len(blocks) == 14
    assert [b.name for b in blocks[:2]] == ["s1.b1.se", "s2.b1.se"]
    assert (blocks[0].channels, blocks[0].height, blocks[0].width) == (64, 56, 56)
    assert (blocks[-1].channels, blocks[-1].height, blocks[-1].width) == (768, 7, 7)
    assert [b.stage for b in blocks] == [1, 2, 2, 2] + [3] * 8 + [4, 4]


def test_shapes_follow_the_input_size_including_odd_sizes():
    blocks = discover_model("regnety_002", input_size=100).blocks
    assert (blocks[0].height, blocks[0].width) == (25, 25)
    assert (blocks[-1].height, blocks[-1].width) == (4, 4)  # 100 -> 50 -> 25 -> 13 -> 7 -> 4


def test_efficientnet_stages_follow_the_paper_numbering():
    blocks = discover_model("efficientnet_b0").blocks
    assert len(blocks) == 16
    assert sorted({b.stage for b in blocks}) == [1, 2, 3, 4, 5, 6, 7]
    assert blocks[0].kind == "SqueezeExcite"


@pytest.mark.parametrize(
    "name, count, first",
    [
        ("torchvision/mobilenet_v3_large", 8, "features.4.block.2"),
        ("torchvision/efficientnet_b0", 16, "features.1.0.block.1"),
        ("torchvision/regnet_y_400mf", 16, "trunk_output.block1.block1-0.f.se"),
        ("ecaresnet26t", 8, "layer1.0.se"),
    ],
)
def test_other_zoos_and_flavours(name, count, first):
    blocks = discover_model(name, input_size=96).blocks
    assert len(blocks) == count
    assert blocks[0].name == first


def test_effdet_backbone_blocks_at_its_own_size():
    assert default_input_size("efficientdet_d2") == (768, 768)
    blocks = discover_model("efficientdet_d0", input_size=256).blocks
    assert len(blocks) == 16
    assert blocks[0].name == "backbone.blocks.0.0.se"
    assert (blocks[0].channels, blocks[0].height) == (32, 128)
    assert blocks[0].stage == 1


def test_excite_macs_counts_both_1x1_convs_and_biases():
    block = discover_model("regnety_008").blocks[0]
    model = create_model("regnety_008")
    se = model.get_submodule(block.name)
    rd = se.fc1.out_channels
    assert block.excite_macs == 64 * rd + rd + rd * 64 + 64
    assert excite_macs(se, 64) == block.excite_macs


def test_stage_patterns():
    assert stage_of("blocks.3.1.se") == 4
    assert stage_of("backbone.blocks.0.0.se") == 1
    assert stage_of("s2.b4.se") == 2
    assert stage_of("layer3.1.se") == 3
    assert stage_of("features.7.0.block.2") == 7
    assert stage_of("features.4.block.2") is None


def test_no_se_model_is_refused():
    with pytest.raises(TilesearchError, match="no channel-attention block"):
        discover_model("resnet18")


@pytest.mark.parametrize("size", [0, -3, (224, 0)])
def test_non_positive_input_size_is_a_user_error(size):
    with pytest.raises(TilesearchError, match="invalid input size"):
        discover_model("regnety_002", input_size=size)


def test_unknown_model_suggests_close_names():
    with pytest.raises(TilesearchError, match="regnety_008"):
        model_source("regnety_08")


def test_matching_names_glob_and_substring():
    assert "regnety_008" in matching_names("regnety_00*")
    assert "efficientdet_d2" in matching_names("efficientdet")
    assert "torchvision/mobilenet_v3_large" in matching_names(None)


@torch.no_grad()
def test_discovery_leaves_the_model_as_it_was():
    model = create_model("regnety_002").train()
    discover_se_blocks(model, 64)
    assert model.training
    assert all(not m._forward_pre_hooks for m in model.modules())
