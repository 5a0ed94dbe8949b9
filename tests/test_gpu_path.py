"""GPU-path regressions shown on CPU: version-proof TrainingArguments, device placement, precision/attention by
compute capability, PiSSA+quantisation refused, non-finite outputs stopped, DeBERTa pooler trained, validation
predicted once, models released between runs, 8-bit warned about (issue 11)."""
from __future__ import annotations

import dataclasses
import gc
import inspect
import os
import re
import subprocess
import sys
import warnings
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from transformers import TrainerCallback

from kagglelib.inference import submit
from kagglelib.inference.predictors import run_predictors
from kagglelib.inference.submit import InferenceConfig, run_inference
from kagglelib.inference.tta import predict_chunked
from kagglelib.models.build import build_base, build_model, load_tokenizer, resolve_backbone, tiny_config
from kagglelib.models.device import choose_attention, precision_for_capability, resolve_precision
from kagglelib.models.forward import NonFiniteError, predict_probs
from kagglelib.models.saved import load_for_inference, save_for_inference
from kagglelib.models.spec import ModelSpec
from kagglelib.scoring.ensemble import blend, fit_blend
from kagglelib.training import loop
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig
from kagglelib.training.fit import train
from kagglelib.training.loop import training_argument_kwargs, training_arguments
from kagglelib.core.io import write_json
from kagglelib.core.paths import REPO_ROOT
from kagglelib.run.store import write_manifest
from kagglelib.data.text import TextConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T4, A100 = (7, 5), (8, 0)


# ---------------------------------------------------------------- 1: TrainingArguments across versions

def _cfg(tmp_path, **kw):
    return make_config(DecoderTrainConfig, output_dir=str(tmp_path), progress=False, **kw)


def test_training_kwargs_exist_in_installed_signature(tmp_path):
    accepted = set(inspect.signature(loop.TrainingArguments.__init__).parameters)
    cfg = _cfg(tmp_path, gradient_checkpointing=True)
    kwargs = training_argument_kwargs(cfg, 64, 1, tmp_path)
    assert set(kwargs) <= accepted, sorted(set(kwargs) - accepted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)   # no deprecated alias (removed in the next major)
        args = training_arguments(cfg, 64, 1, tmp_path)
    assert args.get_warmup_steps(args.max_steps) == int(np.ceil(args.max_steps * cfg.warmup_ratio))


def test_training_kwargs_follow_an_older_signature(tmp_path, monkeypatch):
    """transformers 4.56-5.1x: gradient_checkpointing / group_by_length, no activation_* / train_sampling_strategy."""
    new = inspect.signature(loop.TrainingArguments.__init__)
    drop = {"activation_checkpointing", "activation_checkpointing_kwargs", "train_sampling_strategy"}
    params = [p for n, p in new.parameters.items() if n not in drop and p.kind != p.VAR_KEYWORD]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
               for n in ("gradient_checkpointing", "gradient_checkpointing_kwargs", "group_by_length")
               if n not in new.parameters]
    seen = {}

    class OldArgs:
        def __init__(self, **kw):
            seen.update(kw)

    OldArgs.__init__.__signature__ = new.replace(parameters=params)
    monkeypatch.setattr(loop, "TrainingArguments", OldArgs)
    training_arguments(_cfg(tmp_path, gradient_checkpointing=True), 64, 1, tmp_path)
    assert seen["gradient_checkpointing"] is True and seen["group_by_length"] is True
    assert not drop & set(seen)


def _floor(package: str) -> str:
    line = next(l for l in (REPO_ROOT / "requirements.txt").read_text().splitlines() if l.startswith(package + ">="))
    return line.split(">=")[1].strip()


