"""Pre-flight plan (kagglelib.plan): known shapes, the old 9B-on-T4 run refused, default profiles fit, bench override."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kagglelib.inference.submit import InferenceConfig
from kagglelib.models.shape import GIB, KNOWN_SHAPES, resolve_quantization
from kagglelib import plan
from kagglelib.plan import TRAIN_MFU, main, notebook_plan, plan_training, token_lengths
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig

OLD_T4 = dict(profile="kaggle-t4", backbone="google/gemma-2-9b-it", quantization="4bit", precision="fp16",
              max_length=1024, batch_size=2, grad_accum=8, swap_aug="concat")


@pytest.mark.parametrize("name,params", [("gemma-2-2b", 2_614_341_888), ("gemma-2-9b", 9_241_705_984),
                                         ("deberta-v3-large", 434_012_160)])
def test_known_shapes_match_published_parameter_counts(name, params):
    shape = KNOWN_SHAPES[name]
    assert abs(shape.linear_params + shape.embed_params - params) / params < 0.02


def test_old_9b_training_on_a_t4_does_not_fit(tmp_path):
    p = plan_training(make_config(DecoderTrainConfig, output_dir=str(tmp_path), **OLD_T4), bench={})
    assert not p.fits and any("12 h session limit" in x for x in p.problems)
    assert "DOES NOT FIT" in p.table()
    flops = float(p.rows["FLOPs"].split()[0])
    assert 2e18 < flops < 4e18   # issue 11's hand estimate: 2.9e18


@pytest.mark.parametrize("notebook,profile", [("03", "kaggle-t4"), ("04", "kaggle-t4"), ("03", "colab-a100"),
                                              ("04", "colab-a100")])
def test_default_training_profiles_fit(tmp_path, notebook, profile, monkeypatch):
    monkeypatch.setattr(plan, "load_bench", lambda path=None: {})
    p = notebook_plan(notebook, {"profile": profile, "output_dir": str(tmp_path)})
    assert p.fits, p.table()


def test_kaggle_inference_of_the_9b_on_two_t4s(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "load_bench", lambda path=None: {})
    params = {"profile": "kaggle-t4", "output_dir": str(tmp_path), "runs": "gemma_lora,encoder"}
    p = notebook_plan("05", params)
    assert p.fits and p.gpu == "2xT4" and "4bit" in p.rows["gemma_lora"], p.table()
    hours = float(p.rows["hours (all runs)"].split()[0])
    assert 2.5 < hours < 8.5   # public solutions: 3-5 h for the 9B with TTA on 2xT4
    unquantised = notebook_plan("05", {**params, "quantization": ""})   # the run's own (bf16 from the A100)
    assert not unquantised.fits and any("exceeds the 2xT4" in x for x in unquantised.problems)


def test_auto_quantization_by_memory():
    t4 = 15 * GIB
    lora = {"use_lora": True, "quantization": "none"}
    assert resolve_quantization("auto", lora, KNOWN_SHAPES["gemma-2-9b"], t4) == "4bit"
    assert resolve_quantization("auto", lora, KNOWN_SHAPES["gemma-2-2b"], t4) == "none"
    assert resolve_quantization("auto", lora, KNOWN_SHAPES["gemma-2-9b"], 80 * GIB) == "none"
    assert resolve_quantization("4bit", {"use_lora": False}, KNOWN_SHAPES["deberta-v3-large"], t4) == "none"
    assert resolve_quantization("", {"use_lora": True, "quantization": "8bit"}, KNOWN_SHAPES["gemma-2-2b"], t4) == "8bit"


def test_token_lengths_say_how_they_were_counted(train_df):
    from kagglelib.core.paths import sample_paths
    from kagglelib.data.text import TextConfig

    cfg = TextConfig(max_length=256, prompt_tokens=64, response_tokens=128)
    real, how_real = token_lengths(str(sample_paths()[0]), "minilm", cfg, max_rows=200)
    est, how_est = token_lengths(str(sample_paths()[0]), "google/gemma-2-9b-it", cfg, max_rows=200)
    assert "BertTokenizer" in how_real or "Tokenizer" in how_real.split(" of ")[0]
    assert "4 characters per token" in how_est
    assert real.max() <= 256 and est.max() <= 256
    assert 0.6 < np.median(est) / np.median(real) < 1.6   # the estimate is in the real tokenizer's range


def test_measured_bench_replaces_the_constants_only_for_its_own_key(tmp_path, monkeypatch):
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), profile="kaggle-t4")   # gemma-2-2b fp16 LoRA on 2xT4
    base = plan_training(cfg, bench={})
    bench = tmp_path / "gpu_check.json"
    other = {"T4/deberta-v3-large/train-full/fp16": 0.9, "T4/gemma-2-2b/train-4bit/fp16": 0.9,
             "T4/gemma-2-2b/train-lora/bf16": 0.9, "H200/gemma-2-2b/train-lora/fp16": 0.9}
    bench.write_text(json.dumps({"mfu": other}))
    monkeypatch.setenv("KAGGLELIB_GPU_BENCH", str(bench))
    unmatched = plan_training(cfg)   # DeBERTa's, QLoRA's, bf16's and the H200's figures never apply
    assert "public-figure constant" in unmatched.rows["hours"] and unmatched.rows["hours"] == base.rows["hours"]
    bench.write_text(json.dumps({"mfu": {**other, "T4/gemma-2-2b/train-lora/fp16": TRAIN_MFU["T4"] / 2}}))
    measured = plan_training(cfg)
    hours = [float(p.rows["hours"].split()[0]) for p in (base, measured)]
    assert "measured by bench/gpu_check.py (T4/gemma-2-2b/train-lora/fp16)" in measured.rows["hours"]
    assert hours[1] == pytest.approx(2 * hours[0], rel=0.05)


@pytest.mark.parametrize("name,extra_gb", [("gemma-2-9b", 1.8), ("gemma-2-2b", 1.2)])
def test_qlora_peak_counts_the_fp32_upcast(name, extra_gb):
    """peft's prepare_model_for_kbit_training casts embeddings and norms to fp32: +1.8 GB (9B), +1.2 GB (2B)."""
    from kagglelib.models.shape import kbit_training_upcast_bytes

    shape = KNOWN_SHAPES[name]
    assert kbit_training_upcast_bytes(shape, "4bit", 2) / 1e9 == pytest.approx(extra_gb, abs=0.06)
    assert kbit_training_upcast_bytes(shape, "none", 2) == 0


