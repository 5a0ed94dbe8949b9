"""Features of the GBDT baseline on real sample rows: hand-computed values, A/B antisymmetry, odd inputs."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from kagglelib.data.frame import swap_ab
from kagglelib.data.load import load_arena
from kagglelib.data.features import (FeatureConfig, PairFeaturizer, embed_texts, length_columns, pair_forms,
                                     swap_features, text_stats, truncate)
from kagglelib.core.paths import sample_paths
from kagglelib.data.text import join_turns


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_arena(sample_paths()[0]).iloc[:200].reset_index(drop=True)


@pytest.fixture(scope="module")
def featurizer(sample: pd.DataFrame) -> PairFeaturizer:
    return PairFeaturizer(FeatureConfig()).fit(sample)


@pytest.fixture(scope="module")
def feats(featurizer: PairFeaturizer, sample: pd.DataFrame) -> pd.DataFrame:
    return featurizer.transform(sample)


def odd_rows(sample: pd.DataFrame) -> pd.DataFrame:
    """Real rows edited into the awkward cases: empty, identical, whitespace-only and 1 MB responses."""
    df = sample.iloc[:5].copy().reset_index(drop=True)
    df.at[0, "response_a"] = [""]
    df.at[1, "response_b"] = list(df.at[1, "response_a"])
    df.at[2, "response_a"] = ["   \n "]
    df.at[2, "response_b"] = [""]
    df.at[3, "response_a"] = ["word " * 200_000]  # 1,000,000 characters
    df.at[4, "prompt"] = [""]
    return df


def test_lengths_match_hand_computed_values(sample: pd.DataFrame, feats: pd.DataFrame) -> None:
    for i in (0, 7, 42):
        text_a = "\n".join(sample.at[i, "response_a"])
        text_b = "\n".join(sample.at[i, "response_b"])
        assert feats.at[i, "chars_a"] == len(text_a)
        assert feats.at[i, "chars_b"] == len(text_b)
        assert feats.at[i, "words_a"] == len(text_a.split())
        assert feats.at[i, "lines_b"] == text_b.count("\n")
        assert feats.at[i, "questions_a"] == text_a.count("?")
        assert feats.at[i, "turns_a"] == len(sample.at[i, "response_a"])
        assert feats.at[i, "prompt_chars"] == len("\n".join(sample.at[i, "prompt"]))
        assert feats.at[i, "chars_diff"] == pytest.approx(len(text_a) - len(text_b))
        assert feats.at[i, "chars_logratio"] == pytest.approx(np.log1p(len(text_a)) - np.log1p(len(text_b)), abs=1e-5)


def test_markdown_and_phrase_counts() -> None:
    text = ("# Title\nSome **bold** text and `code`.\n\n## Part\n- one\n- two\n3. three\n"
            "```python\nprint(1)\n```\n| a | b |\n|---|---|\nSee https://x.org or [y](http://y.org)?\n"
            "I'm sorry, but I cannot provide that. Привет 你好")
    s = text_stats(pd.Series([text, ""])).iloc[0]
    assert s["headers"] == 2
    assert s["list_items"] == 3
    assert s["bold"] == 1
    assert s["inline_code"] == 1
    assert s["code_blocks"] == 1
    assert s["table_rows"] == 2
    assert s["links"] == 2
    assert s["questions"] == 1
    assert s["refusal"] == 1 and s["apology"] == 1
    assert s["cyrillic"] == 6 and s["cjk"] == 2
    assert s["non_ascii"] == 8
    assert s["non_ascii_share"] == pytest.approx(8 / len(text))
    empty = text_stats(pd.Series([""])).iloc[0]
    assert empty["empty"] == 1 and empty["chars"] == 0 and np.isfinite(empty.to_numpy()).all()


def test_swap_ab_gives_swapped_features_exactly(featurizer: PairFeaturizer, sample: pd.DataFrame,
                                                feats: pd.DataFrame) -> None:
    swapped = featurizer.transform(swap_ab(sample))
    pd.testing.assert_frame_equal(swapped, swap_features(feats), check_exact=True)
    diff_cols = [c for c in feats.columns if c.endswith(("_diff", "_logratio"))]
    assert len(diff_cols) > 40
    np.testing.assert_array_equal(swapped[diff_cols].to_numpy(), -feats[diff_cols].to_numpy())
    np.testing.assert_array_equal(swapped["chars_a"].to_numpy(), feats["chars_b"].to_numpy())
    # Order-free features do not move.
    for col in ("jaccard_ab", "tfidf_word_ab", "tfidf_char_ab", "identical", "prompt_chars"):
        np.testing.assert_array_equal(swapped[col].to_numpy(), feats[col].to_numpy())
    assert set(length_columns(feats.columns)) == {f"{n}_{f}" for n in ("chars", "words", "tokens", "turns")
                                                  for f in ("a", "b", "diff", "logratio")}


def test_similarities_are_cosines(feats: pd.DataFrame) -> None:
    for col in ("tfidf_word_prompt_a", "tfidf_char_prompt_b", "tfidf_word_ab", "jaccard_ab", "prompt_coverage_a"):
        assert feats[col].between(-1e-6, 1 + 1e-5).all(), col
    assert feats["tfidf_char_ab"].mean() > 0.2  # responses to one prompt share character n-grams


def test_empty_identical_and_huge_responses_are_finite_and_cheap(featurizer: PairFeaturizer,
                                                                 sample: pd.DataFrame) -> None:
    df = odd_rows(sample)
    start = time.time()
    f = featurizer.transform(df)
    assert time.time() - start < 10
    assert np.isfinite(f.to_numpy()).all()
    assert f.at[0, "empty_a"] == 1 and f.at[0, "chars_a"] == 0 and f.at[0, "words_a"] == 0
    assert f.at[1, "identical"] == 1 and f.at[1, "tfidf_word_ab"] == pytest.approx(1, abs=1e-5)
    assert f.at[1, "jaccard_ab"] == pytest.approx(1)
    diff_cols = [c for c in f.columns if c.endswith(("_diff", "_logratio"))]
    assert (f.loc[1, diff_cols] == 0).all()
    assert f.at[2, "empty_a"] == 1 and f.at[2, "both_empty"] == 1
    assert f.at[3, "chars_a"] == 1_000_000
    assert f.at[3, "words_a"] == pytest.approx(200_000, rel=0.01)  # counted on the truncation, scaled up
    assert f.at[4, "prompt_chars"] == 0


def test_truncate_only_touches_long_texts() -> None:
    s = pd.Series(["short", "x" * 50 + "y" * 50])
    out = truncate(s, 40)
    assert out[0] == "short"
    assert len(out[1]) <= 40 and out[1].startswith("x") and out[1].endswith("y")
    assert join_turns(pd.Series([["a", "b"], [""]])).tolist() == ["a\nb", ""]


def test_pair_forms_antisymmetric() -> None:
    a, b = np.array([0.0, 3.0, 10.0]), np.array([5.0, 3.0, 0.0])
    ab, ba = pair_forms(a, b, "x"), pair_forms(b, a, "x")
    np.testing.assert_array_equal(ab["x_diff"], -ba["x_diff"])
    np.testing.assert_array_equal(ab["x_logratio"], -ba["x_logratio"])
    assert ab["x_logratio"][1] == 0


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_minilm_embeddings_cached(tmp_path) -> None:
    texts = ["How do I bake bread?", "A recipe for bread: flour, water, salt, yeast.", "How do I bake bread?"]
    emb = embed_texts(texts, cache_dir=tmp_path, batch_size=2)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], atol=1e-6)
    assert emb[0] @ emb[1] > 0.3  # related texts are close in a real sentence encoder
    files = list(tmp_path.glob("emb_*.npy"))
    assert len(files) == 1
    np.save(files[0], emb * 2)  # a cache hit returns the stored array, not a recomputation
    np.testing.assert_allclose(embed_texts(texts, cache_dir=tmp_path), emb * 2)
