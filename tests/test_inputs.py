"""Budgets, search spaces, subsets, config files and checkpoints: the inputs a search reads."""

import json

import pytest
import timm
import torch
import yaml

from tilesearch import TilesearchError, load_profile
from tilesearch.core import (
    SCHEMA,
    HardwareProfile,
    SEBlock,
    available_spaces,
    buffer_report,
    config_document,
    load_config,
    load_space,
    parse_budget,
    save_config,
)
from tilesearch.data import stratified_split
from tilesearch.zoo import load_checkpoint, load_model

from conftest import offline_hub

IDEAL = load_profile("ideal")
FP16 = HardwareProfile("fp16", bytes_per_element=2)


@pytest.mark.parametrize(
    "text, profile, elements",
    [("5M", IDEAL, 5_000_000), ("500K", IDEAL, 500_000), ("4.7e6", IDEAL, 4_700_000), ("5000000", IDEAL, 5_000_000),
     ("4MiB", IDEAL, 4 * 2**20), ("4MiB", FP16, 2 * 2**20), ("512KB", FP16, 256_000), ("1.5k", IDEAL, 1500)],
)
def test_budget_forms(text, profile, elements):
    assert parse_budget(text, profile) == elements


@pytest.mark.parametrize("text", ["5Q", "", "M", "-3M", "five", "0"])
def test_bad_budgets_name_value_and_forms(text):
    with pytest.raises(TilesearchError) as error:
        parse_budget(text, IDEAL)
    assert repr(text) in str(error.value)


def test_percentage_budget_is_a_share_of_se():
    assert parse_budget("40%", IDEAL, se_total=1000) == 400
    with pytest.raises(TilesearchError, match="150%"):
        parse_budget("150%", IDEAL, se_total=1000)


def blocks():
    return [SEBlock("a", 1, "SEModule", 8, 14, 14, 100), SEBlock("b", 1, "SEModule", 8, 14, 14, 100),
            SEBlock("c", 2, "SEModule", 16, 7, 7, 200)]


def test_shipped_spaces_load():
    assert {"default", "strips", "patches", "uniform"} <= set(available_spaces())
    default = load_space("default")
    assert default.grouping == "per_block"
    assert [str(t) for t in default.choices] == ["GAP", "1xW", "3xW", "5xW", "7xW", "9xW", "Hx7", "7x7", "13x13"]


