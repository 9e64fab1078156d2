"""`--model file.py:build` and `--model package.module:build`: a network from the user's own code, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import assert_user_error
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.core import TilesearchError, UnknownNameError
from tilesearch.zoo import count_se_blocks, create_model, default_input_size, load_callable

runner = CliRunner()
NETS = Path(__file__).parent / "user_nets"
STYLED = f"{NETS / 'se_styles.py'}:build"


def test_buffer_of_a_network_from_a_file_lists_its_hand_written_blocks():
    result = runner.invoke(app, ["buffer", STYLED, "--tile", "2x2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["input_size"] == [64, 64]  # the callable's own input_size attribute
    kinds = [block["kind"] for block in report["blocks"]]
    assert kinds == ["ConvSE (generic)", "LinearSE (generic)", "FunctionalSE (generic)", "KeepdimMaxSE (generic)"]
    assert report["blocks"][0]["se_buffer"] == 16 * 32 * 32 and report["blocks"][0]["buffer"] == 16 * 2 * 2


def test_a_module_path_works_like_a_file(monkeypatch):
    monkeypatch.syspath_prepend(str(NETS))
    model = create_model("se_styles:build", num_classes=3)
    assert model.head.out_features == 3  # called with num_classes= when it is given
    assert default_input_size("se_styles:build") == (64, 64)


def test_run_searches_a_user_network_end_to_end(demo_val, tmp_path):
    classes = len([entry for entry in demo_val.iterdir() if entry.is_dir()])
    result = runner.invoke(app, ["run", "--model", STYLED, "--num-classes", str(classes), "--data", str(demo_val),
                                 "--val-subset", "40", "--n-trials", "4", "--space", "uniform", "--out", str(tmp_path),
                                 "--study-name", "user"])
    assert result.exit_code == 0, result.output
    run = yaml.safe_load((tmp_path / "user" / "run.yaml").read_text())
    assert run["settings"]["model"] == STYLED and len(run["blocks"]) == 4
    assert run["preprocessing"]["input_size"] == [64, 64]  # the callable's input_size
    best = yaml.safe_load((tmp_path / "user" / "best.yaml").read_text())
    assert [block["name"] for block in best["blocks"]] == [block["name"] for block in run["blocks"]]
    assert best["totals"]["buffer"] < best["totals"]["se_buffer"]


@pytest.fixture
def broken_files(tmp_path) -> Path:
    (tmp_path / "syntax.py").write_text("def build(:\n    pass\n")
    (tmp_path / "imports.py").write_text("import no_such_package_for_tilesearch\n")
    (tmp_path / "nothing.py").write_text("def other():\n    pass\n")
    return tmp_path


@pytest.mark.parametrize(("reference", "fragments"), [
    ("missing.py:build", ["'missing.py'", "does not exist"]),
    ("syntax.py:build", ["syntax.py", "SyntaxError", "line 1"]),
    ("imports.py:build", ["imports.py", "ModuleNotFoundError", "no_such_package_for_tilesearch"]),
    ("nothing.py:build", ["has no 'build'", "it defines other"]),
])
def test_a_bad_model_file_is_one_line(broken_files, reference, fragments):
    target = str(broken_files / reference) if reference != "missing.py:build" else reference
    assert_user_error(runner.invoke(app, ["buffer", target]), *fragments)


@pytest.mark.parametrize(("function", "fragments"), [
    ("build_raises", ["build_raises raised ValueError: this network needs a config file"]),
    ("build_not_a_module", ["build_not_a_module returned dict, not a torch.nn.Module"]),
    ("build_plain", ["no channel-attention block", "(the model) (StyledNet)", "not the input itself"]),
])
def test_a_callable_that_fails_or_builds_no_block_is_one_line(function, fragments):
    assert_user_error(runner.invoke(app, ["buffer", f"{NETS / 'se_styles.py'}:{function}"]), *fragments)


def test_a_bad_input_size_attribute_is_one_line(tmp_path):
    (tmp_path / "sized.py").write_text("from torch import nn\n\ndef build():\n    return nn.Identity()\n\n"
                                       "build.input_size = '128'\n")
    assert_user_error(runner.invoke(app, ["buffer", f"{tmp_path / 'sized.py'}:build"]), "input_size '128'",
                      "(height, width)")


def test_an_unknown_module_is_refused_and_own_weights_are_named():
    from tilesearch.zoo import describe_weights

    with pytest.raises(UnknownNameError, match="no module named 'no_such_module_here'"):
        load_callable("no_such_module_here:build")
    assert describe_weights(STYLED) == f"the weights {STYLED} gives it (no --checkpoint)"
    assert describe_weights(STYLED, random_weights=True).startswith("RANDOM weights")


def test_a_user_file_can_register_its_own_flavour(tmp_path):
    """A block generic discovery cannot trace, made tileable by register_flavour at import."""
    (tmp_path / "registered.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "from tilesearch.nn import register_flavour\n\n"
        "class Gate(nn.Module):\n"
        "    def __init__(self, c):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Conv2d(c, c, 1)\n"
        "    def forward(self, x):\n"
        "        if x.shape[-1] > 0:  # data-dependent: torch.fx cannot trace this\n"
        "            return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))\n"
        "        return x\n\n"
        "def excite(block, pooled):\n"
        "    return torch.sigmoid(block.fc(pooled))\n\n"
        "register_flavour(Gate, excite)\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), Gate(8))\n"
    )
    result = runner.invoke(app, ["buffer", f"{tmp_path / 'registered.py'}:build", "--input-size", "33", "--json"])
    assert result.exit_code == 0, result.output
    assert [block["kind"] for block in json.loads(result.output)["blocks"]] == ["Gate"]
    assert count_se_blocks(f"{tmp_path / 'registered.py'}:build").found_by == ("registered",)


def test_models_says_how_each_family_is_found():
    assert count_se_blocks(STYLED).found_by == ("generic",)
    assert count_se_blocks("regnety_002").found_by == ("class",)
    result = runner.invoke(app, ["models", "gcresnext26ts"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "gcresnext26ts" in line)
    assert "class" in row and "timm" in row