def test_qlora_plan_shows_the_upcast_in_its_peak(tmp_path):
    q = plan_training(make_config(DecoderTrainConfig, output_dir=str(tmp_path), **OLD_T4), bench={})
    plain = plan_training(make_config(DecoderTrainConfig, output_dir=str(tmp_path), **{**OLD_T4, "quantization": "none"}), bench={})
    assert "fp32 upcast" in q.rows["peak memory"] and "fp32 upcast" not in plain.rows["peak memory"]
    upcast = float(q.rows["peak memory"].split(" + ")[1].split()[0])
    assert upcast == pytest.approx(1.7, abs=0.1)   # GiB (1.8 GB)


def test_kaggle_training_plan_is_data_parallel_on_both_t4s(tmp_path):
    from kagglelib.training.loop import planned_steps

    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), profile="kaggle-t4")
    two = plan_training(cfg, bench={})
    one = plan_training(cfg, "T4", bench={})
    assert two.gpu == "2xT4" and "one process per GPU" in two.rows["GPUs"] and "one GPU" in one.rows["GPUs"]
    n = int(plan.FULL_TRAIN_ROWS * 4 / 5)
    steps = planned_steps(n, cfg.batch_size, cfg.grad_accum, 2, cfg.epochs, cfg.max_steps)[1]
    assert f"{steps:,} steps" in two.rows["rows"] and f"{2 * cfg.batch_size * cfg.grad_accum} per step" in two.rows["rows"]
    seen = [int(p.rows["rows"].split(" rows seen")[0].split()[-1].replace(",", "")) for p in (two, one)]
    assert seen[0] == pytest.approx(seen[1], abs=2 * cfg.batch_size * cfg.grad_accum) and seen[0] >= n
    hours = [float(p.rows["hours"].split()[0]) for p in (two, one)]
    assert hours[0] == pytest.approx(hours[1] / 2, rel=0.05)


def test_cli_exit_code(tmp_path, capsys):
    assert main(["--profile", "kaggle-t4", "--notebook", "03", "--set", f"output_dir={tmp_path}"]) == 0
    assert "VERDICT: fits" in capsys.readouterr().out
    old = [x for k, v in OLD_T4.items() if k != "profile" for x in ("--set", f"{k}={v}")]
    assert main(["--profile", "kaggle-t4", "--notebook", "03", *old]) == 2
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_inference_profile_quantization_is_auto_on_gpus():
    assert make_config(InferenceConfig, profile="kaggle-t4").quantization == "auto"
    assert make_config(InferenceConfig, profile="cpu-sample").quantization == ""