@pytest.mark.slow
def test_floor_transformers_trains_a_tiny_run(tmp_path):
    """Install the oldest transformers and peft requirements.txt allows (cached under /tmp) and train with them."""
    tf, pf = _floor("transformers"), _floor("peft")
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"kagglelib-floor-transformers-{tf}-peft-{pf}"
    if not (target / "transformers").is_dir() or not (target / "peft").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
               f"transformers~={tf}.0", f"peft~={pf}.0", "huggingface_hub>=0.34,<1.0", "tokenizers>=0.22,<0.23"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"cannot install transformers {tf} / peft {pf} from PyPI (offline?): {getattr(err, 'stderr', err)!r}")
    code = (
        "import sys, transformers, peft; from kagglelib.models.build import build_model; from kagglelib.models.spec import ModelSpec; from kagglelib.training.config import DecoderTrainConfig; from kagglelib.training.fit import train; from kagglelib.run.config import make_config\n"
        f"assert transformers.__version__.startswith('{tf}'), transformers.__version__\n"
        f"assert peft.__version__.startswith('{pf}'), peft.__version__\n"
        "cfg = make_config(DecoderTrainConfig, output_dir=sys.argv[1], run_name='floor', max_train_rows=16, "
        "max_valid_rows=8, max_length=64, prompt_tokens=16, response_tokens=24, max_steps=2, eval_steps=2, "
        "save_steps=2, gradient_checkpointing=True, progress=False)\n"
        "out = train(cfg)\n"
        "m, _ = build_model(ModelSpec(backbone='tiny-deberta', lora_r=4, lora_alpha=8))\n"
        "pooler = [n for n, p in m.named_parameters() if 'pooler' in n and p.requires_grad]\n"
        "assert pooler and not any('lora_' in n for n in pooler), pooler\n"
        "print('OK', transformers.__version__, peft.__version__, out['valid_log_loss'])\n")
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{REPO_ROOT}", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=600, cwd=REPO_ROOT)
    assert res.returncode == 0 and f"OK {tf}" in res.stdout, res.stderr[-4000:]


# ---------------------------------------------------------------- 4/5: precision and attention by capability

def test_precision_is_a_function_of_compute_capability():
    assert precision_for_capability(T4) == "fp16"
    assert precision_for_capability(A100) == "bf16" and precision_for_capability((9, 0)) == "bf16"
    assert precision_for_capability(None) == "fp32"


def _fake_cuda(monkeypatch, capability=T4, count=2):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)   # what a T4 really reports
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_auto_precision_on_a_t4_is_fp16(monkeypatch):
    _fake_cuda(monkeypatch, T4)
    assert resolve_precision("auto", "cuda:0") == "fp16"
    _fake_cuda(monkeypatch, A100)
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"


def test_attention_choice():
    choose = choose_attention
    new_torch = dict(torch_version=(2, 6))
    assert choose("gemma2", T4, (2, 7), **new_torch) == "eager"     # neither flash-attn nor flex on a T4
    assert choose("gemma2", A100, (2, 7), **new_torch) == "flash_attention_2"
    assert choose("gemma2", A100, (2, 5), **new_torch) == "flex_attention"   # flash-attn without softcapping
    assert choose("gemma2", A100, None, **new_torch) == "flex_attention"     # no flash-attn: flex keeps softcapping
    assert choose("gemma2", (9, 0), None, **new_torch) == "flex_attention"
    assert choose("gemma2", A100, None, torch_version=(2, 4)) == "eager"    # no flex before torch 2.5
    assert choose("gemma2", A100, None) == "eager"                           # torch version unknown
    assert choose("gemma2", A100, None, supports_flex=False, **new_torch) == "eager"
    assert choose("gemma2", A100, (2, 7), supports_flash=False, **new_torch) == "flex_attention"
    assert choose("gemma2", None, (2, 7), **new_torch) == "eager"
    assert choose("deberta-v2", A100, (2, 7), **new_torch) is None           # library default
    with pytest.raises(ValueError, match="silently drop the softcapping"):
        choose("gemma2", A100, None, "sdpa")
    with pytest.raises(ValueError, match="compute capability"):
        choose("gemma2", T4, (2, 7), "flash_attention_2")
    with pytest.raises(ValueError, match="torch >= "):
        choose("gemma2", A100, None, "flex_attention", torch_version=(2, 4))
    assert choose("gemma2", A100, None, "flex_attention", **new_torch) == "flex_attention"
    assert choose("gemma2", A100, (2, 7), "eager") == "eager"
    with pytest.raises(ValueError, match="4.56-5.17 accept sdpa"):
        ModelSpec(backbone="google/gemma-2-9b-it", attn_implementation="sdpa")


