"""A run, a teacher, a train file and an encoder are identified by content, never by a folder name, a path or an mtime."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import TEST, TRAIN
from kagglelib.core.io import read_json
from kagglelib.core.paths import minilm_dir
from kagglelib.data.features import embed_texts
from kagglelib.inference.pseudo import pseudo_label
from kagglelib.inference.submit import InferenceConfig, run_inference
from kagglelib.models import pairwise
from kagglelib.packaging import package
from kagglelib.run.store import manifest_hash
from kagglelib.training.baseline import BaselineConfig, run_baseline
from kagglelib.run.config import make_config
from kagglelib.training.config import EncoderTrainConfig
from kagglelib.training.fit import resume_state
from kagglelib.training.inputs import arena_with_folds


def small_baseline(output_dir, seed: int, run_name: str = "baseline"):
    """A quick 02 run (2 folds, 30 rounds, 200 rows, no MiniLM features): seconds on the sample."""
    cfg = BaselineConfig(output_dir=str(output_dir), run_name=run_name, n_folds=2, n_estimators=30, seed=seed,
                         max_train_rows=200, use_char_tfidf=False, use_embeddings=False, embedding_components=0,
                         compare=False)
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


def twin_encoders(root):
    """Two encoder folders both named ``enc``, with the same files, sizes and mtimes but other weights (tiny random
    BERTs with MiniLM's tokenizer): as two attached datasets, or a folder re-copied with ``cp -p``."""
    import torch
    from transformers import BertConfig, BertModel

    src = minilm_dir()
    folders = []
    for seed, where in ((0, "a"), (1, "b")):
        folder = root / where / "enc"
        torch.manual_seed(seed)
        BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
                  ).save_pretrained(folder, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(src / name, folder / name)
        folders.append(folder)
    for name in os.listdir(folders[0]):
        assert (folders[0] / name).stat().st_size == (folders[1] / name).stat().st_size, name
        stamp = os.stat(folders[0] / name).st_mtime_ns
        for f in folders:
            os.utime(f / name, ns=(stamp, stamp))
    return folders


TEXTS = ["Paris is the capital of France.", "word " * 80, "How do I bake bread?"]


def test_encoder_caches_follow_the_weights_not_the_folder_name(tmp_path):
    a, b = twin_encoders(tmp_path)
    cache = tmp_path / "cache"
    # 04's pairwise store (models.pairwise.store_dir)
    kw = dict(window_tokens=32, max_windows=2, progress=False)
    ea = pairwise.embed_chunked(TEXTS, cache, model_dir=a, **kw)
    eb = pairwise.embed_chunked(TEXTS, cache, model_dir=b, **kw)
    assert not np.allclose(ea, eb)   # b's own vectors, not a's from the shared cache
    np.testing.assert_allclose(eb, pairwise.embed_chunked(TEXTS, None, model_dir=b, **kw), atol=1e-6)
    assert len(list(cache.glob("chunked_*"))) == 2
    # 02's embedding features (data.features.embed_texts)
    ta, tb = (embed_texts(TEXTS, cache_dir=cache, model_dir=f) for f in (a, b))
    assert not np.allclose(ta, tb)
    np.testing.assert_allclose(tb, embed_texts(TEXTS, model_dir=b), atol=1e-6)


def test_encoder_weights_replaced_in_place_are_read_again(tmp_path):
    """Same folder, same size, same mtime (cp -p of other weights over the file): the cache key is the content."""
    a, b = twin_encoders(tmp_path)
    cache, kw = tmp_path / "cache", dict(window_tokens=32, max_windows=2, progress=False)
    before = pairwise.embed_chunked(TEXTS, cache, model_dir=a, **kw)
    stamp = os.stat(a / "model.safetensors").st_mtime_ns
    shutil.copy2(b / "model.safetensors", a / "model.safetensors")
    os.utime(a / "model.safetensors", ns=(stamp, stamp))
    after = pairwise.embed_chunked(TEXTS, cache, model_dir=a, **kw)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, pairwise.embed_chunked(TEXTS, None, model_dir=b, **kw), atol=1e-6)


def test_a_backbone_name_matching_two_different_model_folders_is_an_error(tmp_path, monkeypatch):
    """Two attached datasets (or model versions) each hold a ``gemma-x`` folder: a name never picks one silently."""
    from kagglelib.models import build

    inputs = tmp_path / "input"
    for ds, weights in (("ds1", b"\x01" * 64), ("ds2", b"\x02" * 64)):
        (inputs / ds / "gemma-x").mkdir(parents=True)
        (inputs / ds / "gemma-x" / "config.json").write_text("{}")
        (inputs / ds / "gemma-x" / "model.safetensors").write_bytes(weights)
    # as on Kaggle: /kaggle/input and each dataset in it (so one folder is found from two roots)
    monkeypatch.setattr(build, "model_search_dirs", lambda: [inputs, inputs / "ds1", inputs / "ds2"])
    with pytest.raises(ValueError, match="2 model folders of that name with different contents"):
        build.resolve_backbone("gemma-x")
    shutil.copy2(inputs / "ds1" / "gemma-x" / "model.safetensors", inputs / "ds2" / "gemma-x" / "model.safetensors")
    assert build.resolve_backbone("gemma-x") == str(inputs / "ds1" / "gemma-x")   # the same model twice: fine
