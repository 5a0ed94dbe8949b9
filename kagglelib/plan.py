"""Pre-flight plan: peak GPU memory, FLOPs and hours of a training or inference run, before any weight is loaded.

Inputs: the notebook's config (profile defaults + overrides), the model's shape (its ``config.json``, or the
hand-written shapes below when the weights are absent), the data's token lengths after the real truncation
(:func:`kagglelib.text.encode_pairs`; with the model's tokenizer when present, else ~4 characters per token) and
the target GPU. Output: a table that says plainly when a plan exceeds the GPU's memory or Kaggle's limits::

    python -m kagglelib.plan --profile kaggle-t4 --notebook 03
    python -m kagglelib.plan --profile kaggle-t4 --notebook 05 --runs gemma_lora,encoder --gpu 2xT4

The model is analytic (FLOPs = 2 x parameters x tokens per forward, attention added; activation memory after
Korthikanti et al. 2022); the efficiencies below are public figures until ``bench/gpu_check.py`` has measured
this GPU (its JSON, when present, replaces them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core.paths import REPO_ROOT, sample_paths
from .data.load import load_arena
from .data.text import INSTRUCTION, encode_pairs
from .inference.submit import InferenceConfig
from .models.build import load_tokenizer, lora_targets, resolve_backbone
from .models.device import BF16_MIN_CAPABILITY, choose_attention, flash_attn_version, precision_for_capability
from .models.shape import GIB, Shape, model_shape, resolve_quantization, weight_bytes
from .models.spec import spec_from, text_config_from
from .run.config import from_params
from .run.layout import find_run
from .training.config import DecoderTrainConfig, EncoderTrainConfig


@dataclass(frozen=True)
class Gpu:
    """One target: memory usable per GPU, dense 16-bit tensor-core peak, GPUs used, bf16 kernels."""

    name: str
    count: int
    memory_gib: float
    peak_flops: float
    bf16: bool
    source: str


GPUS = {
    # nvidia-smi on a Kaggle T4 shows 15,360 MiB; 65 TFLOP/s fp16 tensor core (NVIDIA T4 datasheet, 2019).
    "T4": Gpu("T4", 1, 15.0, 65e12, False, "NVIDIA T4 datasheet: 65 TFLOPS FP16 (tensor), 16 GB"),
    "2xT4": Gpu("2xT4", 2, 15.0, 65e12, False, "Kaggle 'GPU T4 x2': two T4s, one model per GPU"),
    # 312 TFLOP/s dense bf16 (NVIDIA A100 datasheet, without sparsity); 40 / 80 GB HBM.
    "A100-40": Gpu("A100-40", 1, 39.4, 312e12, True, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, 40 GB"),
    "A100-80": Gpu("A100-80", 1, 79.1, 312e12, True, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense, 80 GB"),
    # 989 TFLOP/s dense bf16 for the SXM part (NVIDIA H100 datasheet, without sparsity).
    "H100": Gpu("H100", 1, 79.1, 989e12, True, "NVIDIA H100 SXM datasheet: 989 TFLOPS BF16 dense, 80 GB"),
}
# Which GPU each profile trains and predicts on (Colab's A100 is the 40 GB part by default).
PROFILE_GPUS = {"kaggle-t4": {"train": "T4", "infer": "2xT4"}, "colab-a100": {"train": "A100-40", "infer": "A100-40"},
                "cpu-sample": {"train": "T4", "infer": "T4"}}
# Kaggle: a notebook session stops after 12 h; a code-competition submission must finish within 9 h (LMSYS
# competition rules, "CPU/GPU Notebook <= 9 hours run-time"). Colab Pro+ sessions last up to 24 h.
LIMIT_HOURS = {"kaggle-t4": {"train": 12.0, "infer": 9.0}, "colab-a100": {"train": 24.0, "infer": 24.0},
               "cpu-sample": {"train": 12.0, "infer": 9.0}}
# Full competition sizes (LMSYS train.csv: 57,477 rows; test: "approximately 25,000 rows" per the data page),
# used when the config points at the bundled 1,110-row sample: its length distribution, scaled to the real size.
FULL_TRAIN_ROWS, FULL_TEST_ROWS = 57_477, 25_000
# Model FLOP utilisation (achieved / peak). Optimised large-scale training reaches 46-52% (PaLM, Chowdhery et al.
# 2022, Table 3; Megatron-LM, Narayanan et al. 2021); HF Trainer with padding, eager attention and checkpointing
# runs lower: 25-35% on a T4 (issue 11's estimate), so 0.30 there and 0.35 on Ampere/Hopper.
TRAIN_MFU = {"T4": 0.30, "2xT4": 0.30, "A100-40": 0.35, "A100-80": 0.35, "H100": 0.35}
# Inference: public LMSYS solutions ran Gemma-2-9B 4-bit with TTA over ~25k rows on 2xT4 in about 3-5 h; with
# this module's FLOP count that is ~40% of the T4's fp16 peak before the 4-bit factor below.
INFER_MFU = {"T4": 0.40, "2xT4": 0.40, "A100-40": 0.45, "A100-80": 0.45, "H100": 0.45}
# Speed relative to 16-bit: bitsandbytes dequantises 4-bit weights on every matmul (QLoRA, Dettmers et al. 2023,
# trades speed for memory); 8-bit is 2.4-5.7x slower in public reports (kagglelib.models.INT8_SLOWDOWN).
QUANT_SPEED = {"none": 1.0, "4bit": 0.75, "8bit": 1 / 4.0}
CUDA_OVERHEAD_GIB = 1.0   # CUDA context (~0.4 GB), cuBLAS workspace, allocator fragmentation
BENCH_JSON = REPO_ROOT / "bench" / "results" / "gpu_check.json"


class CharTokenizer:
    """Tokenizer-free stand-in: one token per 4 characters (English-heavy chat text averages ~4 chars/token)."""

    pad_token_id = 0

    @staticmethod
    def _ids(text: str) -> list[int]:
        return [zlib.crc32(text[i:i + 4].encode()) % 50000 + 10 for i in range(0, len(text), 4)]

    def __call__(self, text: Any, text_pair: Any = None, add_special_tokens: bool = True, **_: Any) -> dict:
        if isinstance(text, list):
            return {"input_ids": [self._ids(t or "") for t in text]}
        ids = self._ids(text)
        if text_pair is not None:
            ids = ids + [2] + self._ids(text_pair)
        return {"input_ids": ([1] + ids + [2]) if add_special_tokens else ids}


def token_lengths(train_path: str, backbone: str, text_cfg: Any, suffix: str = "",
                  max_rows: int = 2000) -> tuple[np.ndarray, str]:
    """Per-row input lengths after truncation (up to ``max_rows`` rows of the file) and how they were counted."""

    df = load_arena(train_path)
    if len(df) > max_rows:
        df = df.sample(max_rows, random_state=0)
    try:
        tokenizer = load_tokenizer(resolve_backbone(backbone))
        how = f"{type(tokenizer).__name__} of {backbone}"
    except (FileNotFoundError, OSError, ValueError):
        tokenizer, how = CharTokenizer(), "estimated at 4 characters per token (no tokenizer for this backbone here)"
    lengths = np.array([len(x) for x in encode_pairs(tokenizer, df, text_cfg, suffix)], dtype=np.int64)
    return lengths, f"{how}; {len(df)} rows of {Path(train_path).name}"


def flops_per_row(shape: Shape, length: np.ndarray, attention_factor: float = 1.0) -> np.ndarray:
    """Forward FLOPs per row: 2 x matrix parameters per token + attention scores (QK^T and AV)."""
    attn = 4.0 * shape.layers * shape.heads * shape.head_dim * length.astype(np.float64) ** 2 * attention_factor
    return 2.0 * shape.linear_params * length + attn


def attention_factor(shape: Shape) -> float:
    """DeBERTa's disentangled attention adds content-to-position and position-to-content score matrices."""
    return 3.0 if shape.model_type.startswith("deberta") else 1.0