@pytest.mark.slow
def test_flex_attention_applies_gemma2_softcapping():
    """Flex attention (what 'auto' picks on sm80+ without flash-attn) equals eager with softcapping, on CPU."""
    from transformers import AutoModelForSequenceClassification

    cfg = tiny_config("tiny-gemma2", 3000, 0)
    cfg.attn_logit_softcapping = 1.0   # a small cap, so that dropping it changes the logits
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(cfg).eval()
    with torch.no_grad():   # random init gives near-zero attention scores: make them large enough to be capped
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(40)
            layer.self_attn.k_proj.weight.mul_(40)
    ids = torch.randint(5, 3000, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask).logits
        for layer in model.model.layers:   # what sdpa does: the cap is dropped
            layer.self_attn.attn_logit_softcapping = None
        uncapped = model(input_ids=ids, attention_mask=mask).logits
        for layer in model.model.layers:
            layer.self_attn.attn_logit_softcapping = 1.0
        model.set_attn_implementation("flex_attention")
        flex = model(input_ids=ids, attention_mask=mask).logits
    assert (eager - uncapped).abs().max() > 1e-3
    torch.testing.assert_close(flex, eager, atol=1e-5, rtol=1e-4)


def test_notebooks_do_not_offer_sdpa_for_gemma2():
    text = (REPO_ROOT / "notebooks" / "03_train_gemma_lora.ipynb").read_text()
    assert not re.search(r"attn_implementation[^\n]*sdpa", text)


# ---------------------------------------------------------------- 3: PiSSA with quantisation

@pytest.mark.parametrize("quant", ["4bit", "8bit"])
def test_pissa_with_quantisation_is_refused_at_config_time(tmp_path, quant):
    with pytest.raises(ValueError, match="PiSSA needs 16-bit"):
        ModelSpec(backbone="tiny-gemma2", lora_init="pissa", quantization=quant)
    with pytest.raises(ValueError, match="PiSSA needs 16-bit"):
        _cfg(tmp_path, profile="kaggle-t4", lora_init="pissa_niter_4", quantization=quant)


# ---------------------------------------------------------------- 2: device placement

@pytest.fixture(scope="module")
def real_layout_backbone(tmp_path_factory):
    """A tiny random Gemma-2 saved as a local model folder: loads through from_pretrained like real weights."""
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("backbones") / "tiny-gemma-2-local"
    tok = load_tokenizer(str(resolve_backbone("minilm")))
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config("tiny-gemma2", len(tok),
                                                                              tok.pad_token_id))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture()
def load_spy(monkeypatch):
    """Records from_pretrained's kwargs and loads on CPU without bitsandbytes (placement is what is checked)."""
    from transformers import AutoModelForSequenceClassification

    calls = []
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        calls.append(dict(kwargs))
        kwargs.pop("device_map", None)
        kwargs.pop("quantization_config", None)
        kwargs["dtype"] = torch.float32
        return original(cls, source, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(spy))
    # The adapter is read on CPU (peft pins memory when it believes CUDA is there).
    from peft import PeftModel
    peft_load = PeftModel.from_pretrained.__func__

    def cpu_adapter(cls, *args, **kwargs):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch.cuda, "is_available", lambda: False)
            return peft_load(cls, *args, **kwargs)

    monkeypatch.setattr(PeftModel, "from_pretrained", classmethod(cpu_adapter))
    return calls


