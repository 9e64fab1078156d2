"""Atomic writes and the decoded-image cache: whole files or none, and a damaged cache is only a miss."""

import os
import stat
import threading

import pytest
import torch

from tilesearch.core import (
    TilesearchWarning,
    atomic_path,
    staged_files,
    write_text_atomically,
)
from tilesearch.data import load_cache, save_cache


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomically(tmp_path / "out.csv", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    path, errors = tmp_path / "pareto.png", []

    def write(text: str) -> None:
        try:
            for _ in range(50):
                write_text_atomically(path, text)
        except OSError as error:  # a shared temporary name fails here (FileNotFoundError on rename)
            errors.append(error)

    threads = [threading.Thread(target=write, args=(text,)) for text in ("a" * 1000, "b" * 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and path.read_text() in ("a" * 1000, "b" * 1000)
    assert os.listdir(tmp_path) == ["pareto.png"]


def test_a_folder_is_replaced_as_a_whole(tmp_path):
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "stale.txt").write_text("x")
    with atomic_path(tmp_path / "final") as staging:
        staging.mkdir()
        (staging / "model.safetensors").write_text("new")
    assert os.listdir(tmp_path / "final") == ["model.safetensors"]


def test_files_get_the_usual_mode_even_when_their_writer_makes_them_private(tmp_path):
    (tmp_path / "plain").write_text("")
    with atomic_path(tmp_path / "model.safetensors") as tmp:
        tmp.write_text("")
        tmp.chmod(0o600)  # what safetensors does with its file
    mode = stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_truncated_or_foreign_cache_is_a_miss(tmp_path):
    path = tmp_path / "images-0.pt"
    save_cache(path, {"pixels": torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "labels": torch.zeros(2)})
    assert set(load_cache(path, ("pixels", "labels"))) == {"pixels", "labels"}
    assert load_cache(path, ("pixels", "scales")) is None
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(TilesearchWarning, match="images-0.pt"):
        assert load_cache(path, ("pixels", "labels")) is None
    assert load_cache(tmp_path / "missing.pt", ("pixels",)) is None


def test_staged_files_arrive_together_or_not_at_all(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("a user's file")
    with pytest.raises(RuntimeError):
        with staged_files(tmp_path / "out", last="export.json") as staging:
            (staging / "config.yaml").write_text("x")
            raise RuntimeError("the ONNX check failed")
    assert os.listdir(tmp_path / "out") == ["mine.txt"] and os.listdir(tmp_path) == ["out"]
    with staged_files(tmp_path / "out", last="export.json") as staging:
        for name in ("export.json", "model.onnx", "config.yaml"):
            (staging / name).write_text(name)
    assert sorted(os.listdir(tmp_path / "out")) == ["config.yaml", "export.json", "mine.txt", "model.onnx"]
