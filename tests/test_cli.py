import json
import subprocess
import sys

import pytest
from conftest import assert_user_error
from typer.testing import CliRunner

from tilesearch.cli import app

runner = CliRunner()


def run_cli(*args):
    return runner.invoke(app, list(args))


def test_buffer_json_agrees_with_table_1():
    result = run_cli("buffer", "regnety_008", "--tile", "7xW", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 426496 and data["se_total"] == 1078784  # 0.42M and 1.07M in Table 1
    assert data["input_size"] == [224, 224] and data["tile"] == "7xW" and data["profile"] == "ideal"
    first = data["blocks"][0]
    assert {k: first[k] for k in ("name", "channels", "height", "width", "tile_h", "tile_w", "buffer")} == {
        "name": "s1.b1.se", "channels": 64, "height": 56, "width": 56, "tile_h": 7, "tile_w": 56, "buffer": 7 * 56 * 64
    }
    assert sum(b["buffer"] for b in data["blocks"]) == data["total"]


def test_buffer_table_shows_blocks_and_both_totals():
    result = run_cli("buffer", "regnety_002", "--tile", "Hx3", "--input-size", "160", "--profile", "row-stationary")
    assert result.exit_code == 0, result.output
    assert "s1.b1.se" in result.stdout and "160x160" in result.stdout
    assert "SE (all GAP)" in result.stdout and "tile Hx3" in result.stdout
    assert "100.0% of SE" in result.stdout  # column tiles save nothing on a row-stationary design


def test_buffer_profile_from_file(tmp_path):
    path = tmp_path / "fp16.yaml"
    path.write_text("granularity: tile\nbytes_per_element: 2\n")
    data = json.loads(run_cli("buffer", "regnety_002", "--json", "--profile", str(path)).stdout)
    assert data["total_bytes"] == 2 * data["total"] and data["profile"] == "fp16"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["buffer", "regnety_08"], ["'regnety_08'", "regnety_008"]),
        (["buffer", "resnet18"], ["'resnet18'", "no channel-attention block", "global_pool"]),
        (["buffer", "regnety_002", "--input-size", "abc"], ["'abc'", "positive integer"]),
        (["buffer", "regnety_002", "--input-size", "0"], ["'0'", "positive integer"]),
        (["buffer", "regnety_002", "--input-size", "-5"], ["'-5'", "positive integer"]),
        (["buffer", "regnety_002", "--profile", "tpu"], ["'tpu'", "ideal, row-stationary"]),
        (["buffer", "regnety_002", "--tile", "0xW"], ["'0xW'", "kxW"]),
        (["buffer", "regnety_002", "--tile", "axb"], ["'axb'", "kxW"]),
        (["models", "no-such-model-zzz"], ["'no-such-model-zzz'"]),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, fragments):
    assert_user_error(run_cli(*args), *fragments)


def test_models_lists_names_with_se_counts():
    result = run_cli("models", "regnety_00")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "regnety_00" in line}
    assert {"regnety_002", "regnety_004", "regnety_006", "regnety_008"} <= set(rows)
    assert rows["regnety_008"].split("│")[3].strip() == "14"
    assert rows["regnety_002"].split("│")[3].strip() == "13"


def test_models_filter_without_se_models_is_an_error():
    assert_user_error(run_cli("models", "resnet1*"), "'resnet1*'", "channel-attention")


def test_console_script_reports_errors_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "tilesearch", "buffer", "regnety_002", "--tile", "7x"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid tile '7x': expected GAP, kxW (k rows), Hxk (k columns) or hxw (h x w patch), "
        "with k, h, w positive integers"
    ]


def test_help_explains_commands():
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "buffer" in result.stdout and "models" in result.stdout
    assert "7xW" in run_cli("buffer", "--help").stdout
