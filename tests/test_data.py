"""Data layer: loading the real sample, every bad-input case, swap, folds.

Bad inputs tried (each row is a test below; whole files, encodings and separators: tests/test_bad_inputs.py):

| case                         | input                                   | expected                                   |
|------------------------------|-----------------------------------------|--------------------------------------------|
| invalid JSON                 | `["unterminated`                        | one turn with the raw text, not_json += 1  |
| plain text (WSDM layout)     | `Hello there`                           | one turn "Hello there", not_json += 1      |
| JSON scalar                  | `42`                                    | one turn "42", not_json += 1               |
| `null` turns                 | `["hi", null]`                          | ["hi", ""], null_turns += 1                |
| empty string cell            | ``                                      | [""], missing_cells += 1, empty response   |
| empty JSON list / string     | `[]`, `[""]`                            | kept, counted as empty responses           |
| NaN cells (parquet/None)     | None                                    | [""], missing_cells += 1                   |
| lone surrogates              | `["a\\ud83c b"]`                        | "a\ufffd b", lone_surrogates += 1          |
| escaped unicode pair         | `["\\ud83c\\udf4d"]`                    | the real emoji, nothing counted            |
| turn-count mismatch          | prompt 2 turns, response 1              | kept as is, turn_mismatch += 1             |
| missing column               | no `response_b`                         | ValueError naming file and column          |
| duplicate ids                | id 7 twice                              | both rows kept, duplicate_ids == 2         |
| 1 MB response                | 1,000,000 chars                         | loaded intact                              |
| UTF-8 BOM                    | file starts with \ufeff                 | `id` column found                          |
| labels not one-hot           | winner a=1, b=1                         | ValueError naming the row                  |
| label not 0/1                | winner_tie = "x"                        | ValueError naming column and row           |
| WSDM winner column           | winner=model_b / bad value              | label 1 / ValueError naming the row        |
| missing file                 | no such path                            | FileNotFoundError with the path            |
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import TEST, TRAIN
from kagglelib.data.folds import make_folds
from kagglelib.data.frame import swap_ab, swap_probs
from kagglelib.data.load import LoadReport, load_arena, parse_turns


def row(**kw):
    """A valid one-turn Kaggle train row, overridden by kw."""
    base = {"id": 1, "model_a": "m1", "model_b": "m2", "prompt": '["Q"]', "response_a": '["A"]',
            "response_b": '["B"]', "winner_model_a": 1, "winner_model_b": 0, "winner_tie": 0}
    base.update(kw)
    return base


def test_sample_loads_every_row_in_order(train_df, test_df):
    raw_train, raw_test = pd.read_csv(TRAIN), pd.read_csv(TEST)
    assert len(train_df) == 1110 and len(test_df) == 200
    assert train_df["id"].tolist() == raw_train["id"].tolist()
    assert test_df["id"].tolist() == raw_test["id"].tolist()
    assert np.bincount(train_df["label"]).tolist() == [378, 390, 342]
    assert (train_df["label"].to_numpy() == raw_train[["winner_model_a", "winner_model_b", "winner_tie"]]
            .to_numpy().argmax(1)).all()
    assert "label" not in test_df.columns
    # texts round-trip: every turn equals json.loads of the raw cell (null -> "")
    for col in ("prompt", "response_a", "response_b"):
        for parsed, raw in zip(train_df[col], raw_train[col]):
            assert parsed == ["" if t is None else t for t in json.loads(raw)]
    report = train_df.attrs["load_report"]
    assert report.rows == 1110 and report.null_turns == 5 and report.not_json == 0
    assert train_df["model_a"].nunique() > 40


@pytest.mark.parametrize("cell, expected, counter", [
    ('["unterminated', ['["unterminated'], "not_json"),
    ("Hello there", ["Hello there"], "not_json"),
    ("42", ["42"], "not_json"),
    ('["hi", null]', ["hi", ""], "null_turns"),
    ('["a\\ud83c b"]', ["a\ufffd b"], "lone_surrogates"),
    ('["\\ud83c\\udf4d"]', ["\U0001F34D"], None),
    ("[]", [], None),
    (None, [""], "missing_cells"),
    (float("nan"), [""], "missing_cells"),
])
def test_parse_turns_fallbacks(cell, expected, counter):
    report = LoadReport(path="x")
    assert parse_turns(cell, report, row=3) == expected
    for name in ("not_json", "null_turns", "lone_surrogates", "missing_cells"):
        assert getattr(report, name) == (1 if name == counter else 0), name
    if counter:
        assert report.examples[counter] == [3]


def test_bad_file_keeps_every_row(write_csv):
    rows = [
        row(id=1, response_a='["unterminated'),
        row(id=2, response_b='["x", null]', prompt='["p1", "p2"]', response_a='["a1", "a2"]'),
        row(id=3, response_a=""),
        row(id=4, response_b='["lone \\udc00 surrogate"]'),
        row(id=5, prompt='["p1", "p2"]'),                       # turn mismatch
        row(id=7, response_a=json.dumps(["x" * 1_000_000])),    # 1 MB response
        row(id=7, response_b='[""]'),                           # duplicate id, empty response
    ]
    df = load_arena(write_csv(rows))
    assert df["id"].tolist() == [1, 2, 3, 4, 5, 7, 7]
    assert df.loc[0, "response_a"] == ['["unterminated']
    assert df.loc[1, "response_b"] == ["x", ""]
    assert df.loc[2, "response_a"] == [""]
    assert df.loc[3, "response_b"] == ["lone \ufffd surrogate"]
    assert len(df.loc[5, "response_a"][0]) == 1_000_000
    r = df.attrs["load_report"]
    assert (r.not_json, r.null_turns, r.missing_cells, r.lone_surrogates) == (1, 1, 1, 1)
    assert r.turn_mismatch == 1 and r.examples["turn_mismatch"] == [4]
    assert r.duplicate_ids == 2 and r.empty_responses == 2
    assert "duplicate_ids=2" in r.summary()
    assert df["label"].tolist() == [0] * 7


def test_utf8_bom(tmp_path):
    path = tmp_path / "bom.csv"
    pd.DataFrame([row(id=11)]).to_csv(path, index=False, encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert load_arena(path)["id"].tolist() == [11]


def test_missing_column_names_file_and_column(write_csv):
    path = write_csv([{k: v for k, v in row().items() if k != "response_b"}])
    with pytest.raises(ValueError, match=r"bad\.csv.*missing required column.*response_b"):
        load_arena(path)


@pytest.mark.parametrize("override, pattern", [
    ({"winner_model_b": 1}, r"row 0 .*not one-hot"),
    ({"winner_tie": "x"}, r"column 'winner_tie' row 0"),
])
def test_bad_labels_name_the_row(write_csv, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_arena(write_csv([row(**override)]))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_arena("nope.csv")


def test_wsdm_parquet_layout(tmp_path):
    df = pd.DataFrame({"id": ["a1", "a2"], "prompt": ["Bonjour ?", "Hi"], "response_a": ["Salut", "Hello"],
                       "response_b": ["Allô", None], "winner": ["model_b", "model_a"],
                       "model_a": ["x", "y"], "model_b": ["y", "x"], "language": ["French", "English"]})
    path = tmp_path / "train.parquet"
    df.to_parquet(path)
    out = load_arena(path)
    assert out["label"].tolist() == [1, 0]
    assert out["prompt"].tolist() == [["Bonjour ?"], ["Hi"]]
    assert out["response_b"].tolist() == [["Allô"], [""]]
    assert out["language"].tolist() == ["French", "English"]
    assert out.attrs["load_report"].layout == "wsdm" and out["id"].tolist() == ["a1", "a2"]
    df.loc[1, "winner"] = "both"
    df.to_parquet(path)
    with pytest.raises(ValueError, match="'winner' row 1"):
        load_arena(path)


def test_swap_ab_is_an_involution(train_df):
    swapped = swap_ab(train_df)
    assert swapped["response_a"].tolist() == train_df["response_b"].tolist()
    assert swapped["model_b"].tolist() == train_df["model_a"].tolist()
    assert (swapped["label"].to_numpy() == np.array([1, 0, 2])[train_df["label"].to_numpy()]).all()
    assert swapped["id"].tolist() == train_df["id"].tolist()
    back = swap_ab(swapped)
    for col in train_df.columns:
        assert back[col].tolist() == train_df[col].tolist()
    p = np.array([[0.5, 0.3, 0.2]])
    assert swap_probs(p).tolist() == [[0.3, 0.5, 0.2]]


def test_folds_group_by_prompt_and_are_deterministic(train_df):
    folds = make_folds(train_df, n_splits=5, seed=0)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    assert (folds == make_folds(train_df, n_splits=5, seed=0)).all()
    assert not (folds == make_folds(train_df, n_splits=5, seed=1)).all()
    prompts = train_df["prompt"].map(tuple)
    assert (pd.Series(folds).groupby(prompts.to_numpy()).nunique() == 1).all()
    shares = pd.crosstab(folds, train_df["label"], normalize="index").to_numpy()
    assert np.abs(shares - np.bincount(train_df["label"]) / len(train_df)).max() < 0.06


def test_ids_survive_any_index_and_keep_their_text(tmp_path):
    """A parquet saved from a filtered frame carries its old index; ids are matched by position, never by index."""
    df = pd.DataFrame({"id": [7, 8, 9], "prompt": ['["q"]'] * 3, "response_a": ['["a"]'] * 3,
                       "response_b": ['["b"]'] * 3, "winner_model_a": [1, 0, 0], "winner_model_b": [0, 1, 0],
                       "winner_tie": [0, 0, 1]}, index=[700, 701, 702])
    df.to_parquet(tmp_path / "t.parquet")
    out = load_arena(tmp_path / "t.parquet")
    assert out["id"].tolist() == [7, 8, 9] and out["id"].dtype == np.int64 and out["label"].tolist() == [0, 1, 2]
    assert out.attrs["load_report"].layout == "kaggle" and out.attrs["load_report"].duplicate_ids == 0
    df.assign(id=["007", "8", "9"]).to_csv(tmp_path / "t.csv", index=False)
    assert load_arena(tmp_path / "t.csv")["id"].tolist() == ["007", "8", "9"]   # "007" is not the id 7