def lora_params(shape: Shape, r: int, targets: list[str]) -> int:
    """LoRA parameters: r x (in + out) per targeted matrix per layer."""
    h, q, kv, i = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    sizes = {"q_proj": h + q, "k_proj": h + kv, "v_proj": h + kv, "o_proj": q + h, "gate_proj": h + i,
             "up_proj": h + i, "down_proj": i + h, "query_proj": 2 * h, "key_proj": 2 * h, "value_proj": 2 * h,
             "query": 2 * h, "key": 2 * h, "value": 2 * h, "dense": 2 * h + (h + i) + (i + h)}
    return shape.layers * r * sum(sizes.get(t, 2 * h) for t in targets)


def layer_activation_bytes(shape: Shape, rows: int, length: int, attn: str) -> float:
    """16-bit activations one layer keeps for backward (Korthikanti et al. 2022, eq. 1, generalised to gated MLPs).

    sbh(18) for attention/norm inputs + k sb*intermediate (k=4 plain MLP, 6 gated) + the score matrices:
    5 bytes/score with sdpa-math, 8 with eager (Gemma upcasts the softmax to fp32), none with flash.
    """
    sb = rows * length
    # DeBERTa: its c2p/p2c score matrices are summed into one before the softmax; ~40% more transient bytes.
    score_bytes = {"flash_attention_2": 0.0, "eager": 8.0}.get(attn, 5.0) * (1.4 if attention_factor(shape) > 1 else 1.0)
    return (sb * (18 * shape.hidden + (6 if shape.gated else 4) * shape.intermediate)
            + score_bytes * rows * shape.heads * length ** 2)


