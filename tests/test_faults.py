"""Faults and misuse, tried as a new user would: each ends in one line, or in the right result, never in a
traceback, a crash or a write into the wrong study. The next fault found belongs here too."""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import assert_user_error
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.demo import write_demo_dataset
from tilesearch.search import completed_trials, load_study_of_run, read_run_file
from tilesearch.zoo import DEMO_MODEL_NAME

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_val(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("faults"), "val", 15, seed=9)


def run_args(data, out, *extra):
    return ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(data), "--val-subset", "60",
            "--strategy", "sampler", "--space", "uniform", "--out", str(out), *extra]


def trials_of(run_dir) -> int:
    return len(completed_trials(load_study_of_run(read_run_file(run_dir))))


@pytest.fixture(scope="module")
def finished_run(demo_val, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, run_args(demo_val, out, "--n-trials", "3", "--study-name", "s"))
    assert result.exit_code == 0, result.output
    return out / "s"


def copy_of(run_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / name))


# ---------------------------------------------------------------------------- run folders and their studies


def test_a_copied_run_folder_continues_its_own_study_not_the_original(finished_run, tmp_path):
    copy = copy_of(finished_run, tmp_path)
    assert yaml.safe_load((copy / "run.yaml").read_text())["storage"] == "sqlite:///study.db"
    result = runner.invoke(app, ["resume", str(copy), "--n-trials", "2"])
    assert result.exit_code == 0, result.output
    assert trials_of(copy) == 5 and trials_of(finished_run) == 3


def test_a_moved_run_folder_continues_its_own_study(finished_run, tmp_path):
    moved = copy_of(finished_run, tmp_path, "a")
    moved = moved.rename(tmp_path / "b")
    assert runner.invoke(app, ["resume", str(moved), "--n-trials", "1"]).exit_code == 0
    assert trials_of(moved) == 4 and not (tmp_path / "a").exists()


def test_a_folder_copied_from_an_older_version_refuses_the_original_s_study(finished_run, tmp_path):
    copy = copy_of(finished_run, tmp_path)
    document = yaml.safe_load((copy / "run.yaml").read_text())
    document["storage"] = f"sqlite:///{finished_run.resolve() / 'study.db'}"  # what earlier versions recorded
    (copy / "run.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert_user_error(runner.invoke(app, ["resume", str(copy)]), "records the study of run folder", "--storage")
    assert trials_of(finished_run) == 3
    (tmp_path / "elsewhere").mkdir()
    moved = copy.rename(tmp_path / "elsewhere" / "moved")  # the original gone: the folder's own copy is used
    document["storage"] = f"sqlite:///{tmp_path / 'gone' / 'study.db'}"
    (moved / "run.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert trials_of(moved) == 3


def test_a_truncated_study_file_is_one_line(finished_run, tmp_path):
    copy = copy_of(finished_run, tmp_path)
    (copy / "study.db").write_bytes((copy / "study.db").read_bytes()[:5000])
    assert_user_error(runner.invoke(app, ["resume", str(copy)]), "cannot open storage", "study.db")


def test_a_storage_outside_the_run_folder_stays_absolute(demo_val, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared' / 'studies.db'}"
    result = runner.invoke(app, run_args(demo_val, tmp_path / "runs", "--n-trials", "1", "--study-name", "o",
                                         "--storage", storage))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "runs" / "o" / "run.yaml").read_text())["storage"] == storage


# ---------------------------------------------------------------------------- sizes that do not fit


def test_a_huge_input_size_is_costed_without_running_it():
    result = runner.invoke(app, ["buffer", "regnety_008", "--input-size", "10000", "--json"])
    assert result.exit_code == 0, result.output
    assert '"se_total": 2150' in result.stdout  # 2.15G elements, traced on the meta device


def test_a_forward_that_cannot_fit_is_refused_before_decoding(demo_val, tmp_path):
    args = ["eval", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val), "--tile", "7xW",
            "--input-size", "20000"]
    assert_user_error(runner.invoke(app, args), "input size 20000x20000", "GiB", "--skip-memory-check")
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, "--input-size", "20000", "--study-name", "h")),
                      "input size 20000x20000")
    assert not (tmp_path / "h").exists()


# ---------------------------------------------------------------------------- the offline demo and its options


@pytest.mark.parametrize("bad, fragment", [
    (["--buffer-budget", "0"], "'0'"), (["--buffer-budget", "-5M"], "'-5M'"), (["--buffer-budget", "200%"], "'200%'"),
    (["--buffer-budget", "nan"], "'nan'"), (["--val-subset", "0"], "validation subset 0"),
    (["--space", "nonexistent"], "'nonexistent'"), (["--sampler", "cmaes"], "'cmaes'"),
    (["--checkpoint", "w.pt"], "--checkpoint does not apply"), (["--epochs", "0"], "epochs 0"),
])
def test_the_demo_refuses_bad_options_before_writing_anything(tmp_path, bad, fragment):
    assert_user_error(runner.invoke(app, ["run", "--out", str(tmp_path / "out"), *bad]), fragment)
    assert not (tmp_path / "out").exists()


def test_the_demo_honours_its_search_options(tmp_path):
    result = runner.invoke(app, ["run", "--out", str(tmp_path), "--buffer-budget", "30%", "--val-subset", "160",
                                 "--sampler", "random", "--seed", "3", "--n-trials", "4", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load((tmp_path / "tilesearch_demo_net-30pct" / "run.yaml").read_text())
    assert {key: document["settings"][key] for key in ("budget", "val_subset", "sampler", "seed")} == {
        "budget": "30%", "val_subset": 160, "sampler": "random", "seed": 3}
    assert document["budget_elements"] == int(document["se_buffer"] * 30 / 100)
    assert '"epochs": 1' in (tmp_path / "tilesearch_demo_net-30pct" / "final" / "metrics.json").read_text()


# ---------------------------------------------------------------------------- the study's target of trials


def test_concurrent_resumes_add_up_and_do_not_collide(finished_run, tmp_path):
    import subprocess
    import sys

    copy = copy_of(finished_run, tmp_path)
    command = [sys.executable, "-m", "tilesearch", "resume", str(copy), "--n-trials", "3"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert not any("Traceback" in stderr for _, stderr in outputs)
    assert trials_of(copy) == 3 + 3 + 3


def test_resume_without_n_trials_finishes_the_target_and_adds_nothing_more(finished_run, tmp_path):
    copy = copy_of(finished_run, tmp_path)
    result = runner.invoke(app, ["resume", str(copy)])
    assert result.exit_code == 0, result.output
    assert trials_of(copy) == 3 and "(3 trials, 0 new)" in result.stdout
