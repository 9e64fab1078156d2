"""Several workers on one study: journal file and a real PostgreSQL server, killed workers, bad storages.

The PostgreSQL cases need TILESEARCH_TEST_POSTGRES_URL (`.ci/run` starts a server with
`.ci/postgres start` and sets it); without it they are skipped, except under CI where
they fail, so that CI can never pass without having run them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import assert_user_error
from optuna.trial import TrialState
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.search import load_study_of_run, make_storage, read_run_file
from tilesearch.zoo import DEMO_MODEL_NAME

runner = CliRunner()
POSTGRES_URL = os.environ.get("TILESEARCH_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _postgres_password(monkeypatch):
    """Run folders record the URL without its password; workers and tests read it from PGPASSWORD."""
    if POSTGRES_URL:
        from sqlalchemy.engine import make_url

        monkeypatch.setenv("PGPASSWORD", make_url(POSTGRES_URL).password or "")


@pytest.fixture
def postgres_url() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail("TILESEARCH_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL tests (see .ci/run)")
    pytest.skip("no PostgreSQL server: start one with `.ci/postgres start` and set TILESEARCH_TEST_POSTGRES_URL to its URL")


@pytest.fixture(params=["journal", "postgresql"])
def storage(request, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "shared" / "study.log")
    return request.getfixturevalue("postgres_url")


def run_args(data, out, storage, name, *extra):
    return ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(data), "--val-subset", "80",
            "--out", str(out), "--storage", storage, "--study-name", name, "--strategy", "sampler", *extra]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # one PostgreSQL database serves every test


def pareto_points(trials) -> set[tuple[float, float]]:
    """Non-dominated (score up, buffer down) points of the feasible trials, by brute force."""
    points = {(t.values[0], t.values[1]) for t in trials if t.user_attrs["feasible"]}
    return {p for p in points if not any(q != p and q[0] >= p[0] and q[1] <= p[1] for q in points)}


def test_two_workers_take_exactly_the_target_and_report_the_studys_front(demo_val, tmp_path, storage):
    name = unique_name("two")
    result = runner.invoke(app, run_args(demo_val, tmp_path, storage, name, "--n-trials", "16", "--workers", "2",
                                         "--buffer-budget", "60%", "--batch-size", "4"))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / name
    from sqlalchemy.engine import make_url

    recorded = read_run_file(run_dir)["storage"]
    if storage == POSTGRES_URL:  # no password on disk: workers read PGPASSWORD
        assert make_url(recorded).password is None and f":{make_url(storage).password}@" not in (run_dir / "run.yaml").read_text()
    study = load_study_of_run(read_run_file(run_dir))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 16
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both workers took trials
    by_config: dict[tuple, list] = {}
    for trial in complete:
        if "reused_from" not in trial.user_attrs:  # reused: the sampler asked again, the score was copied
            by_config.setdefault(tuple(sorted(trial.user_attrs["tiles"].items())), []).append(trial)
    for twins in by_config.values():  # measured twice only when two workers were handed it at the same time
        for a, b in zip(twins, twins[1:]):
            assert a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
    shown = pd.read_csv(run_dir / "pareto.csv")
    assert set(zip(shown["score"], shown["buffer"])) == pareto_points(complete)

    assert_user_error(runner.invoke(app, ["worker", str(run_dir), "--buffer-budget", "10%"]), "budget='60%'", "'10%'")
    assert_user_error(runner.invoke(app, ["worker", str(run_dir), "--n-trials", "0"]), "number of trials 0")
    joined = runner.invoke(app, ["worker", "--study", name, "--storage", storage, "--out", str(tmp_path / "elsewhere")])
    assert joined.exit_code == 0, joined.output  # the target is met: it takes nothing and writes the outputs
    assert "took 0 trials" in joined.output and (tmp_path / "elsewhere" / name / "pareto.csv").is_file()
    assert len(load_study_of_run(read_run_file(run_dir)).get_trials(states=(TrialState.COMPLETE,))) == 16


def wait_for_running_trial(storage_url: str, name: str, pid: int, after: int, deadline: float) -> int:
    storage = make_storage(storage_url)
    while time.time() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.2)
            continue
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            mine = trial.user_attrs.get("worker", {}).get("pid") == pid
            chosen = done and len(trial.params) == len(done[0].params)  # its whole config: it is being scored
            if trial.number >= after and mine and chosen:
                return trial.number
        time.sleep(0.02)
    raise AssertionError("the first worker never got to a trial")


def test_a_killed_workers_trial_fails_and_its_config_is_retried(demo_val, tmp_path, storage):
    name = unique_name("kill")
    env = {**os.environ, "TILESEARCH_HEARTBEAT_INTERVAL": "1", "TILESEARCH_HEARTBEAT_GRACE": "4"}
    # On PostgreSQL the first worker poses as another machine: only its stopped heartbeat can give it away.
    first_env = {**env, "TILESEARCH_WORKER_HOST": "elsewhere"} if storage == POSTGRES_URL else env
    args = run_args(demo_val, tmp_path, storage, name, "--n-trials", "8", "--batch-size", "4")
    first = subprocess.Popen([sys.executable, "-m", "tilesearch", *args], env=first_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        killed = wait_for_running_trial(storage, name, first.pid, after=3, deadline=time.time() + 240)
    finally:
        first.kill()  # SIGKILL in the middle of the trial: nothing of tilesearch's runs
        first.wait()
    run_dir = tmp_path / name
    trials = {t.number: t for t in load_study_of_run(read_run_file(run_dir)).get_trials()}
    assert trials[killed].state == TrialState.RUNNING  # nobody has failed it yet
    completed_before = sum(t.state == TrialState.COMPLETE for t in trials.values())
    assert completed_before < 8

    second = subprocess.run([sys.executable, "-m", "tilesearch", "worker", str(run_dir)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    study = load_study_of_run(read_run_file(run_dir))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[killed].params  # the same config, evaluated by the second worker
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 8


def test_storage_urls_lose_their_password_before_reaching_disk():
    from tilesearch.search import without_password

    assert without_password("postgresql://ann:s3cret@db:5432/studies") == ("postgresql://ann@db:5432/studies", "s3cret")
    assert without_password("postgresql://ann@db/studies") == ("postgresql://ann@db/studies", None)
    assert without_password("sqlite:///runs/x/study.db") == ("sqlite:///runs/x/study.db", None)


def test_storages_that_cannot_serve_a_worker_are_one_line_errors(tmp_path):
    unreachable = "postgresql://tilesearch:secret@127.0.0.1:1/tilesearch"
    result = runner.invoke(app, ["worker", "--study", "s", "--storage", unreachable])
    assert_user_error(result, "cannot open storage", "refused")
    assert "secret" not in result.stderr  # the password is masked
    assert_user_error(runner.invoke(app, ["worker", "--study", "s", "--storage", str(tmp_path / "none.log")]), "does not exist")
    assert_user_error(runner.invoke(app, ["worker", "--study", "s", "--storage", "redis://x"]), "unknown storage")
    assert_user_error(runner.invoke(app, ["worker", "--study", "s"]), "--storage")
    assert_user_error(runner.invoke(app, ["worker", str(tmp_path)]), "not a tilesearch run folder")

    journal = str(tmp_path / "j.log")
    optuna.create_study(study_name="other", storage=make_storage(journal))
    assert_user_error(runner.invoke(app, ["worker", "--study", "nope", "--storage", journal]), "'nope'", "'other'")
    assert_user_error(runner.invoke(app, ["worker", "--study", "other", "--storage", journal]), "not made by `tilesearch run`")


def test_postgresql_credentials_and_study_names_are_checked(postgres_url):
    from sqlalchemy.engine import make_url

    storage = postgres_url
    wrong = make_url(storage).set(password="not-the-password").render_as_string(hide_password=False)
    result = runner.invoke(app, ["worker", "--study", "s", "--storage", wrong])
    assert_user_error(result, "cannot open storage", "password authentication failed")
    assert "not-the-password" not in result.stderr
    assert_user_error(runner.invoke(app, ["worker", "--study", unique_name("nope"), "--storage", storage]), "is not in storage")


def test_bad_worker_counts_are_refused_before_a_study_exists(demo_val, tmp_path):
    storage = str(tmp_path / "study.log")
    assert_user_error(runner.invoke(app, run_args(demo_val, tmp_path, storage, "w", "--workers", "0")), "workers 0")
    assert not Path(storage).exists()


def test_an_unsigned_running_trial_is_failed_after_the_grace_period(demo_val, tmp_path, monkeypatch):
    """A worker that died between taking a trial and signing it leaves an anonymous RUNNING trial."""
    storage = str(tmp_path / "study.log")
    assert runner.invoke(app, run_args(demo_val, tmp_path, storage, "o", "--n-trials", "3")).exit_code == 0
    study = load_study_of_run(read_run_file(tmp_path / "o"))
    orphan = study.ask().number  # RUNNING, no worker identity, never to finish
    monkeypatch.setenv("TILESEARCH_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("TILESEARCH_HEARTBEAT_GRACE", "2")
    result = runner.invoke(app, ["resume", str(tmp_path / "o"), "--n-trials", "2"])
    assert result.exit_code == 0, result.output
    trials = {t.number: t for t in load_study_of_run(read_run_file(tmp_path / "o")).get_trials()}
    assert trials[orphan].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 5


def test_workers_that_all_fail_make_the_run_fail(demo_val, tmp_path, monkeypatch):
    monkeypatch.setenv("TILESEARCH_HEARTBEAT_INTERVAL", "soon")  # each worker stops on it with a one-line error
    result = runner.invoke(app, run_args(demo_val, tmp_path, str(tmp_path / "study.log"), "f", "--n-trials", "4",
                                         "--workers", "2"))
    assert result.exit_code == 1
    assert "worker 0 exited with status 2" in result.stderr and "stopped at 0 of 4 trials" in result.stderr
    assert "TILESEARCH_HEARTBEAT_INTERVAL" in (tmp_path / "f" / "workers" / "worker-0.log").read_text()