def inference_activation_bytes(shape: Shape, batch_tokens: int, length: int, attn: str) -> float:
    """Peak transient memory of one layer's forward on a batch of ``batch_tokens`` (rows x longest)."""
    score_bytes = {"flash_attention_2": 0.0, "eager": 6.0}.get(attn, 4.0) * (1.4 if attention_factor(shape) > 1 else 1.0)
    return batch_tokens * 2 * (4 * shape.hidden + 3 * shape.intermediate) + score_bytes * batch_tokens * shape.heads * length


def load_bench(path: Path | None = None) -> dict[str, Any]:
    """Measured utilisation per (gpu, mode) from bench/gpu_check.py's JSON ({} when absent or unreadable)."""
    path = Path(os.environ.get("KAGGLELIB_GPU_BENCH", "")) if os.environ.get("KAGGLELIB_GPU_BENCH") else (path or BENCH_JSON)
    try:
        return json.loads(path.read_text()).get("mfu", {})
    except (OSError, ValueError):
        return {}


def efficiency(gpu: str, mode: str, quantization: str, bench: dict[str, Any]) -> tuple[float, str]:
    """Achieved fraction of the GPU's peak for ``mode`` (train/infer): measured when the bench has it."""
    key = f"{gpu.replace('2x', '')}/{mode}/{quantization}"
    if key in bench:
        return float(bench[key]), f"measured by bench/gpu_check.py ({key})"
    base = (TRAIN_MFU if mode == "train" else INFER_MFU)[gpu]
    return base * QUANT_SPEED[quantization], f"public-figure constant ({base:.2f} x {QUANT_SPEED[quantization]:.2f} for {quantization})"


@dataclass
class Plan:
    """One estimate; ``problems`` empty means it fits."""

    title: str
    gpu: str
    rows: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def table(self) -> str:
        width = max(len(k) for k in self.rows) if self.rows else 10
        lines = [f"== {self.title} on {self.gpu}"]
        lines += [f"  {k:<{width}}  {v}" for k, v in self.rows.items()]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  VERDICT: fits" if self.fits else "  VERDICT: DOES NOT FIT\n" + "\n".join(
            f"    - {p}" for p in self.problems))
        return "\n".join(lines)


def _n_rows(path: str, full: int, profile: str) -> tuple[int, str]:
    """Rows of the file, or the full competition size when the file is the bundled sample on a GPU profile."""

    n = len(load_arena(path))
    sample = Path(path).resolve() in [p.resolve() for p in sample_paths()]
    if sample and profile != "cpu-sample":
        return full, f"{full:,} (full competition size; {Path(path).name} is the {n:,}-row sample)"
    return n, f"{n:,} ({Path(path).name})"


def _precision_bytes(precision: str, gpu: Gpu) -> tuple[str, int]:

    if precision == "auto":
        precision = precision_for_capability(BF16_MIN_CAPABILITY if gpu.bf16 else (7, 5))
    return precision, {"bf16": 2, "fp16": 2, "fp32": 4}[precision]


def _attention(shape: Shape, requested: str, gpu: Gpu) -> str:

    cap = (8, 0) if gpu.bf16 else (7, 5)
    return choose_attention(shape.model_type, cap, flash_attn_version(), requested) or "sdpa"


