"""A run, a teacher and a train file are identified by content, never by a folder name, a path or an mtime."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from conftest import TEST, TRAIN
from kagglelib.core.io import read_json
from kagglelib.inference.pseudo import pseudo_label
from kagglelib.inference.submit import InferenceConfig, run_inference
from kagglelib.packaging import package
from kagglelib.run.store import manifest_hash
from kagglelib.training.baseline import BaselineConfig, run_baseline
from kagglelib.run.config import make_config
from kagglelib.training.config import EncoderTrainConfig
from kagglelib.training.fit import resume_state
from kagglelib.training.inputs import arena_with_folds


def small_baseline(output_dir, seed: int, run_name: str = "baseline"):
    """A quick 02 run (2 folds, 30 rounds, 200 rows): seconds on the sample."""
    cfg = BaselineConfig(output_dir=str(output_dir), run_name=run_name, n_folds=2, n_estimators=30, seed=seed,
                         max_train_rows=200, use_char_tfidf=False, use_embeddings=False, compare=False)
    return run_baseline(cfg)["run_dir"]


@pytest.fixture(scope="module")
def two_baselines(tmp_path_factory):
    """Two different runs, both in a folder named ``baseline`` (two attached datasets, two output dirs)."""
    root = tmp_path_factory.mktemp("two")
    return [small_baseline(root / "a", seed=1), small_baseline(root / "b", seed=2)]


def test_05_keeps_two_runs_with_the_same_folder_name_apart(two_baselines, tmp_path):
    a, b = two_baselines
    summary = run_inference(InferenceConfig(output_dir=str(tmp_path), runs=[str(a), str(b)], devices="cpu"))
    keys = [f"baseline-{manifest_hash(a)[:8]}", f"baseline-{manifest_hash(b)[:8]}"]
    assert summary["runs"] == keys and list(summary["weights"]) == keys and list(summary["valid_per_run"]) == keys
    out = tmp_path / "runs" / "submission"
    preds = [pd.read_csv(out / f"test_preds_{k}.csv") for k in keys]
    assert not np.allclose(preds[0].iloc[:, 1:].to_numpy(), preds[1].iloc[:, 1:].to_numpy())   # two members
    assert sorted(p.name for p in (tmp_path / "cache" / "inference").iterdir()) == sorted(keys)   # two caches
    assert [m["identity"] for m in summary["members"]] == [manifest_hash(a), manifest_hash(b)]
    with pytest.raises(ValueError, match="more than once"):
        run_inference(InferenceConfig(output_dir=str(tmp_path), runs=[str(a), str(a)], devices="cpu"))


def test_packaging_refuses_two_runs_with_the_same_folder_name(two_baselines, tmp_path):
    with pytest.raises(ValueError, match="share the folder name"):
        package([str(p) for p in two_baselines], "me", tmp_path / "pkg", tmp_path, wheels=[])


def test_pseudo_labels_refuse_a_blend_member_changed_since(tmp_path):
    run = small_baseline(tmp_path, seed=1)
    run_inference(InferenceConfig(output_dir=str(tmp_path), runs=[str(run)], devices="cpu"))
    pseudo_label("submission", TEST, tmp_path / "pl.csv", output_dir=tmp_path, devices="cpu")   # unchanged: fine
    assert read_json(tmp_path / "pl.csv.json")["runs"][0]["identity"] == manifest_hash(run)
    small_baseline(tmp_path, seed=2)   # retrained under the same name: a new generation of the member
    with pytest.raises(ValueError, match="retrained or replaced since"):
        pseudo_label("submission", TEST, tmp_path / "pl2.csv", output_dir=tmp_path, devices="cpu")


def test_teacher_is_recorded_by_content(tmp_path):
    teacher = tmp_path / "teacher.csv"
    pd.DataFrame({"id": [1], "winner_model_a": [0.2], "winner_model_b": [0.5], "winner_tie": [0.3]}).to_csv(teacher)
    cfg = make_config(EncoderTrainConfig, output_dir=str(tmp_path), teacher=str(teacher), teacher_other_data=True)
    before = resume_state(cfg)
    pd.DataFrame({"id": [1], "winner_model_a": [0.6], "winner_model_b": [0.1], "winner_tie": [0.3]}).to_csv(teacher)
    assert resume_state(cfg) != before   # same path, other teacher: finished folds / checkpoints are not reused


def test_train_file_cache_follows_content_not_mtime(tmp_path):
    raw = pd.read_csv(TRAIN)
    path = tmp_path / "train.csv"
    raw.iloc[:500].to_csv(path, index=False)
    stamp = os.stat(path).st_mtime_ns
    cfg = make_config(EncoderTrainConfig, output_dir=str(tmp_path), train_path=str(path))
    first, _ = arena_with_folds(cfg)
    raw.iloc[500:1000].to_csv(path, index=False)
    os.utime(path, ns=(stamp, stamp))   # as cp -p, rsync -t or unzip leave it: another file, the same mtime
    second, _ = arena_with_folds(cfg)
    assert second["id"].tolist() == raw["id"].iloc[500:1000].tolist() != first["id"].tolist()