def test_space_groupings_and_merged_choices(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("grouping: per_block\nchoices: [GAP, 9xW, 7xW, 1x1]\nstages:\n  2: [GAP, 1xW]\n")
    params = load_space(path).params(blocks())
    assert [p.name for p in params] == ["a", "b", "c"]
    assert [str(t) for t in params[0].choices] == ["GAP", "9xW", "7xW", "1x1"]
    assert [str(t) for t in params[2].choices] == ["GAP", "1xW"]  # stage override
    path.write_text("grouping: per_block\nchoices: [GAP, 9xW, 7xW]\n")
    assert [str(t) for t in load_space(path).params(blocks())[2].choices] == ["GAP"]  # all clip to 7x7
    path.write_text("grouping: per_stage\nchoices: [GAP, 1x1]\n")
    assert [(p.name, p.blocks) for p in load_space(path).params(blocks())] == [("stage_1", ("a", "b")), ("stage_2", ("c",))]
    path.write_text("grouping: uniform\nchoices: [GAP, 1x1]\n")
    assert [p.name for p in load_space(path).params(blocks())] == ["tile"]


def test_min_buffer_is_the_cheapest_config(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("grouping: per_block\nchoices: [GAP, 1xW]\n")
    space = load_space(path)
    assert space.min_buffer(blocks(), IDEAL) == buffer_report(blocks(), "1xW", IDEAL).total


@pytest.mark.parametrize(
    "text, fragment",
    [("choices: [GAP]\nsampler: tpe\n", "'sampler'"), ("choices: [GAP, 7xQ]\n", "'7xQ'"),
     ("choices: [GAP]\ngrouping: per_layer\n", "'per_layer'"), ("choices: []\n", "non-empty"),
     ("choices: [GAP]\nstages:\n  one: [GAP]\n", "'one'")],
)
def test_bad_space_files(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TilesearchError, match=fragment):
        load_space(path)


def test_unknown_space_name_lists_shipped_ones():
    with pytest.raises(TilesearchError, match="default"):
        load_space("nope")


def test_stratified_subset_is_seeded_proportional_and_disjoint():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    chosen, rest = stratified_split(labels, 10, seed=3)
    assert len(chosen) == 10 and len(rest) == 90 and not set(chosen) & set(rest)
    assert [sum(labels[i] == c for i in chosen) for c in range(3)] == [5, 3, 2]
    assert stratified_split(labels, 10, seed=3) == (chosen, rest)
    assert stratified_split(labels, 10, seed=4)[0] != chosen
    assert stratified_split(labels, None, seed=0) == (list(range(100)), [])


def test_config_round_trip(tmp_path):
    report = buffer_report(blocks(), {"a": "7xW", "c": "1x1"}, IDEAL)
    path = save_config(tmp_path / "best.yaml", config_document("m", (224, 224), report, {"accuracy": 0.5}))
    config = load_config(path)
    assert config.model == "m" and config.input_size == (224, 224)
    assert {name: str(tile) for name, tile in config.tiles.items()} == {"a": "7xW", "b": "GAP", "c": "1x1"}
    assert config.totals["buffer"] == report.total
    assert yaml.safe_load(path.read_text())["schema"] == SCHEMA


@pytest.mark.parametrize(
    "text, fragment",
    [("a: [", "not valid YAML"), ("schema: other\n", "not a tilesearch tile config"),
     (f"schema: {SCHEMA}\nversion: 9\n", "version 9"),
     (f"schema: {SCHEMA}\nversion: 1\nblocks: [{{name: a, tile: 0xW}}]\ninput_size: [1, 1]\n", "'0xW'"),
     (f"schema: {SCHEMA}\nversion: 1\nextra: 1\n", "unknown keys: extra")],
)
def test_bad_config_files(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(TilesearchError, match=fragment):
        load_config(path)


@pytest.fixture(scope="module")
def small_state():
    return timm.create_model("regnety_002", num_classes=10).state_dict()


@pytest.mark.parametrize("layout", ["bare.pth", "state_dict.pth.tar", "model.pth", "state_dict_ema.pth.tar", "module.pth", "weights.safetensors"])
def test_checkpoint_layouts_load(tmp_path, small_state, layout):
    from safetensors.torch import save_file

    path = tmp_path / layout.split(".", 1)[0]
    path = path.with_name(layout)
    if layout.endswith(".safetensors"):
        save_file(small_state, str(path))
    elif layout.startswith("module"):
        torch.save({f"module.{k}": v for k, v in small_state.items()}, path)
    elif layout.startswith("bare"):
        torch.save(small_state, path)
    else:
        key = layout.split(".")[0]
        torch.save({key: small_state, "epoch": 3, "args": {"lr": 0.1}}, path)
    model = load_model("regnety_002", checkpoint=path, num_classes=10)
    for key, value in model.state_dict().items():
        assert torch.equal(value, small_state[key]), key


def test_checkpoint_mismatch_names_the_first_keys(tmp_path, small_state):
    path = tmp_path / "w.pth"
    torch.save(small_state, path)
    with pytest.raises(TilesearchError, match=r"head\.fc\.weight is \(10, 368\) in the file but \(1000, 368\)"):
        load_model("regnety_002", checkpoint=path)
    with pytest.raises(TilesearchError, match="missing"):
        load_checkpoint(timm.create_model("regnety_004", num_classes=10), path)


def test_missing_and_unreadable_checkpoints(tmp_path):
    with pytest.raises(TilesearchError, match="does not exist"):
        load_model("regnety_002", checkpoint=tmp_path / "none.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a file")
    with pytest.raises(TilesearchError, match="not a readable safetensors"):
        load_model("regnety_002", checkpoint=bad)


def test_pretrained_offline_without_cache_says_so(tmp_path, monkeypatch):
    offline_hub(monkeypatch, tmp_path / "hub")
    where = rf"timm/regnety_002\.pycls_in1k \(model\.safetensors\) in the Hugging Face cache {tmp_path / 'hub'}"
    with pytest.raises(TilesearchError, match=where + r" could not be loaded .*pass --checkpoint FILE"):
        load_model("regnety_002")


def test_pretrained_reads_the_local_hugging_face_cache(tmp_path, monkeypatch, small_state):
    """timm's own loading from a Hugging Face cache laid out as the hub client writes it."""
    from safetensors.torch import save_file

    cfg = timm.get_pretrained_cfg("regnety_002")
    repo = cfg.hf_hub_id
    home = tmp_path / "hf"
    snapshot = home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    state = timm.create_model("regnety_002").state_dict()
    save_file(state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": "regnety_002", "num_classes": 1000}))
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    offline_hub(monkeypatch, home / "hub")
    model = load_model("regnety_002")
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_effdet_pretrained_reads_the_torch_hub_cache(torch_hub_cache):
    """effdet's own loading: the release file, already in torch.hub's checkpoint cache, loads offline."""
    with pytest.raises(TilesearchError, match=r"efficientdet_d0-f3276ba8\.pth could not be loaded .*--checkpoint FILE"):
        load_model("efficientdet_d0")
    state = torch_hub_cache("efficientdet_d0")
    model = load_model("efficientdet_d0")
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