def _save_lora_run(tmp_path, backbone: Path, **kw) -> Path:
    spec = ModelSpec(backbone=str(backbone), lora_r=4, lora_alpha=8, **kw)
    model, tok = build_model(spec)
    run = tmp_path / "runs" / "gemma"
    save_for_inference(model, tok, run / "model")
    cfg = {**dataclasses.asdict(spec), **dataclasses.asdict(TextConfig(max_length=64))}
    write_json({**cfg, "precision": "bf16", "quantization": "4bit", "lora_init": "pissa"}, run / "config.json")
    write_manifest(run)
    return run


def test_two_predictors_load_on_their_own_gpu_with_t4_dtypes(tmp_path, real_layout_backbone, load_spy, monkeypatch):
    run = _save_lora_run(tmp_path, real_layout_backbone)   # saved config: A100 bf16 training, PiSSA, 4-bit
    load_spy.clear()
    _fake_cuda(monkeypatch, T4, count=2)
    preds = run_predictors(run, ["cuda:0", "cuda:1"], precision="auto", quantization="4bit")
    assert len(preds) == 2 and [c["device_map"] for c in load_spy] == [{"": "cuda:0"}, {"": "cuda:1"}]
    for call in load_spy:
        assert call["quantization_config"].bnb_4bit_compute_dtype == torch.float16   # the T4's, not bf16
        assert call["dtype"] == torch.float16 and call["attn_implementation"] == "eager"


