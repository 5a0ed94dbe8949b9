"""The pairwise encoder recipe (04's cpu-sample default), 02's whole-text embedding features, 06's factor table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kagglelib.analysis.factors import paired_difference, parse_factors, variant_name
from kagglelib.models import pairwise
from kagglelib.run.config import make_config
from kagglelib.training.config import EncoderTrainConfig


def random_inputs(n: int = 40, d: int = 6, dz: int = 3, seed: int = 0) -> pairwise.PairInputs:
    rng = np.random.default_rng(seed)
    return pairwise.PairInputs(rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32),
                               rng.normal(size=(n, dz)).astype(np.float32))


def test_windows_keep_the_head_and_the_tail():
    ids = list(range(10))
    assert pairwise.windows(ids, 4, 10) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert pairwise.windows(ids, 3, 2) == [[0, 1, 2], [7, 8, 9]]
    assert pairwise.windows([], 4, 2) == [[]]


@pytest.mark.parametrize("layers", [1, 3])
def test_head_is_swap_symmetric_by_construction(layers):
    inputs = random_inputs()
    targets = np.eye(3)[np.random.default_rng(1).integers(0, 3, len(inputs.a))]
    head, norm = pairwise.fit_head(inputs, targets, pairwise.HeadConfig(layers=layers, steps=30))
    p = pairwise.head_probs(head, norm, inputs)
    q = pairwise.head_probs(head, norm, inputs.swapped())
    assert np.allclose(p.sum(1), 1)
    np.testing.assert_allclose(q, p[:, [1, 0, 2]], atol=1e-6)
    assert np.abs(p[:, 0] - p[:, 1]).max() > 1e-3   # not a constant: it learned something from the sides


def test_saved_heads_predict_what_they_predicted(tmp_path):
    inputs = random_inputs()
    targets = np.eye(3)[np.random.default_rng(2).integers(0, 3, len(inputs.a))]
    cfg = pairwise.HeadConfig(layers=3, steps=20)
    heads = [(k, *pairwise.fit_head(inputs, targets, pairwise._replace(cfg, seed=k)), 0) for k in range(2)]
    pairwise.save_heads(tmp_path, heads, cfg, {0: None}, {"backbone": "minilm"})
    state, loaded, comps = pairwise.load_heads(tmp_path)
    assert state["backbone"] == "minilm" and comps == {0: None}
    for (_, h, n, _), (h2, n2, k) in zip(heads, loaded):
        np.testing.assert_array_equal(pairwise.head_probs(h, n, inputs), pairwise.head_probs(h2, n2, inputs))


def test_chunked_embeddings_are_cached_per_text(tmp_path):
    enc = pairwise.load_encoder()
    texts = ["Paris is the capital of France.", "word " * 300, "Paris is the capital of France."]
    first = pairwise.embed_chunked(texts, tmp_path, window_tokens=64, max_windows=3, encoder=enc, progress=False)
    assert first.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    store = next(tmp_path.glob("chunked_*/store.npz"))
    with np.load(store) as z:
        assert len(z["keys"]) == 2   # each distinct text once
    again = pairwise.embed_chunked(texts[:2], tmp_path, window_tokens=64, max_windows=3, encoder=enc, progress=False)
    np.testing.assert_array_equal(again, first[:2])
    other = pairwise.embed_chunked(texts[:1], tmp_path, window_tokens=32, max_windows=3, encoder=enc, progress=False)
    assert len(list(tmp_path.glob("chunked_*"))) == 2 and other.shape == (1, 384)   # other settings: other store


def test_embedding_features_swap_like_the_hand_made_ones():
    from kagglelib.data.features import swap_features

    rng = np.random.default_rng(0)
    emb = {s: rng.normal(size=(5, 8)) for s in "pab"}
    comp = rng.normal(size=(2, 8))
    feats = pairwise.embedding_features(emb, comp)
    swapped = pairwise.embedding_features({"p": emb["p"], "a": emb["b"], "b": emb["a"]}, comp)
    pd.testing.assert_frame_equal(swap_features(feats), swapped[feats.columns])


def test_config_method_and_profiles():
    assert make_config(EncoderTrainConfig).method == "pairwise"
    assert make_config(EncoderTrainConfig, profile="kaggle-t4").method == "finetune"
    with pytest.raises(ValueError, match="method must be one of"):
        make_config(EncoderTrainConfig, method="frozen")


def test_factor_parsing_and_paired_difference():
    assert parse_factors("head_layers=3;pairwise_l2=\"0.3\",lr=0.01") == [{"head_layers": 3},
                                                                         {"pairwise_l2": "0.3", "lr": 0.01}]
    assert variant_name("encoder", {"head_layers": 3}) == "encoder__head_layers-3"
    with pytest.raises(ValueError, match="field=value"):
        parse_factors("head_layers")
    labels = np.array([0, 1, 2, 0] * 25)
    good = np.eye(3)[labels] * 0.6 + 0.4 / 3
    flat = np.full((len(labels), 3), 1 / 3)
    diff, low, high = paired_difference(labels, flat, good)
    assert diff < 0 and low <= diff <= high < 0
    assert paired_difference(labels, good, good) == (0.0, 0.0, 0.0)


@pytest.mark.slow
def test_pairwise_run_learns_on_the_sample_every_fold(tmp_path):
    """04's cpu-sample default on the real MiniLM: out of fold on all 1,110 rows, better than the class prior."""
    from kagglelib.analysis.ablation import bootstrap_log_loss
    from kagglelib.data.frame import swap_ab
    from kagglelib.data.load import load_arena
    from kagglelib.inference.predictors import load_predictor
    from kagglelib.run.layout import heldout_predictions, labels_and_probs
    from kagglelib.training.fit import train

    cfg = make_config(EncoderTrainConfig, output_dir=str(tmp_path), progress=False)
    m = train(cfg)
    assert m["n_valid"] == 1110 and m["oof"] and len(m["per_fold"]) == 5
    labels, probs = labels_and_probs(heldout_predictions(cfg.run_dir))
    low, high = bootstrap_log_loss(labels, probs)
    assert m["valid_log_loss"] <= 1.075 and high < m["prior_log_loss"], (m["valid_log_loss"], high)
    test = load_arena("data/sample/test.csv").head(20)
    predict = load_predictor(cfg.run_dir)
    p, q = predict(test), predict(swap_ab(test))
    np.testing.assert_allclose(q, p[:, [1, 0, 2]], atol=1e-6)


