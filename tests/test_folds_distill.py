"""All-fold training, distillation with an out-of-fold teacher, pseudo-labels, soft targets in training."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import TEST, TRAIN
from kagglelib.data.frame import WINNER_COLUMNS, is_soft, prob_frame, swap_probs, targets
from kagglelib.data.load import load_arena
from kagglelib.training import fit as training_fit, inputs as training_inputs
from kagglelib.scoring.metrics import log_loss
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig, EncoderTrainConfig, fold_list
from kagglelib.training.fit import train
from kagglelib.training.inputs import arena_with_folds, load_teacher
from kagglelib.training.loop import distill_loss
from kagglelib.core.io import write_json
from kagglelib.run.store import write_manifest

TINY = {"max_steps": 2, "eval_steps": 2, "save_steps": 2, "max_train_rows": 16, "max_valid_rows": 12,
        "max_length": 96, "progress": False}


def _fake_run(root, name, train_path, table: pd.DataFrame, file: str = "oof.csv"):
    run = root / "runs" / name
    run.mkdir(parents=True)
    write_json({"config_class": "BaselineConfig", "train_path": str(train_path)}, run / "config.json")
    table.to_csv(run / file, index=False)
    write_manifest(run)   # a committed run (readers refuse one without a manifest)
    return run


@pytest.fixture(scope="module")
def train_frame():
    return arena_with_folds(make_config(EncoderTrainConfig, train_path=str(TRAIN)))


def test_teacher_must_be_out_of_fold(tmp_path, train_frame):
    df, folds = train_frame
    probs = np.full((len(df), 3), 1 / 3)
    oof = prob_frame(df["id"], probs, fold=folds, label=df["label"].to_numpy())
    cfg = lambda **kw: make_config(EncoderTrainConfig, output_dir=str(tmp_path), fold=1, **kw)  # noqa: E731
    rows = np.flatnonzero(folds != 1)
    # a single-fold run's validation predictions: the other folds' rows were trained on, not held out
    _fake_run(tmp_path, "onefold", TRAIN, oof[oof["fold"] == 0], "valid_preds.csv")
    with pytest.raises(ValueError, match=r"no out-of-fold prediction for \d+ of the 888 training rows"):
        load_teacher(cfg(teacher="onefold"), df, rows)
    # predictions with no fold record, or from a run on other train files, are refused unless overridden
    _fake_run(tmp_path, "nofold", TRAIN, oof.drop(columns=["fold"]))
    with pytest.raises(ValueError, match="no 'fold' column"):
        load_teacher(cfg(teacher="nofold"), df, rows)
    _fake_run(tmp_path, "otherdata", TEST, oof)
    with pytest.raises(ValueError, match="trained on .*test.csv"):
        load_teacher(cfg(teacher="otherdata"), df, rows)
    bare = tmp_path / "teacher.csv"
    oof.drop(columns=["fold", "label"]).to_csv(bare, index=False)
    with pytest.raises(ValueError, match="no fold record"):
        load_teacher(cfg(teacher=str(bare)), df, rows)
    assert load_teacher(cfg(teacher=str(bare), teacher_other_data=True), df, rows).shape == (888, 3)
    # a full out-of-fold record on the same train file is accepted, rows in the requested order
    oof.loc[5, list(WINNER_COLUMNS)] = [0.7, 0.2, 0.1]
    _fake_run(tmp_path, "full", TRAIN, oof)
    got = load_teacher(cfg(teacher="full"), df, np.array([5, 6]))
    np.testing.assert_allclose(got, [[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])


def test_distill_loss_is_t2_kl_of_softened_distributions():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.3, 0.1]])
    teacher = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    t = 2.0
    q = F.softmax(torch.log(teacher) / t, -1)
    p = F.log_softmax(logits / t, -1)
    expected = t * t * (q * (torch.log(q) - p)).sum(-1).mean()
    assert distill_loss(logits, teacher, t).item() == pytest.approx(expected.item(), rel=1e-6)
    # at T=1 with the student equal to the teacher the term vanishes
    assert distill_loss(torch.log(teacher), teacher, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_folds_parameter():
    assert fold_list(make_config(EncoderTrainConfig, folds="all")) == [0, 1, 2, 3, 4]
    assert fold_list(make_config(EncoderTrainConfig, folds="3, 1")) == [1, 3]
    assert fold_list(make_config(EncoderTrainConfig, fold=2)) == [2]
    with pytest.raises(ValueError, match="folds must be"):
        make_config(EncoderTrainConfig, folds="7")


@pytest.fixture(scope="module")
def all_folds(tmp_path_factory, one_torch_thread):
    """A tiny Gemma-2 trained on all 5 folds (whole folds held out), interrupted once in fold 0 and resumed."""
    out = tmp_path_factory.mktemp("allfolds")
    cfg = make_config(DecoderTrainConfig, output_dir=str(out), run_name="tiny_all", folds="all",
                                    **{**TINY, "max_valid_rows": 0})
    first = train(cfg, interrupt_at_step=2)
    metrics_ = train(cfg)
    return cfg, first, metrics_


@pytest.mark.slow
def test_all_folds_give_oof_for_every_row(all_folds):
    cfg, first, m = all_folds
    assert first["interrupted"] and first["fold"] == 0
    fold0 = json.loads((cfg.run_dir / "fold0" / "metrics.json").read_text())
    assert fold0["resumed_from"]            # fold 0 resumed from its own checkpoint
    df, folds = arena_with_folds(cfg)
    oof = pd.read_csv(cfg.run_dir / "oof.csv")
    assert oof["id"].tolist() == df["id"].tolist() and len(oof) == 1110 == m["n_valid"]
    assert oof["fold"].tolist() == folds.tolist()
    probs = oof[list(WINNER_COLUMNS)].to_numpy()
    assert m["valid_log_loss"] == pytest.approx(log_loss(df["label"].to_numpy(), probs))
    assert [r["fold"] for r in m["per_fold"]] == [0, 1, 2, 3, 4]
    # a second call reuses every finished fold
    mtime = (cfg.run_dir / "fold3" / "model").stat().st_mtime_ns
    again = train(cfg)
    assert again["valid_log_loss"] == pytest.approx(m["valid_log_loss"])
    assert (cfg.run_dir / "fold3" / "model").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_inference_averages_the_fold_models(all_folds, test_df):
    from kagglelib.inference.predictors import transformer_predictor
    from kagglelib.run.folder import Run

    cfg, _, _ = all_folds
    run = Run.open(cfg.run_dir)
    assert run.kind == "transformer" and len(run.fold_dirs) == 5
    rows = test_df.iloc[:6]
    each = [transformer_predictor(d)(rows) for d in run.fold_dirs]
    np.testing.assert_allclose(transformer_predictor(cfg.run_dir)(rows), np.mean(each, axis=0), atol=1e-6)
    assert not np.allclose(each[0], each[1])


@pytest.mark.slow
def test_distilled_student_from_all_fold_teacher(all_folds, tmp_path):
    cfg, _, _ = all_folds
    plain = make_config(DecoderTrainConfig, output_dir=cfg.output_dir, run_name="student_plain", **TINY)
    student = make_config(DecoderTrainConfig, output_dir=cfg.output_dir, run_name="student", teacher="tiny_all",
                                        distill_alpha=0.5, distill_temperature=2.0, **TINY)
    a, b = train(plain), train(student)
    assert b["teacher"] == "tiny_all" and np.isfinite(b["valid_log_loss"])
    assert a["train_history"][0]["loss"] != pytest.approx(b["train_history"][0]["loss"], abs=1e-6)
    # the student's own validation predictions are not out-of-fold for other folds: refused as a teacher
    with pytest.raises(ValueError, match="no out-of-fold prediction"):
        train(make_config(DecoderTrainConfig, output_dir=cfg.output_dir, run_name="s2", teacher="student",
                                                 fold=1, **TINY))


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_one_hot_targets_train_exactly_like_integer_labels(tmp_path, monkeypatch):
    runs = []
    for name, soft in (("hard", False), ("soft", True)):
        if soft:   # force the probability-target loss on the same one-hot data
            for module in (training_inputs, training_fit):
                monkeypatch.setattr(module, "is_soft", lambda df: True)
        runs.append(train(make_config(DecoderTrainConfig, output_dir=str(tmp_path), run_name=name, **TINY)))
    hard, soft = runs
    assert [r["loss"] for r in hard["train_history"]] == pytest.approx([r["loss"] for r in soft["train_history"]],
                                                                       abs=1e-6)
    assert hard["valid_log_loss"] == pytest.approx(soft["valid_log_loss"], abs=1e-6)


@pytest.mark.slow
def test_pseudo_labels_from_a_run_train_as_soft_rows(all_folds, tmp_path, train_df):
    from kagglelib.inference.pseudo import pseudo_label

    cfg, _, _ = all_folds
    pairs = pd.DataFrame({"prompt": [json.dumps(p) for p in train_df["prompt"].iloc[:8]],
                          "response_a": [json.dumps(r + [" (variant)"]) for r in train_df["response_a"].iloc[:8]],
                          "response_b": [json.dumps(r) for r in train_df["response_b"].iloc[:8]]})
    src = tmp_path / "pairs.jsonl"
    pairs.to_json(src, orient="records", lines=True)
    out = tmp_path / "pseudo.csv"
    side = pseudo_label("tiny_all", src, out, output_dir=cfg.output_dir, id_prefix="pl-")
    assert side["rows"] == 8 and side["runs"][0]["run"] == "tiny_all" and side["tta"]
    assert json.loads((tmp_path / "pseudo.csv.json").read_text())["created"]
    soft = load_arena(out)
    assert is_soft(soft) and soft["id"].tolist() == [f"pl-{i}" for i in range(8)]
    # swap TTA: the pseudo-labels of the swapped pairs are the swapped pseudo-labels
    swapped = pairs.rename(columns={"response_a": "response_b", "response_b": "response_a"})
    swapped.to_json(tmp_path / "swapped.jsonl", orient="records", lines=True)
    pseudo_label("tiny_all", tmp_path / "swapped.jsonl", tmp_path / "pseudo_sw.csv", output_dir=cfg.output_dir)
    np.testing.assert_allclose(targets(load_arena(tmp_path / "pseudo_sw.csv")),
                               swap_probs(targets(soft)), atol=1e-6)
    # the soft file joins training; its rows train with probability targets
    m = train(make_config(DecoderTrainConfig, output_dir=cfg.output_dir, run_name="with_pseudo",
                                                 train_path=f"{TRAIN},{out}", **{**TINY, "max_train_rows": 0,
                                                                                 "max_steps": 1}))
    report = m["data_report"]
    assert [f["rows"] for f in report["files"]] == [1110, 8] and report["files"][1]["soft_rows"] == 8
    assert report["duplicates_dropped"] == 0