def plan_training(cfg: Any, gpu_name: str | None = None, bench: dict[str, Any] | None = None) -> Plan:
    """Plan for a TrainConfig (notebooks 03/04): memory of the longest batch, FLOPs and hours of the whole run."""

    gpu_name = gpu_name or PROFILE_GPUS[cfg.profile]["train"]
    gpu, bench = GPUS[gpu_name], load_bench() if bench is None else bench
    shape = model_shape(cfg.backbone)
    spec, text_cfg = spec_from(cfg), text_config_from(cfg)
    lengths, how = token_lengths(cfg.train_path, cfg.backbone, text_cfg, INSTRUCTION if cfg.task == "next_token" else "")
    total, total_note = _n_rows(cfg.train_path, FULL_TRAIN_ROWS, cfg.profile)
    n_train = int(total * (cfg.n_folds - 1) / cfg.n_folds)
    n_train = min(n_train, cfg.max_train_rows) if cfg.max_train_rows else n_train
    n_valid = int(total / cfg.n_folds)
    n_valid = min(n_valid, cfg.max_valid_rows) if cfg.max_valid_rows else n_valid
    seen = n_train * (2 if cfg.swap_aug in ("concat", "pair") else 1)   # both A/B orders are trained on
    rows_per_step = cfg.batch_size * cfg.grad_accum * (2 if cfg.swap_aug == "pair" else 1)
    steps = cfg.max_steps if cfg.max_steps else math.ceil(
        math.ceil(n_train * (2 if cfg.swap_aug == "concat" else 1) / (cfg.batch_size * cfg.grad_accum)) * cfg.epochs)
    rows_trained = steps * rows_per_step if cfg.max_steps else seen * cfg.epochs
    evals = max(1, math.ceil(cfg.epochs)) if not cfg.eval_steps else max(1, steps // cfg.eval_steps)
    precision, wbytes = _precision_bytes(cfg.precision, gpu)
    attn = _attention(shape, cfg.attn_implementation, gpu)
    quant = spec.quantization
    ckpt = bool(cfg.gradient_checkpointing or quant != "none")   # prepare_model_for_kbit_training checkpoints
    fwd = flops_per_row(shape, lengths, attention_factor(shape))
    # LoRA: forward + input gradients (2 forwards' worth); full fine-tuning adds weight gradients (3); +1 recompute.
    mult = (2.0 if spec.use_lora else 3.0) + (1.0 if ckpt else 0.0)
    train_flops = float(fwd.mean()) * mult * rows_trained
    eval_flops = float(fwd.mean()) * n_valid * evals
    eff, eff_src = efficiency(gpu_name, "train", quant, bench)
    seconds = (train_flops + eval_flops) / (gpu.peak_flops * eff * gpu.count)
    # Memory: weights + trainable state (fp32 weight, grad, Adam m and v) + activations of the longest micro-batch.
    longest = int(min(cfg.max_length, lengths.max()))
    micro_rows = cfg.batch_size * (2 if cfg.swap_aug == "pair" else 1)
    if spec.use_lora:
        targets = lora_targets(spec, shape.model_type)
        trainable = lora_params(shape, cfg.lora_r, targets) + shape.hidden * 3
        weights = weight_bytes(shape, quant, wbytes)
    else:
        trainable = shape.linear_params + shape.embed_params
        weights = 0.0   # the fp32 weights are counted in the trainable state
    state = trainable * 16.0
    per_layer = layer_activation_bytes(shape, micro_rows, longest, attn)
    acts = (shape.layers * micro_rows * longest * shape.hidden * 2 + 2 * per_layer) if ckpt else shape.layers * per_layer
    peak = weights + state + acts + CUDA_OVERHEAD_GIB * GIB
    plan = Plan(f"training {cfg.backbone} ({'LoRA r=%d' % cfg.lora_r if spec.use_lora else 'full fine-tune'}, "
                f"{quant}, {precision}, profile {cfg.profile})", gpu_name)
    plan.rows.update({
        "model shape": f"{shape.layers} layers, hidden {shape.hidden}, {shape.linear_params / 1e9:.2f}B matrix + "
                       f"{shape.embed_params / 1e9:.2f}B embedding params [{shape.source}]",
        "token lengths": f"mean {lengths.mean():.0f}, p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()} "
                         f"(max_length {cfg.max_length}) [{how}]",
        "rows": f"train file {total_note}; {n_train:,} train x{2 if cfg.swap_aug != 'none' else 1} (swap {cfg.swap_aug})"
                f" x {cfg.epochs} epoch(s) = {rows_trained:,.0f} rows, {steps:,} steps; {n_valid:,} valid x {evals} eval(s)",
        "attention / checkpointing": f"{attn} / {'on' if ckpt else 'off'}",
        "peak memory": f"{peak / GIB:.1f} GiB of {gpu.memory_gib:.1f} (weights {weights / GIB:.1f}, trainable state "
                       f"{state / GIB:.1f}, activations {acts / GIB:.1f} at {micro_rows}x{longest} tokens, "
                       f"CUDA {CUDA_OVERHEAD_GIB:.1f})",
        "FLOPs": f"{train_flops:.2e} train + {eval_flops:.2e} validation",
        "hours": f"{seconds / 3600:.1f} h at {eff:.0%} of {gpu.count}x{gpu.peak_flops / 1e12:.0f} TFLOP/s [{eff_src}]",
    })
    limit = LIMIT_HOURS[cfg.profile]["train"]
    if peak / GIB > gpu.memory_gib:
        plan.problems.append(f"peak memory {peak / GIB:.1f} GiB exceeds the {gpu_name}'s {gpu.memory_gib:.1f} GiB "
                             "(lower batch_size or max_length, turn on gradient_checkpointing, or quantise)")
    if seconds / 3600 > limit:
        plan.problems.append(f"{seconds / 3600:.1f} h exceeds the {limit:.0f} h session limit of {cfg.profile} "
                             "(fewer rows/epochs, a smaller backbone or max_length, or a faster GPU)")
    if cfg.smoke:
        plan.notes.append("smoke backbone: the figures are for the tiny random model as if it ran on this GPU")
    return plan


def _run_config(run: str, output_dir: str, profile: str) -> tuple[dict[str, Any], str]:
    """A run's saved config.json, or the training profile's planned config for a run not trained yet."""

    try:
        path = find_run(run, output_dir)
        return json.loads((path / "config.json").read_text()), f"{path}/config.json"
    except FileNotFoundError:
        pass
    if "baseline" in run.lower():
        return {"config_class": "BaselineConfig"}, "not trained yet: feature model (02)"
    cls = DecoderTrainConfig if "gemma" in run.lower() or "llm" in run.lower() else EncoderTrainConfig
    # On Kaggle the 9B is trained elsewhere (colab-a100) and only predicted here: plan that run.
    train_profile = "colab-a100" if (cls is DecoderTrainConfig and profile == "kaggle-t4") else profile
    cfg = cls(profile=train_profile, run_name=run, output_dir=output_dir or "")
    return {**dataclasses.asdict(cfg), "config_class": cls.__name__}, f"not trained yet: {cls.__name__} profile {train_profile}"


def plan_inference(cfg: Any, gpu_name: str | None = None, bench: dict[str, Any] | None = None) -> Plan:
    """Plan for an InferenceConfig (notebook 05): every run's memory per GPU and hours with TTA, summed."""

    gpu_name = gpu_name or PROFILE_GPUS[cfg.profile]["infer"]
    gpu, bench = GPUS[gpu_name], load_bench() if bench is None else bench
    n_test, test_note = _n_rows(cfg.test_path, FULL_TEST_ROWS, cfg.profile)
    passes = 2 if cfg.tta else 1
    plan = Plan(f"inference of {', '.join(cfg.runs)} ({'swap TTA' if cfg.tta else 'no TTA'}, profile {cfg.profile})",
                gpu_name)
    plan.rows["test rows"] = f"{test_note} x{passes} passes"
    total_s = 0.0
    for run in cfg.runs:
        rc, where = _run_config(run, cfg.output_dir, cfg.profile)
        if rc.get("config_class") == "BaselineConfig":
            plan.rows[f"{run}"] = "feature model on CPU: minutes [not modelled]"
            continue
        shape = model_shape(rc["backbone"])
        precision, wbytes = _precision_bytes(cfg.precision, gpu)
        quant = resolve_quantization(cfg.quantization, rc, shape, gpu.memory_gib * GIB, wbytes)
        text_cfg = text_config_from(rc)
        lengths, how = token_lengths(cfg.train_path or rc.get("train_path", ""), rc["backbone"], text_cfg,
                                     INSTRUCTION if rc.get("task") == "next_token" else "")
        attn = _attention(shape, rc.get("attn_implementation", "auto"), gpu)
        flops = float(flops_per_row(shape, lengths, attention_factor(shape)).mean()) * n_test * passes
        eff, eff_src = efficiency(gpu_name, "infer", quant, bench)
        seconds = flops / (gpu.peak_flops * eff * gpu.count)
        total_s += seconds
        longest = int(min(text_cfg.max_length, lengths.max()))
        peak = (weight_bytes(shape, quant, wbytes) + inference_activation_bytes(shape, cfg.batch_tokens, longest, attn)
                + CUDA_OVERHEAD_GIB * GIB)
        plan.rows[run] = (f"{rc['backbone']} [{shape.source}], {quant}, {precision}, {attn}: peak {peak / GIB:.1f} GiB "
                          f"per GPU at {cfg.batch_tokens} tokens/batch; {flops:.2e} FLOPs; {seconds / 3600:.2f} h "
                          f"at {eff:.0%} of {gpu.count}x{gpu.peak_flops / 1e12:.0f} TFLOP/s [{eff_src}]; lengths mean "
                          f"{lengths.mean():.0f} [{how}]; config: {where}")
        if peak / GIB > gpu.memory_gib:
            plan.problems.append(f"{run}: {peak / GIB:.1f} GiB per GPU exceeds the {gpu_name}'s {gpu.memory_gib:.1f} GiB "
                                 "(quantization='4bit', or a smaller batch_tokens)")
    limit = min(LIMIT_HOURS[cfg.profile]["infer"], (cfg.time_budget_s or math.inf) / 3600)
    plan.rows["hours (all runs)"] = f"{total_s / 3600:.1f} h (limit {limit:.1f} h)"
    if total_s / 3600 > limit:
        plan.problems.append(f"{total_s / 3600:.1f} h of inference exceeds the {limit:.1f} h limit (Kaggle allows 9 h "
                             "per submission): drop a run, turn off TTA, or shorten max_length")
    return plan


def notebook_plan(notebook: str, params: dict[str, Any] | None = None, gpu: str | None = None) -> Plan:
    """The plan for notebook 03, 04 or 05 with the given parameters (a notebook passes ``globals()``)."""

    params = dict(params or {})
    cls = {"03": DecoderTrainConfig, "04": EncoderTrainConfig,
           "05": InferenceConfig}[str(notebook)[:2]]
    cfg = from_params(cls, params)
    return plan_inference(cfg, gpu) if cls is InferenceConfig else plan_training(cfg, gpu)


def show(notebook: str, params: dict[str, Any] | None = None, gpu: str | None = None) -> Plan | None:
    """Print the plan (the first cell after a notebook's parameters) and return it.

    Never stops the notebook: a plan that does not fit is printed as such, and a plan that cannot be made
    (unknown backbone shape, unreadable file) prints why; the run's own checks still apply.
    """
    try:
        plan = notebook_plan(notebook, params, gpu)
    except (FileNotFoundError, ValueError, KeyError, OSError) as err:
        print(f"pre-flight plan unavailable: {type(err).__name__}: {err}")
        return None
    print(plan.table())
    return plan


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m kagglelib.plan --profile kaggle-t4 --notebook 03 [--gpu T4] [--set key=value ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="kaggle-t4")
    parser.add_argument("--notebook", default="03", choices=["03", "04", "05"])
    parser.add_argument("--gpu", default=None, choices=sorted(GPUS), help="default: the profile's GPU")
    parser.add_argument("--runs", default=None, help="notebook 05: comma list of runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (JSON value or plain string), e.g. --set max_length=2048")
    a = parser.parse_args(argv)
    params: dict[str, Any] = {"profile": a.profile}
    if a.runs:
        params["runs"] = a.runs
    for item in a.set:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    plan = show(a.notebook, params, a.gpu)
    return 1 if plan is None else (0 if plan.fits else 2)


if __name__ == "__main__":
    raise SystemExit(main())
