"""A regular (non-editable) install carries its search spaces, profiles and demo assets, and runs."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True)
    return next(out.glob("tilesearch-*.whl"))


def test_the_wheel_holds_spaces_profiles_and_demo_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for space in ("default", "strips", "patches", "uniform"):
        assert f"tilesearch/core/spaces/{space}.yaml" in names
    assert {"tilesearch/core/profiles/ideal.yaml", "tilesearch/core/profiles/row-stationary.yaml"} <= names
    assert {"tilesearch/zoo/assets/demo_model.safetensors", "tilesearch/zoo/assets/demo_model.json",
            "tilesearch/zoo/assets/demo_segmenter.safetensors", "tilesearch/zoo/assets/demo_segmenter.json"} <= names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]


def test_an_installed_wheel_runs_the_demo_and_a_shipped_space(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable checkout on sys.path

    def tilesearch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tilesearch", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env)

    where = subprocess.run([sys.executable, "-c", "import tilesearch; print(tilesearch.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env).stdout
    assert where.startswith(str(site))
    demo = tilesearch("run", "--out", "runs", "--n-trials", "6")
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "runs" / "tilesearch_demo_net-50pct" / "final" / "model.safetensors").is_file()
    strips = tilesearch("run", "--model", "tilesearch_demo_net", "--pretrained", "--data", "runs/demo-data/val",
                        "--val-subset", "80", "--space", "strips", "--n-trials", "3", "--out", "runs")
    assert strips.returncode == 0, strips.stderr
    assert (tmp_path / "runs" / "tilesearch_demo_net-strips" / "pareto.csv").is_file()
