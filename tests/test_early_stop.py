"""Stopping a dominated candidate after its first images: the verdict, staged scoring, and a search that prunes."""

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tilesearch.cli import app
from tilesearch.core import get_metric
from tilesearch.data import decode_images, resolve_preprocessing
from tilesearch.scoring import PerImage, Scorer
from tilesearch.scoring._classifier import PER_IMAGE_SCORES
from tilesearch.search import (
    EarlyStop,
    Reference,
    RunSettings,
    image_forwards,
    prepare_resume,
    prepare_search,
    read_run_file,
    run_search,
    stopped_early,
)
from tilesearch.zoo import DEMO_MODEL_NAME, load_model

runner = CliRunner()
ACCURACY = get_metric("accuracy")


def samples(right: np.ndarray) -> PerImage:
    right = right.astype(float)
    return PerImage(np.stack([right, right, 0 * right, 0 * right, np.ones(len(right))], 1), PER_IMAGE_SCORES)


def test_looks_are_fractions_of_the_images_never_all_of_them_and_share_the_error_rate():
    stop = EarlyStop(fractions=(0.25, 0.5), minimum=100)
    assert stop.looks(1000) == [250, 500] and stop.looks(300) == [100, 150] and stop.looks(150) == [100]
    assert stop.looks(100) == [] and stop.looks(80) == []
    assert stop.look_level(1000) == pytest.approx(0.975) and stop.look_level(150) == pytest.approx(0.95)


def test_a_candidate_clearly_worse_than_a_smaller_measured_config_is_dominated():
    rng = np.random.default_rng(0)
    reference_right = rng.random(1000) < 0.9
    candidate = reference_right[:250].copy()
    candidate[np.flatnonzero(candidate)[:40]] = False  # 40 of the first 250 images lost: 16 points
    ref = Reference(trial=3, buffer=100, score=0.9, per_image=samples(reference_right))
    stop = EarlyStop()
    reason = stop.verdict(ACCURACY, samples(candidate), buffer=150, references=[ref])
    assert reason is not None and "trial 3" in reason and "first 250 images" in reason
    # a reference with more buffer than the candidate does not dominate it
    assert stop.verdict(ACCURACY, samples(candidate), buffer=99, references=[ref]) is None
    # the same predictions are not worse, and a difference of one image is not sure
    assert stop.verdict(ACCURACY, samples(reference_right[:250]), buffer=150, references=[ref]) is None
    one = reference_right[:250].copy()
    one[np.flatnonzero(one)[0]] = False
    assert stop.verdict(ACCURACY, samples(one), buffer=150, references=[ref]) is None


def test_the_verdict_compares_with_the_best_reference_that_uses_no_more_buffer():
    good, poor = np.ones(400, bool), np.zeros(400, bool)
    poor[:200] = True
    references = [Reference(1, 50, 0.5, samples(poor)), Reference(2, 80, 1.0, samples(good)), Reference(4, 500, 1.0, samples(good))]
    candidate = np.ones(100, bool)
    candidate[:30] = False
    reason = EarlyStop().verdict(ACCURACY, samples(candidate), buffer=90, references=references)
    assert reason is not None and "trial 2" in reason


@pytest.fixture(scope="module")
def demo_scorer(demo_val):
    model = load_model(DEMO_MODEL_NAME)
    preprocessing = resolve_preprocessing(model)
    return Scorer(model, decode_images(str(demo_val), preprocessing), preprocessing, batch_size=32)


def test_staged_scores_are_the_first_images_then_all_of_them(demo_scorer):
    stages = list(demo_scorer.score_stages("1xW", looks=[50, 90]))
    assert [stage.total for stage in stages] == [50, 90, len(demo_scorer.images)]
    full = demo_scorer.score("1xW")
    assert stages[-1].accuracy == full.accuracy and stages[-1].kl == pytest.approx(full.kl)
    np.testing.assert_allclose(stages[1].per_image.values, full.per_image.values[:90], rtol=1e-5, atol=1e-6)
    assert len(list(demo_scorer.score_stages("1xW"))) == 1 and len(list(demo_scorer.score_stages("GAP", looks=[50]))) == 1


def test_scoring_in_the_faster_memory_format_agrees_with_the_plain_model(demo_scorer):
    model = load_model(DEMO_MODEL_NAME).eval()
    preprocessing = resolve_preprocessing(model)
    inputs = preprocessing.normalize(demo_scorer.images.pixels)
    with torch.inference_mode():
        plain = model(inputs)
    assert demo_scorer.memory_format in (torch.channels_last, torch.contiguous_format)
    torch.testing.assert_close(demo_scorer.logits("GAP"), plain, rtol=1e-4, atol=1e-4)


