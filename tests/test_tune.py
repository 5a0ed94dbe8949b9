"""Tuning the encoder's last feed-forward block under the pairwise head (04's pairwise_tune="ffn", 06's factors)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kagglelib.models import pairwise, tune
from kagglelib.run.config import make_config
from kagglelib.training.config import EncoderTrainConfig

TEXTS = ["Paris is the capital of France.", "word " * 300, "What is the capital of France?",
         "The capital is Lyon, I think.", "```python\nprint(1)\n```"]


@pytest.fixture(scope="module")
def encoder():
    return pairwise.load_encoder()


@pytest.fixture(scope="module")
def states(encoder):
    return tune.token_states(TEXTS, encoder, window_tokens=64, max_windows=3, progress=False)


def test_frozen_block_reproduces_the_chunked_embeddings(encoder, states):
    """The block copy over the cached token states gives exactly the frozen encoder's pooled vectors."""
    emb = pairwise.embed_chunked(TEXTS, None, window_tokens=64, max_windows=3, encoder=encoder, progress=False)
    exact = tune.pooled_exact(tune.ffn_block(encoder[1]), states, np.arange(len(TEXTS))).numpy()
    np.testing.assert_allclose(exact, emb, atol=2e-3)   # float16 token states
    np.testing.assert_allclose(tune.torch_normalise(states.frozen), emb, atol=1e-5)
    assert states.offsets[-1] == len(states.x) and np.all(np.diff(states.offsets) > 0)


@pytest.mark.parametrize("use_lora,init", [(True, "default"), (True, "pissa"), (False, "default")])
def test_adapted_block_starts_at_the_frozen_vectors_and_trains(encoder, states, use_lora, init):
    base = tune.ffn_block(encoder[1])
    ffn = tune.adapt(base, use_lora, r=4, alpha=8, init=init)
    texts = np.arange(len(TEXTS))
    rng = np.random.default_rng(0)
    est = tune.pooled_sampled(ffn, base, states, texts, 8, rng)
    frozen = torch.nn.functional.normalize(states.frozen, dim=1)
    torch.testing.assert_close(est.detach(), frozen, atol=2e-3, rtol=0)   # the start is the frozen model
    trainable = [p for p in ffn.parameters() if p.requires_grad]
    assert trainable and (len(trainable) == 4 if use_lora else len(trainable) == 6)   # A, B per dense | all
    est.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    plain = tune.merged(ffn)
    assert not hasattr(plain, "merge_and_unload")
    assert set(plain.state_dict()) == set(base.state_dict())   # saved like the base block: loadable into it


def test_torch_rebuild_of_the_pair_features_matches_pair_inputs(encoder):
    df = pd.DataFrame({"prompt": [[TEXTS[2]], [TEXTS[2]], [TEXTS[4]]],
                       "response_a": [[TEXTS[0]], [TEXTS[3]], [TEXTS[1]]],
                       "response_b": [[TEXTS[3]], [TEXTS[0]], [TEXTS[0]]]})
    emb = pairwise.embed_frame(df, None, window_tokens=64, max_windows=3, encoder=encoder, progress=False)
    for comps in (None, pairwise.fit_components(emb, 2)):
        inputs = pairwise.pair_inputs(df, emb, comps, 0.5)
        norm = pairwise._standardise(inputs)
        want = pairwise._tensors(inputs, norm)
        got = tune.pair_tensors(inputs, norm, {s: torch.from_numpy(v) for s, v in emb.items()}, comps)
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_order_head_and_tta():
    rng = np.random.default_rng(0)
    inputs = pairwise.PairInputs(rng.normal(size=(40, 5)).astype(np.float32),
                                 rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(40, 2)).astype(np.float32))
    targets = np.eye(3)[rng.integers(0, 3, 40)]
    head, norm = pairwise.fit_head(inputs, targets, pairwise.HeadConfig(steps=50, symmetric=False))
    p, q = pairwise.head_probs(head, norm, inputs), pairwise.head_probs(head, norm, inputs.swapped())
    assert np.abs(q - p[:, [1, 0, 2]]).max() > 1e-3   # order-aware: swapping changes more than the order
    t, tq = pairwise.head_probs(head, norm, inputs, tta=True), pairwise.head_probs(head, norm, inputs.swapped(), tta=True)
    np.testing.assert_allclose(tq, t[:, [1, 0, 2]], atol=1e-9)   # TTA makes it swap-exact


def test_tune_settings_are_checked():
    with pytest.raises(ValueError, match="pairwise_tune must be one of"):
        EncoderTrainConfig(pairwise_tune="all")
    with pytest.raises(ValueError, match="pairwise_tta=True needs pairwise_head='order'"):
        EncoderTrainConfig(pairwise_tta=True)
    with pytest.raises(ValueError, match="pairwise_tune_tokens"):
        EncoderTrainConfig(pairwise_tune_tokens=0)


@pytest.mark.slow
def test_tuned_run_saves_trained_blocks_and_predicts_from_them(tmp_path, one_torch_thread):
    """A LoRA-tuned pairwise run on 90 real rows: every row out of fold, each fold's trained block saved (moved from
    the base weights, loadable into the base block), and the saved run predicts swap-exactly with order head + TTA."""
    from conftest import TRAIN
    from kagglelib.data.frame import swap_ab
    from kagglelib.data.load import load_arena
    from kagglelib.inference.predictors import load_predictor
    from kagglelib.run.layout import heldout_predictions
    from kagglelib.training.fit import train

    path = tmp_path / "train.csv"
    pd.read_csv(TRAIN).head(90).to_csv(path, index=False)
    cfg = make_config(EncoderTrainConfig, train_path=str(path), output_dir=str(tmp_path), run_name="tuned", n_folds=3,
                             pairwise_tune="ffn", use_lora=True, lora_r=4, lora_alpha=8, pairwise_tune_epochs=2,
                             pairwise_head="order", pairwise_tta=True, pairwise_components="8",
                             pairwise_l2="0.3", progress=False, window_tokens=64, max_windows=2)
    m = train(cfg)
    assert m["n_valid"] == 90 and len(heldout_predictions(cfg.run_dir)) == 90
    blocks = sorted((cfg.run_dir / "model").glob("ffn_fold*.safetensors"))
    assert len(blocks) == 3
    from safetensors.torch import load_file
    base = tune.ffn_block(pairwise.load_encoder()[1]).state_dict()
    moved = load_file(str(blocks[0]))
    assert set(moved) == set(base)
    assert max(float((moved[k] - base[k]).abs().max()) for k in base) > 1e-6   # the block was trained
    rows = load_arena(path).head(12)
    predict = load_predictor(cfg.run_dir)
    p, q = predict(rows), predict(swap_ab(rows))
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-9)
    np.testing.assert_allclose(q, p[:, [1, 0, 2]], atol=1e-6)   # order head + TTA: swap-exact
