"""Soft labels, the one A/B swap, several train files with de-duplication, teacher checks (fast tier)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import TEST, TRAIN
from kagglelib.data.folds import leakage_report, load_training, make_folds, split_paths
from kagglelib.data.frame import (TARGET_COLUMNS, TEXT_COLUMNS, WINNER_COLUMNS, content_fingerprint, is_soft,
                                  one_hot, pair_keys, swap_ab, swap_labels, swap_probs, targets)
from kagglelib.data.load import load_arena
from kagglelib.scoring.metrics import accuracy, log_loss, summarise
from kagglelib.training.baseline import augment, expand_soft
from kagglelib.run.config import RunConfig


def row(**kw):
    """A valid one-turn Kaggle train row, overridden by kw."""
    base = {"id": 1, "model_a": "m1", "model_b": "m2", "prompt": '["Q"]', "response_a": '["A"]',
            "response_b": '["B"]', "winner_model_a": 1, "winner_model_b": 0, "winner_tie": 0}
    base.update(kw)
    return base


def test_soft_winner_columns_load_as_targets(write_csv):
    path = write_csv([row(id=1, winner_model_a=0.2, winner_model_b=0.5, winner_tie=0.3),
                      row(id=2), row(id=3, winner_model_a=0.0, winner_model_b=0.0, winner_tie=1.0)])
    df = load_arena(path)
    np.testing.assert_allclose(targets(df), [[0.2, 0.5, 0.3], [1, 0, 0], [0, 0, 1]])
    assert df["label"].tolist() == [1, 0, 2] and is_soft(df)
    # swap_ab swaps the targets with the texts; swap_probs is the same permutation
    np.testing.assert_allclose(targets(swap_ab(df)), swap_probs(targets(df)))
    assert swap_ab(df)["label"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("override, pattern", [
    ({"winner_model_a": 0.5, "winner_model_b": 0.4, "winner_tie": 0.0},
     r"bad\.csv: row 0 \(id 1\) .*summing to 1.*\[0\.5, 0\.4, 0\.0\]"),
    ({"winner_model_a": 1.2, "winner_model_b": -0.2, "winner_tie": 0.0},
     r"bad\.csv: column 'winner_model_a' row 0 .*got '1\.2'"),
    ({"winner_model_a": 0.5, "winner_model_b": 0.5000001, "winner_tie": 0.0}, None),   # within 1e-6: accepted
])
def test_soft_label_file_errors_name_file_row_values(write_csv, override, pattern):
    path = write_csv([row(), row(id=2, **override)] if pattern is None else [row(**override)])
    if pattern is None:
        assert load_arena(path)["label"].tolist() == [0, 1]
    else:
        with pytest.raises(ValueError, match=pattern):
            load_arena(path)


def test_one_hot_data_behaves_as_before(train_df):
    labels = train_df["label"].to_numpy()
    assert not is_soft(train_df)
    np.testing.assert_array_equal(targets(train_df), one_hot(labels))
    probs = np.random.default_rng(0).dirichlet(np.ones(3), len(labels))
    # identical log loss from integer labels and from one-hot probability targets
    assert log_loss(labels, probs) == pytest.approx(log_loss(one_hot(labels), probs), abs=1e-12)
    assert summarise(labels, probs) == pytest.approx(summarise(one_hot(labels), probs))
    # the fingerprint of one-hot data ignores the new target columns
    bare = train_df.drop(columns=list(TARGET_COLUMNS))
    assert content_fingerprint(train_df) == content_fingerprint(bare)
    # a single train file is loaded exactly as load_arena loads it
    pd.testing.assert_frame_equal(load_training(str(TRAIN)), train_df)


def test_one_swap_helper_everywhere():
    labels = np.array([0, 1, 2, 1])
    assert swap_labels(labels).tolist() == [1, 0, 2, 0]
    probs = np.array([[0.6, 0.3, 0.1]])
    assert swap_probs(probs).tolist() == [[0.3, 0.6, 0.1]]
    assert swap_probs(probs[0]).tolist() == [0.3, 0.6, 0.1]
    assert swap_probs(np.array([[0.7, 0.3]])).tolist() == [[0.3, 0.7]]
    feats = pd.DataFrame({"len_a": [1.0, 2.0], "len_b": [5.0, 7.0]})
    _, y = augment(feats, labels[:2])
    assert y.tolist() == [0, 1, 1, 0]
    _, t = augment(feats, one_hot(labels[:2]) * 0.5 + 0.5 / 3)
    np.testing.assert_allclose(t[2:], swap_probs(t[:2]))


def test_soft_targets_for_gbdt_are_weighted_expanded_rows():
    feats = pd.DataFrame({"x": [1.0, 2.0]})
    x, y, w = expand_soft(feats, np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]))
    assert x["x"].tolist() == [1.0, 2.0, 2.0, 2.0] and y.tolist() == [0, 0, 1, 2]
    np.testing.assert_allclose(w, [1.0, 0.2, 0.5, 0.3])


def test_metrics_take_probability_targets():
    t = np.array([[0.2, 0.5, 0.3]])
    p = np.array([[0.1, 0.6, 0.3]])
    assert log_loss(t, p) == pytest.approx(-(0.2 * np.log(0.1) + 0.5 * np.log(0.6) + 0.3 * np.log(0.3)))
    assert accuracy(t, p) == 1.0


def _kaggle_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The normalised rows back in the Kaggle CSV layout."""
    out = pd.DataFrame({"id": df["id"], "model_a": df["model_a"], "model_b": df["model_b"]})
    for col in TEXT_COLUMNS:
        out[col] = df[col].map(json.dumps)
    for col, values in zip(WINNER_COLUMNS, targets(df).T):
        out[col] = values
    return out


