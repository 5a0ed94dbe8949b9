"""Trainer-based fine-tuning on tiny models: outputs contract, resume, overfitting, next-token, early stopping, 2-process DDP."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from kagglelib.models.build import label_token_ids
from kagglelib.models.forward import predict_probs
from kagglelib.models.saved import load_for_inference
from kagglelib.run.config import flatten, make_config
from kagglelib.training.config import DecoderTrainConfig, EncoderTrainConfig
from kagglelib.training.fit import train
from kagglelib.core.io import read_json
from kagglelib.core.paths import REPO_ROOT
from kagglelib.data.text import encode_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = dict(profile="cpu-sample", max_train_rows=32, max_valid_rows=16, max_length=64, prompt_tokens=16,
             response_tokens=24, freeze_layers=0, batch_size=4, eval_batch_size=16, lr=5e-3, head_lr=5e-3, progress=False)


def gemma_cfg(tmp_path, run_name, **kw) -> DecoderTrainConfig:
    return make_config(DecoderTrainConfig, output_dir=str(tmp_path), run_name=run_name,
                                     **{**SMALL, "max_steps": 4, "eval_steps": 2, "save_steps": 2, **kw})


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """One uninterrupted run and one interrupted at step 2 then resumed (PiSSA, 3-layer head, dropout on)."""
    tmp = tmp_path_factory.mktemp("runs")
    kw = dict(lora_dropout=0.1, head_dropout=0.1)
    full = train(gemma_cfg(tmp, "full", **kw))
    stop = train(gemma_cfg(tmp, "resumed", **kw), interrupt_at_step=2)
    again = train(gemma_cfg(tmp, "resumed", **kw))
    return tmp, full, stop, again


def test_resume_matches_uninterrupted_run(resumed):
    tmp, full, stop, again = resumed
    assert stop["interrupted"] and stop["global_step"] == 2 and stop["checkpoint"].endswith("checkpoint-2")
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == full["global_step"] == 4
    a = load_file(str(tmp / "runs" / "full" / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp / "runs" / "resumed" / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any("score" in k for k in a)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)
    assert again["valid_log_loss"] == pytest.approx(full["valid_log_loss"], abs=1e-7)


def test_run_folder_contract(resumed):
    tmp, full, _, _ = resumed
    run = tmp / "runs" / "full"
    for name in ("config.json", "metrics.json", "valid_preds.csv", "loss_curve.png", "model/adapter_model.safetensors",
                 "model/tokenizer.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()   # removed after success (keep_checkpoints=False)
    cfg, m = read_json(run / "config.json"), read_json(run / "metrics.json")
    assert cfg["backbone"] == "tiny-gemma2" and cfg["smoke"] is True and cfg["head_layers"] == 3
    assert cfg["lora_init"] == "pissa_niter_4" and cfg["task"] == "classifier" and cfg["max_length"] == 64
    for key in ("valid_log_loss", "valid_accuracy", "valid_acc_A", "valid_acc_B", "valid_acc_tie", "history",
                "seconds", "peak_memory_mb", "n_train", "n_valid", "prior_log_loss"):
        assert key in m, key
    assert m["smoke"] is True and m["n_train"] == 32 and m["n_valid"] == 16 and len(m["history"]) == 2
    preds = pd.read_csv(run / "valid_preds.csv")
    assert list(preds.columns) == ["id", "fold", "label", "winner_model_a", "winner_model_b", "winner_tie",
                                   "identical", "empty_a", "empty_b"]   # rule flags: 05 needs no train file
    info = read_json(run / "run_info.json")
    assert info["kind"] == "transformer" and info["layout"] == "kaggle" and info["base_model"] == "tiny-gemma2"
    assert info["provenance"]["train_file"] == "train.csv.gz" and info["provenance"]["n_rows"] == 1110
    assert len(preds) == 16 and (preds["fold"] == 0).all()
    probs = preds[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert np.allclose(probs.sum(1), 1)
    # The saved model (rebuilt with no training imports) reproduces the validation predictions.
    model, tok, text_cfg, task = load_for_inference(run, device="cpu")
    from kagglelib.data.load import load_arena
    df = load_arena(cfg["train_path"]).set_index("id").loc[preds["id"]].reset_index()
    got = predict_probs(model, encode_pairs(tok, df, text_cfg), task, 4096, "cpu", progress=False)
    np.testing.assert_allclose(got, probs, atol=1e-5)


@pytest.mark.slow
def test_overfits_32_rows(tmp_path):
    """One 32-row batch, full fine-tuning of the (dropout-free) tiny Gemma-2: training loss goes to ~0."""
    cfg = make_config(DecoderTrainConfig,
        output_dir=str(tmp_path), run_name="overfit", **{**SMALL, "use_lora": False, "head_layers": 1,
                                                         "head_dropout": 0.0, "batch_size": 32, "max_steps": 40,
                                                         "lr": 3e-3, "head_lr": 3e-3, "warmup_ratio": 0.0,
                                                         "swap_aug": "none", "eval_steps": 40, "save_steps": 40, "logging_steps": 5,
                                                         "weight_decay": 0.0, "scheduler": "linear"})
    m = train(cfg)
    losses = [r["loss"] for r in m["train_history"]]
    assert losses[0] > 0.9 and losses[-1] < 0.05, losses
    assert (cfg.run_dir / "model" / "model.safetensors").is_file()   # full fine-tune saves all weights


def test_next_token_with_rdrop_ema_and_label_smoothing(tmp_path):
    cfg = gemma_cfg(tmp_path, "nt", task="next_token", lora_init="default", rdrop_alpha=1.0, ema_decay=0.5,
                    label_smoothing=0.1, swap_aug="concat", max_steps=4, eval_steps=2, save_steps=2)
    m = train(cfg)
    assert m["task"] == "next_token" and np.isfinite(m["valid_log_loss"]) and m["global_step"] == 4
    cfg_saved = read_json(cfg.run_dir / "config.json")
    assert cfg_saved["task"] == "next_token" and cfg_saved["rdrop_alpha"] == 1.0
    model, tok, text_cfg, task = load_for_inference(cfg.run_dir, device="cpu")
    assert task == "next_token" and model.config.arena_label_token_ids == label_token_ids(tok)


@pytest.mark.parametrize("ema_decay", [0.0, 0.5], ids=["plain", "ema"])
def test_early_stopping_keeps_the_best_evaluation(tmp_path, ema_decay):
    """A too-high LR overfits after a few steps: training stops and the saved weights are the best eval's."""
    cfg = gemma_cfg(tmp_path, "es", max_steps=10, eval_steps=1, save_steps=1, lr=5e-2, head_lr=5e-2,
                    early_stopping_patience=3, ema_decay=ema_decay)
    m = train(cfg)
    curve = [h["valid_log_loss"] for h in m["history"]]
    assert m["global_step"] < 10 and curve[-1] > min(curve) + 0.05, curve   # stopped, after getting worse
    assert m["valid_log_loss"] == pytest.approx(min(curve), abs=1e-6)
    preds = pd.read_csv(cfg.run_dir / "valid_preds.csv")
    probs = preds[["winner_model_a", "winner_model_b", "winner_tie"]].to_numpy()
    assert -np.log(probs[np.arange(len(probs)), preds["label"]]).mean() == pytest.approx(min(curve), abs=1e-6)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="fold"):
        make_config(DecoderTrainConfig, output_dir=str(tmp_path), fold=7)
    with pytest.raises(ValueError, match="swap_aug"):
        make_config(DecoderTrainConfig, output_dir=str(tmp_path), swap_aug="sometimes")
    with pytest.raises(ValueError, match="quantization"):
        make_config(EncoderTrainConfig, output_dir=str(tmp_path), quantization="4bit", use_lora=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_process_gloo_run(tmp_path):
    """torchrun with 2 CPU processes (gloo DDP) equals one process with 2 accumulation steps, and both ranks agree.

    Accelerate deals the sampler's batches to the ranks in turn, so rank r's batch at step k is batch 2k + r of the
    one-process run; averaging the two ranks' gradients is then the same update as accumulating both batches.
    Dropout is off so that the per-process random streams do not matter.
    """
    kw = dict(max_steps=3, eval_steps=3, save_steps=3, batch_size=4, lora_dropout=0.0, head_dropout=0.0,
              lora_init="default")
    cfg = gemma_cfg(tmp_path, "ddp", **kw)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**flatten(cfg), "config_class": "GemmaTrainConfig"}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "kagglelib.training", "--config", str(path), "--report", str(tmp_path / "report_{rank}.json")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = read_json(tmp_path / "report_0.json"), read_json(tmp_path / "report_1.json")
    assert r0["world_size"] == 2 and r0["global_step"] == 3
    # Each rank's train loss is the mean over its own batches; everything evaluated is gathered and identical.
    drop = ("seconds", "peak_memory_mb", "train_loss", "train_history")
    assert {k: v for k, v in r0.items() if k not in drop} == {k: v for k, v in r1.items() if k not in drop}
    saved = read_json(cfg.run_dir / "metrics.json")
    assert saved["valid_log_loss"] == r0["valid_log_loss"] and saved["n_valid"] == 16

    one = train(gemma_cfg(tmp_path, "one", grad_accum=2, **kw))
    assert one["world_size"] == 1 and one["global_step"] == 3
    assert r0["valid_log_loss"] == pytest.approx(one["valid_log_loss"], abs=1e-6)
    a = load_file(str(cfg.run_dir / "model" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "runs" / "one" / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)
    cols = ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    pd.testing.assert_frame_equal(pd.read_csv(cfg.run_dir / "valid_preds.csv")[cols],
                                  pd.read_csv(tmp_path / "runs" / "one" / "valid_preds.csv")[cols], atol=1e-6)