def test_a_search_stops_dominated_candidates_and_keeps_the_reason(demo_val, tmp_path):
    settings = RunSettings(model=DEMO_MODEL_NAME, data=str(demo_val), val_subset=160, budget="80%", strategy="sampler",
                           sampler="random", batch_size=16)
    search = prepare_search(settings, out_dir=tmp_path, study_name="s")
    search.early_stop = EarlyStop(fractions=(0.25, 0.5), minimum=32)
    result = run_search(search, n_trials=14, show_progress=False, report_holdout=False)
    study = result.study
    stopped = stopped_early(study)
    assert stopped, "random configs of the demo include clearly dominated ones"
    for trial in stopped:
        assert trial.user_attrs["images_scored"] < 160 and "dominated by trial" in trial.user_attrs["stopped_early"]
    done, full = image_forwards(study)
    assert done < full
    frame = pd.read_csv(tmp_path / "s" / "trials.csv")
    pruned = frame[frame["state"] == "PRUNED"]
    assert pruned["stopped_early"].notna().all() and (pruned["images_scored"] < 160).all()
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 14  # the target counts complete trials


def test_watching_only_records_the_verdict_and_scores_every_image(demo_val, tmp_path):
    settings = RunSettings(model=DEMO_MODEL_NAME, data=str(demo_val), val_subset=160, budget="80%", strategy="sampler",
                           sampler="random", batch_size=16)
    search = prepare_search(settings, out_dir=tmp_path, study_name="w")
    search.early_stop = EarlyStop(fractions=(0.25, 0.5), minimum=32, prune=False)
    study = run_search(search, n_trials=14, show_progress=False, report_holdout=False).study
    assert not stopped_early(study)
    watched = [t for t in study.trials if "early_verdict" in t.user_attrs]
    assert watched and all(t.user_attrs["images_scored"] == 160 for t in watched)


def test_no_early_stop_from_the_command_line(demo_val, tmp_path):
    result = runner.invoke(app, ["run", "--model", DEMO_MODEL_NAME, "--pretrained", "--data", str(demo_val),
                                 "--val-subset", "160", "--n-trials", "6", "--no-early-stop", "--batch-size", "16", "--strategy", "sampler",
                                 "--out", str(tmp_path), "--study-name", "n"])
    assert result.exit_code == 0, result.output
    assert read_run_file(tmp_path / "n")["settings"]["early_stop"] is False
    assert prepare_resume(tmp_path / "n").early_stop is None  # a resumed run keeps it off
    assert isinstance(prepare_search(RunSettings(model=DEMO_MODEL_NAME, data=str(demo_val), val_subset=160),
                                     out_dir=tmp_path, study_name="d").early_stop, EarlyStop)  # on by default


def test_scoring_through_the_looks_stops_at_the_first_dominated_one_or_only_watches():
    from types import SimpleNamespace

    reference = Reference(trial=1, buffer=10, score=1.0, per_image=samples(np.ones(400, bool)))
    candidate = np.ones(400, bool)
    candidate[150:] = False  # right on the first 150 images, wrong on the rest
    asked = []

    def stages(looks):
        asked.append(looks)
        for count in (*looks, 400):
            yield SimpleNamespace(per_image=samples(candidate[:count]))

    stop = EarlyStop(fractions=(0.25, 0.5), minimum=100)
    verdict = stop.judge(stages, 400, ACCURACY, buffer=20, references=[reference])
    assert asked == [[100, 200]] and verdict.score is None and verdict.images == 200 and "trial 1" in verdict.reason
    watched = EarlyStop(fractions=(0.25, 0.5), minimum=100, prune=False).judge(stages, 400, ACCURACY, 20, [reference])
    assert len(watched.score.per_image) == 400 and watched.images == 200
    assert stop.judge(stages, 400, ACCURACY, buffer=5, references=[reference]).reason is None  # more buffer: no verdict


def test_the_search_images_are_in_a_seeded_random_order_so_each_look_is_a_random_sample(demo_val, tmp_path):
    settings = RunSettings(model=DEMO_MODEL_NAME, data=str(demo_val), val_subset=120, space="uniform")
    labels = prepare_search(settings, out_dir=tmp_path, study_name="o").scorer.images.labels
    assert len(set(labels[:30].tolist())) >= 5  # class-sorted, the first quarter would hold two of the 8 classes
    again = prepare_search(settings, out_dir=tmp_path, study_name="p").scorer.images.labels
    assert torch.equal(labels, again)