def test_several_files_drop_exact_and_ab_swapped_duplicates(tmp_path, train_df, test_df):
    first = train_df.iloc[:40]
    second = pd.concat([
        swap_ab(train_df.iloc[[3]]),          # an A/B-swapped copy of a row of the first file
        train_df.iloc[[7]],                        # an exact copy
        train_df.iloc[[50, 51]],                   # new rows
        train_df.iloc[[50]],                       # a duplicate inside the second file: kept, counted
    ]).reset_index(drop=True)
    second["id"] = ["x3", "x7", "n50", "n51", "n50b"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _kaggle_rows(first).to_csv(a, index=False)
    _kaggle_rows(second).to_csv(b, index=False)
    df = load_training(f"{a},{b}")
    report = df.attrs["train_report"]
    assert [f["rows"] for f in report["files"]] == [40, 5]
    assert [f["duplicates_dropped"] for f in report["files"]] == [0, 2] and report["duplicates_dropped"] == 2
    assert report["files"][1]["duplicates_within_file_kept"] == 1
    assert df["id"].tolist() == [str(i) for i in first["id"]] + ["n50", "n51", "n50b"]
    assert df["source"].tolist() == [0] * 40 + [1] * 3
    # folds grouped by prompt across both files; the leakage report counts prompts shared with the test file
    folds = make_folds(df, 3)
    leak = leakage_report(df, folds, test_df)
    assert leak["train_rows_prompt_in_other_fold"] == 0
    test_prompts = set(test_df["prompt"].map(tuple))
    assert leak["train_rows_prompt_in_test"] == int(df["prompt"].map(tuple).isin(test_prompts).sum()) > 0
    # the swapped key is symmetric
    assert pair_keys(train_df.iloc[[3]])[0] == pair_keys(swap_ab(train_df.iloc[[3]]))[0]


def test_ids_shared_by_two_files_are_an_error(tmp_path, train_df):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _kaggle_rows(train_df.iloc[:5]).to_csv(a, index=False)
    other = train_df.iloc[10:12].copy()
    other["id"] = train_df["id"].iloc[:2].to_numpy()
    _kaggle_rows(other).to_csv(b, index=False)
    with pytest.raises(ValueError, match=r"occurs in several train files"):
        load_training([str(a), str(b)])


def test_train_path_list_resolves_each_item():
    cfg = RunConfig(train_path=f"{TRAIN}, {TEST}")
    assert split_paths(cfg.train_path) == [str(TRAIN), str(TEST)]
    assert RunConfig(train_path=[str(TRAIN)]).train_path == str(TRAIN)