def test_training_load_goes_to_the_requested_device(real_layout_backbone, load_spy, monkeypatch):
    _fake_cuda(monkeypatch, A100, count=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    build_base(ModelSpec(backbone=str(real_layout_backbone), precision="auto"))
    build_base(ModelSpec(backbone=str(real_layout_backbone)), device="cuda:0")
    assert [c["device_map"] for c in load_spy] == [{"": "cuda:1"}, {"": "cuda:0"}]
    assert load_spy[0]["dtype"] == torch.bfloat16


# ---------------------------------------------------------------- 6: non-finite probabilities

class NanModel(nn.Module):
    """Classifier whose second row overflows (inf logit), as an fp16 forward can."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"pad_token_id": 0})()

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(len(input_ids), 3) + self.w
        logits[input_ids[:, 0] == 7, 0] = float("inf")
        return type("O", (), {"logits": logits})()


def test_non_finite_predictions_stop_with_row_ids():
    with pytest.raises(NonFiniteError, match=r"ids \['b'\]"):
        predict_probs(NanModel(), [[1, 2], [7, 2], [3]], progress=False, row_ids=["a", "b", "c"])


def test_non_finite_chunk_is_never_cached(tmp_path, train_df):
    df = train_df.head(30)
    bad_id = df["id"].iloc[17]

    def overflowing(part):
        p = np.full((len(part), 3), 1 / 3)
        p[(part["id"] == bad_id).to_numpy()] = [np.nan, 0.0, 0.0]
        return p

    with pytest.raises(NonFiniteError, match=str(bad_id)):
        predict_chunked(overflowing, df, tmp_path / "cache", chunk_rows=10, tta=False, progress=False)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].startswith("chunk_00000_")   # chunk 1 (the NaN one) was not saved


def test_ensemble_refuses_non_finite_instead_of_falling_back():
    good = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2]])
    overflow = np.array([[0.6, 0.2, 0.2], [np.nan, 0.0, 0.0]])
    with pytest.raises(ValueError, match="not valid probabilities"):
        blend([overflow, good], np.array([0.5, 0.5]), fallback=np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="not valid probabilities"):
        blend([np.array([[np.inf, 0, 0]])], np.ones(1))
    with pytest.raises(ValueError, match="non-finite"):
        fit_blend([np.array([[np.nan] * 3, [0.2, 0.6, 0.2]]), good], np.array([0, 1]))


# ---------------------------------------------------------------- 7: DeBERTa pooler

def test_deberta_lora_trains_and_saves_the_new_pooler(tmp_path):
    spec = ModelSpec(backbone="tiny-deberta", lora_r=4, lora_alpha=8)
    model, tok = build_model(spec)
    assert {"classifier", "pooler"} <= set(model.peft_config["default"].modules_to_save)
    pooler = {n: p for n, p in model.named_parameters() if "pooler" in n}
    assert pooler and not any("lora_" in n for n in pooler)
    assert all(p.requires_grad for n, p in pooler.items() if "modules_to_save" in n)
    save_for_inference(model, tok, tmp_path / "model")
    from safetensors.torch import load_file
    assert any("pooler.dense" in k for k in load_file(str(tmp_path / "model" / "adapter_model.safetensors")))


# ---------------------------------------------------------------- 8: validation predicted once

class CountEvalForwards(TrainerCallback):
    """Counts forward passes made in eval mode (validation), via a hook registered at train start."""

    def __init__(self):
        self.rows = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def hook(module, inputs, kw):
            if not module.training:
                self.rows += len(kw["input_ids"])
        model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("extra", [dict(), dict(early_stopping_patience=3), dict(ema_decay=0.5)])
def test_validation_runs_once_per_evaluation(tmp_path, extra):
    counter = CountEvalForwards()
    cfg = _cfg(tmp_path, max_train_rows=16, max_valid_rows=12, max_length=64, prompt_tokens=16, response_tokens=24,
               max_steps=4, eval_steps=2, save_steps=2, batch_size=4, eval_batch_size=8, **extra)
    out = train(cfg, callbacks=[counter])
    assert len(out["history"]) == 2                    # evaluations at steps 2 and 4
    assert counter.rows == 2 * out["n_valid"]          # and no third pass over the fold after training
    preds = pd.read_csv(cfg.run_dir / "valid_preds.csv")
    assert len(preds) == out["n_valid"] and np.isfinite(preds.iloc[:, 1:4].to_numpy()).all()
    if not extra.get("early_stopping_patience"):
        assert out["valid_log_loss"] == pytest.approx(out["history"][-1]["valid_log_loss"], abs=1e-9)
    else:
        best = min(h["valid_log_loss"] for h in out["history"])
        assert out["valid_log_loss"] == pytest.approx(best, abs=1e-9)


# ---------------------------------------------------------------- 9: previous run's models released

def test_previous_runs_models_are_released_before_the_next_load(tmp_path, train_df, monkeypatch):
    from kagglelib.data.frame import prob_frame

    out = tmp_path / "out"
    labels = train_df["label"].to_numpy()[:200]
    for name in ("one", "two"):
        run = out / "runs" / name
        write_json({"config_class": "BaselineConfig", "train_path": str(REPO_ROOT / "data/sample/train.csv.gz")},
                   run / "config.json")
        probs = np.eye(3)[labels] * 0.4 + 0.2
        prob_frame(train_df["id"].head(200), probs, label=labels).to_csv(run / "valid_preds.csv", index=False)
        write_manifest(run)
    alive = []

    def fake_predictors(run_dir, devices, *args, **kwargs):
        assert all(ref() is None for ref in alive), "the previous run's model is still referenced"
        model = nn.Linear(4, 3)
        alive.append(weakref.ref(model))
        return [lambda df, m=model: np.full((len(df), 3), 1 / 3)]

    monkeypatch.setattr(submit, "run_predictors", fake_predictors)
    cfg = InferenceConfig(output_dir=str(out), runs=["one", "two"], devices="cpu", postprocess=False)
    run_inference(cfg)
    gc.collect()
    assert len(alive) == 2 and alive[1]() is None


# ---------------------------------------------------------------- 10: 8-bit warning

def test_8bit_inference_warns_with_the_slowdown(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    write_json(dataclasses.asdict(ModelSpec(backbone="tiny-gemma2")), run / "config.json")
    load_tokenizer(str(resolve_backbone("minilm"))).save_pretrained(str(run / "model"))
    with pytest.warns(UserWarning, match=r"8bit.*2\.4-5\.7x slower"), pytest.raises(RuntimeError, match="CUDA"):
        load_for_inference(run, device="cpu", quantization="8bit")