def test_each_factor_is_measured_against_the_run_differing_in_one_setting():
    from kagglelib.analysis.factors import nearest

    base = {"config_class": "EncoderTrainConfig", "head_layers": 1, "pairwise_tune": "none", "use_lora": False,
            "lora_init": "default", "run_name": "x"}
    configs = {"encoder": base,
               "encoder__head_layers-3": {**base, "head_layers": 3, "run_name": "y"},
               "encoder__pairwise_tune-ffn": {**base, "pairwise_tune": "ffn"},
               "lora": {**base, "pairwise_tune": "ffn", "use_lora": True},
               "pissa": {**base, "pairwise_tune": "ffn", "use_lora": True, "lora_init": "pissa"},
               "baseline": {"config_class": "BaselineConfig"}}
    assert nearest("encoder__head_layers-3", configs, "encoder") == "encoder"
    assert nearest("encoder__pairwise_tune-ffn", configs, "encoder") == "encoder"
    assert nearest("lora", configs, "encoder") == "encoder__pairwise_tune-ffn"   # LoRA vs full fine-tune
    assert nearest("pissa", configs, "encoder") == "lora"                        # PiSSA vs default init
    assert nearest("baseline", configs, "encoder") == "encoder"                  # another notebook: the reference


def test_nested_cv_is_memoised_by_content_and_returns_copies(train_df):
    import torch

    from kagglelib.data.folds import make_folds
    from kagglelib.data.frame import targets as target_probs
    from kagglelib.training import pairwise as trainer

    df = train_df.head(120).reset_index(drop=True)
    rng = np.random.default_rng(0)
    emb = {s: rng.normal(size=(len(df), 16)).astype(np.float32) for s in pairwise.SIDES}
    targets, folds = target_probs(df), make_folds(df, 3, 0)
    head, cands = pairwise.HeadConfig(steps=20), [(4, 0.1), (4, 1.0)]
    first = trainer.nested_cv(df, emb, targets, folds, head, cands, 1.0, inner_n=2, progress=False)
    h = first["heads"][0][1]
    with torch.no_grad():
        next(h.parameters()).add_(1.0)   # a caller training its heads further must not change the memo
    again = trainer.nested_cv(df, emb, targets, folds, head, cands, 1.0, inner_n=2, progress=False)
    np.testing.assert_array_equal(again["oof"], first["oof"])
    assert again["chosen"] == first["chosen"] and again["heads"][0][1] is not h
    assert not np.allclose(next(again["heads"][0][1].parameters()).detach(), next(h.parameters()).detach())
    trainer._NESTED.clear()
    fresh = trainer.nested_cv(df, emb, targets, folds, head, cands, 1.0, inner_n=2, progress=False)
    np.testing.assert_array_equal(fresh["oof"], first["oof"])   # deterministic: the memo changes no number
    emb2 = {**emb, "a": emb["a"] + 0.5}   # other inputs, other result
    other = trainer.nested_cv(df, emb2, targets, folds, head, cands, 1.0, inner_n=2, progress=False)
    assert not np.allclose(other["oof"], first["oof"])
