"""Faults and misuse, tried as a new user would: each ends in one line, or in the right result, never in a
traceback, a crash or a write into the wrong study. The next fault found belongs here too."""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import assert_user_error
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.search import completed_trials, load_study_of_run, read_run_file
from tilesearch.zoo import DEMO_MODEL_NAME

runner = CliRunner()


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
    assert_user_error(runner.invoke(app, ["resume", str(copy)]), "records the study of run folder",
                      "'storage: sqlite:///study.db'")
    assert trials_of(finished_run) == 3
    document["storage"] = "sqlite:///study.db"  # what the message says to write
    (copy / "run.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert runner.invoke(app, ["resume", str(copy), "--n-trials", "1"]).exit_code == 0
    assert trials_of(copy) == 4 and trials_of(finished_run) == 3
    document["storage"] = f"sqlite:///{finished_run.resolve() / 'study.db'}"
    (tmp_path / "elsewhere").mkdir()
    moved = copy.rename(tmp_path / "elsewhere" / "moved")  # the original gone: the folder's own copy is used
    document["storage"] = f"sqlite:///{tmp_path / 'gone' / 'study.db'}"
    (moved / "run.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert trials_of(moved) == 4


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


# ---------------------------------------------------------------------------- damaged files and folders


def test_invalid_yaml_in_a_run_file_is_one_line_with_its_line(finished_run, tmp_path):
    copy = copy_of(finished_run, tmp_path)
    text = (copy / "run.yaml").read_text().splitlines()
    text[2] = "settings: [unclosed"
    (copy / "run.yaml").write_text("\n".join(text))
    for command in (["pareto", str(copy)], ["resume", str(copy)], ["export", str(copy)]):
        assert_user_error(runner.invoke(app, command), "run file", "not valid YAML at line")


def test_invalid_yaml_in_a_space_or_profile_names_the_line(demo_val, tmp_path):
    (tmp_path / "space.yaml").write_text("choices: [GAP, 7xW\ngrouping: per_block\n")
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, "--space", str(tmp_path / "space.yaml"))),
                      "space.yaml", "not valid YAML at line")
    (tmp_path / "hw.yaml").write_text("granularity: tile\n  bytes_per_element: 2\n")
    assert_user_error(runner.invoke(app, ["buffer", "regnety_002", "--profile", str(tmp_path / "hw.yaml")]),
                      "hw.yaml", "not valid YAML at line 2")


@pytest.fixture
def damaged_images(demo_val, tmp_path) -> Path:
    folder = Path(shutil.copytree(demo_val, tmp_path / "damaged"))
    first, second = sorted((folder / "red").glob("*.png"))[:2]
    first.write_bytes(first.read_bytes()[:300])  # truncated
    second.write_text("not an image at all")
    return folder


def test_unreadable_images_are_skipped_and_named_or_refused_with_strict_data(damaged_images):
    args = ["eval", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(damaged_images), "--tile", "7xW", "--json"]
    with pytest.warns(UserWarning, match="00"):
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["total"] == 8 * 20 - 2 and len(report["skipped"]) == 2
    assert_user_error(runner.invoke(app, [*args, "--strict-data"]), "cannot be read", "--strict-data")


def test_a_run_counts_skipped_images_in_its_summary_and_holdout(damaged_images, tmp_path):
    with pytest.warns(UserWarning):
        result = runner.invoke(app, run_args(damaged_images, tmp_path, "--val-subset", "100", "--n-trials", "2",
                                             "--study-name", "d"))
    assert result.exit_code == 0, result.output
    holdout = yaml.safe_load((tmp_path / "d" / "holdout.yaml").read_text())
    assert "unreadable images skipped" in result.stdout
    assert holdout["images"] + len(holdout["skipped"]) == 8 * 20 - 100


def test_an_empty_class_folder_is_named(demo_val, tmp_path):
    folder = Path(shutil.copytree(demo_val, tmp_path / "data"))
    shutil.rmtree(folder / "red")
    (folder / "red").mkdir()
    assert_user_error(runner.invoke(app, run_args(folder, tmp_path)), "data/red'", "holds no images")


def test_a_failed_export_leaves_no_partial_export(finished_run, tmp_path, monkeypatch):
    import tilesearch.deploy._export as export_module

    def broken(*args, **kwargs):
        raise RuntimeError("the ONNX exporter failed")

    monkeypatch.setattr(export_module, "export_onnx", broken)
    result = runner.invoke(app, ["export", str(finished_run), "--out", str(tmp_path / "export")])
    assert result.exit_code != 0
    assert list((tmp_path / "export").iterdir()) == []
    monkeypatch.undo()
    result = runner.invoke(app, ["export", str(finished_run), "--out", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "export").iterdir()}
    assert set(modes) == {"config.yaml", "model.safetensors", "model.onnx", "export.json"}
    assert len(set(modes.values())) == 1  # safetensors' file is no longer private while the rest is not


# ---------------------------------------------------------------------------- signals


def test_sigterm_ends_a_run_like_ctrl_c_without_a_traceback(demo_val, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from optuna.trial import TrialState

    command = [sys.executable, "-m", "tilesearch", *run_args(demo_val, tmp_path, "--n-trials", "500", "--study-name", "t")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((tmp_path / "t" / "run.yaml").is_file() and trials_of(tmp_path / "t") >= 2):
        time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "failed with" not in stderr and "tilesearch resume" in stderr
    states = {trial.state for trial in load_study_of_run(read_run_file(tmp_path / "t")).get_trials()}
    assert TrialState.RUNNING not in states


def test_a_model_that_cannot_be_copied_to_meta_is_traced_for_real():
    import timm
    import torch

    from tilesearch.nn import discover_se_blocks

    model = timm.create_model("regnety_002")
    model.scale = torch.ones(3, requires_grad=True) * 2  # a non-leaf tensor: deepcopy refuses the model
    assert len(discover_se_blocks(model, 64)) == 13


def test_only_the_command_that_starts_a_run_checks_memory(finished_run, demo_val, tmp_path, monkeypatch):
    import tilesearch.scoring._device as device

    monkeypatch.setattr(device, "available_memory", lambda _device: 1)  # a machine with no memory left
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, "--study-name", "m")), "--skip-memory-check")
    result = runner.invoke(app, run_args(demo_val, tmp_path, "--study-name", "m", "--n-trials", "1",
                                         "--skip-memory-check"))
    assert result.exit_code == 0, result.output
    copy = copy_of(finished_run, tmp_path)  # resume, export: the run was checked when it started
    assert runner.invoke(app, ["resume", str(copy), "--n-trials", "1"]).exit_code == 0
    assert runner.invoke(app, ["export", str(copy), "--format", "safetensors"]).exit_code == 0


def test_the_demo_network_takes_a_new_head_on_its_pretrained_backbone():
    from tilesearch.zoo import load_model

    default, five = load_model(DEMO_MODEL_NAME), load_model(DEMO_MODEL_NAME, num_classes=5)
    assert five.head.fc.out_features == 5
    assert all(default.state_dict()[key].equal(value) for key, value in five.state_dict().items() if "head" not in key)
