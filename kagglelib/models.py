"""Backbones and classifiers: resolve weights offline, build (Q)LoRA/PiSSA or fully fine-tuned models, save, reload.

One builder serves every backbone (Gemma-2, DeBERTa-v2/v3, BERT family, MiniLM) and both tasks:

- ``task="classifier"``: ``AutoModelForSequenceClassification`` whose ``score``/``classifier`` module is
  replaced by a 1- or 3-layer :class:`ClassifierHead` (always trained and saved, LoRA or not);
- ``task="next_token"``: ``AutoModelForCausalLM`` scored on the label tokens "0"/"1"/"2" after
  :data:`kagglelib.text.INSTRUCTION` (see :func:`kagglelib.predict.forward_logits`).

Inference (:func:`load_for_inference`) imports nothing from training.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import paths
from .io import comma_list
from .text import LABEL_TOKENS, TextConfig

log = logging.getLogger(__name__)

TASKS = ("classifier", "next_token")
SMOKE_BACKBONES = ("tiny-gemma2", "tiny-deberta")
LORA_INITS = ("default", "pissa", "pissa_niter_4")
QUANTIZATIONS = ("none", "4bit", "8bit")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
HEAD_NAMES = ("score", "classifier")   # the module AutoModelForSequenceClassification puts on top
# LoRA targets per model_type (names of nn.Linear leaves); unknown types must pass lora_targets.
LORA_TARGETS = {
    "gemma2": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "gemma": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "llama": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "mistral": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "qwen2": "q_proj,k_proj,v_proj,o_proj,gate_proj",
    "deberta-v2": "query_proj,key_proj,value_proj,dense",
    "bert": "query,key,value,dense",
    "roberta": "query,key,value,dense",
    "xlm-roberta": "query,key,value,dense",
    "electra": "query,key,value,dense",
}


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model; its field names are shared with the training config."""

    backbone: str = "minilm"          # hub id, local folder, Kaggle input name, "minilm", "tiny-gemma2", "tiny-deberta"
    task: str = "classifier"          # classifier | next_token
    head_layers: int = 1              # 1 = Linear; 3 = Linear-GELU-Dropout-Linear-GELU-Linear
    head_dropout: float = 0.1
    use_lora: bool = True             # False = full fine-tuning (small encoders)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = ""            # comma list of module names; "" = LORA_TARGETS[model_type]
    lora_init: str = "default"        # default | pissa | pissa_niter_4
    quantization: str = "none"        # none | 4bit | 8bit (bitsandbytes, CUDA only)
    freeze_layers: int = 0            # first N transformer layers get no LoRA / no gradient
    gradient_checkpointing: bool = False
    attn_implementation: str = "auto"  # auto: Gemma-2 gets flash-attn>=2.6 / flex (sm80+) / eager (softcapping kept)
    precision: str = "auto"           # auto | bf16 | fp16 | fp32
    allow_download: bool = False      # may the hub be contacted when weights are not found locally
    seed: int = 42                    # also seeds the random init of the tiny smoke backbones

    def __post_init__(self) -> None:
        checks = {"task": TASKS, "lora_init": LORA_INITS, "quantization": QUANTIZATIONS, "precision": PRECISIONS}
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.head_layers not in (1, 3):
            raise ValueError(f"head_layers must be 1 or 3, got {self.head_layers}")
        if self.quantization != "none" and not self.use_lora:
            raise ValueError("quantization (QLoRA) needs use_lora=True: quantised weights cannot be fully fine-tuned")
        if self.quantization != "none" and self.lora_init != "default":
            # peft refuses PiSSA on 4/8-bit weights; doing it right means SVD of the 16-bit weights (18 GB for a
            # 9B, more than a T4 holds) and shipping a re-quantised residual base instead of the hub's weights.
            raise ValueError(f"lora_init={self.lora_init!r} with quantization={self.quantization!r} is not supported: "
                             "PiSSA needs 16-bit base weights (peft: 'Please initialize PiSSA under float32, float16, "
                             "or bfloat16'). Use lora_init='default' for QLoRA, or quantization='none' for PiSSA.")
        if self.backbone_is_gemma2_like and self.attn_implementation == "sdpa":
            raise ValueError(SDPA_SOFTCAP_MESSAGE.format(model_type="Gemma-2"))

    @property
    def smoke(self) -> bool:
        """True for the randomly initialised tiny backbones (plumbing checks, never results)."""
        return self.backbone in SMOKE_BACKBONES

    @property
    def backbone_is_gemma2_like(self) -> bool:
        """True when the backbone's name says Gemma-2 (checked again on the loaded config's model_type)."""
        return "gemma-2" in self.backbone.lower() or "gemma2" in self.backbone.lower()


def _set_fields(source: Any, cls: type) -> dict[str, Any]:
    """The fields of dataclass ``cls`` that ``source`` (an object or a dict) sets to something other than None."""
    get = source.get if isinstance(source, dict) else (lambda k: getattr(source, k, None))
    return {f.name: get(f.name) for f in dataclasses.fields(cls) if get(f.name) is not None}


def spec_from(source: Any, **overrides: Any) -> ModelSpec:
    """A ModelSpec from any object or dict carrying (a superset of) its fields."""
    values = _set_fields(source, ModelSpec)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ModelSpec(**values)


def text_config_from(source: Any) -> TextConfig:
    """A TextConfig from any object or dict carrying its fields (missing ones keep their defaults)."""
    return TextConfig(**_set_fields(source, TextConfig))


# ---------------------------------------------------------------- devices and dtypes

# bf16 has tensor-core kernels from Ampere (sm80) on; a T4 (sm75) reports torch.cuda.is_bf16_supported() True
# but emulates it, several times slower than fp16, so "auto" must look at the compute capability instead.
BF16_MIN_CAPABILITY = (8, 0)
# FlashAttention-2 kernels exist for sm80+ only (flash-attn README: "Ampere, Ada, or Hopper GPUs"); 2.6 added
# the logit softcapping Gemma-2 needs.
FLASH_MIN_CAPABILITY = (8, 0)
FLASH_MIN_VERSION_SOFTCAP = (2, 6)
# Flex attention (torch.nn.attention.flex_attention, Triton kernels) applies the softcapping as a score_mod
# (transformers integrations/flex_attention.py); transformers 4.56-5.17 offer it from torch 2.5
# (utils/import_utils.is_torch_flex_attn_available). Kept to sm80+ as flash is: the T4 (sm75) stays on eager.
FLEX_MIN_CAPABILITY = (8, 0)
FLEX_MIN_TORCH = (2, 5)
SOFTCAP_MODEL_TYPES = ("gemma2",)   # models whose attention must apply logit softcapping (no sdpa)
SDPA_SOFTCAP_MESSAGE = (
    "attn_implementation='sdpa' cannot run {model_type}: its attention logits need softcapping, which sdpa does "
    "not apply (transformers 4.56-5.17 accept sdpa for Gemma-2 and silently drop the softcapping; newer releases "
    "refuse it); use 'auto', 'eager', 'flex_attention' (torch >= 2.5, GPU >= sm80) or 'flash_attention_2' "
    "(flash-attn >= 2.6, GPU >= sm80)")


def precision_for_capability(capability: tuple[int, int] | None) -> str:
    """'auto' precision for a GPU of this compute capability (None = CPU): bf16 on sm80+, fp16 below, fp32 on CPU."""
    if capability is None:
        return "fp32"
    return "bf16" if tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def device_capability(device: str | torch.device | None = None) -> tuple[int, int] | None:
    """Compute capability of ``device`` (default: this process's GPU), None on CPU or without CUDA."""
    if not torch.cuda.is_available():
        return None
    device = torch.device(device) if device is not None else torch.device("cuda", local_rank())
    if device.type != "cuda":
        return None
    return tuple(torch.cuda.get_device_capability(device))


def resolve_precision(precision: str = "auto", device: str | torch.device | None = None) -> str:
    """'bf16' / 'fp16' / 'fp32' for ``device``: auto = bf16 on sm80+ (A100/H100), fp16 on a T4, fp32 on CPU."""
    capability = device_capability(device)
    if precision == "auto":
        return precision_for_capability(capability)
    if precision in ("bf16", "fp16") and capability is None:
        log.warning("precision %s requested without a CUDA device; using fp32 on CPU", precision)
        return "fp32"
    if precision == "bf16" and capability < BF16_MIN_CAPABILITY:
        log.warning("precision bf16 on a GPU of compute capability %s: emulated and several times slower than "
                    "fp16 there; precision='auto' picks fp16", capability)
    return precision


TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PRECISION_OF_DTYPE = {v: k for k, v in TORCH_DTYPES.items()}


def local_rank() -> int:
    """This process's GPU index under torchrun/accelerate (0 when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def flash_attn_version() -> tuple[int, int] | None:
    """(major, minor) of the importable flash_attn package, None when it is absent or broken."""
    try:
        import flash_attn  # noqa: F401 - installed but unimportable (wrong CUDA build) counts as absent
        major, minor = (int(x) for x in importlib.metadata.version("flash_attn").split(".")[:2])
        return major, minor
    except Exception:  # noqa: BLE001
        return None


def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def choose_attention(model_type: str, capability: tuple[int, int] | None, flash_version: tuple[int, int] | None,
                     requested: str = "auto", supports_flash: bool = True,
                     torch_version: tuple[int, int] | None = None, supports_flex: bool = True) -> str | None:
    """Attention kernel as a pure function of the GPU's compute capability, flash-attn and torch versions.

    Gemma-2 needs softcapping: flash_attention_2 (flash-attn >= 2.6 on sm80+), else flex_attention (torch >= 2.5
    on sm80+), else eager; never sdpa. Other models get the library default (None = sdpa where supported).
    A T4 (sm75) gets eager. ``torch_version`` None = unknown: no flex.
    """
    softcap = model_type in SOFTCAP_MODEL_TYPES
    sm80 = capability is not None and tuple(capability) >= FLASH_MIN_CAPABILITY
    flash_ok = (sm80 and flash_version is not None and supports_flash
                and (not softcap or tuple(flash_version) >= FLASH_MIN_VERSION_SOFTCAP))
    flex_ok = (capability is not None and tuple(capability) >= FLEX_MIN_CAPABILITY and supports_flex
               and torch_version is not None and tuple(torch_version) >= FLEX_MIN_TORCH)
    if requested != "auto":
        if softcap and requested == "sdpa":
            raise ValueError(SDPA_SOFTCAP_MESSAGE.format(model_type=model_type))
        if requested == "flash_attention_2" and not flash_ok:
            raise ValueError(f"attn_implementation='flash_attention_2' needs a GPU of compute capability >= "
                             f"{FLASH_MIN_CAPABILITY} (this one: {capability}), an importable flash-attn "
                             f"(found: {flash_version}; >= {FLASH_MIN_VERSION_SOFTCAP} for {model_type}) and a model "
                             "that supports it; use 'auto'")
        if requested == "flex_attention" and not flex_ok:
            raise ValueError(f"attn_implementation='flex_attention' needs a GPU of compute capability >= "
                             f"{FLEX_MIN_CAPABILITY} (this one: {capability}), torch >= {FLEX_MIN_TORCH} (found: "
                             f"{torch_version}) and a model that supports it; use 'auto'")
        return requested
    if not softcap:
        return None
    return "flash_attention_2" if flash_ok else "flex_attention" if flex_ok else "eager"


def attention_impl(model_type: str, requested: str = "auto", device: str | torch.device | None = None,
                   supports_flash: bool = True) -> str | None:
    """:func:`choose_attention` for ``device`` and the flash-attn and torch installed here."""
    return choose_attention(model_type, device_capability(device), flash_attn_version(), requested, supports_flash,
                            torch_version())


# ---------------------------------------------------------------- weights

def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def _search_dirs_for(name: str) -> list[Path]:
    """Model folders matching ``name`` (full id or its last part) under model_search_dirs, up to 4 levels deep."""
    base = name.rstrip("/").split("/")[-1].lower()
    found: list[Path] = []
    for root in paths.model_search_dirs():
        if not root.is_dir():
            continue
        for cand in (root / name, root / base):
            if _is_model_dir(cand):
                found.append(cand)
        # Kaggle Models layout: /kaggle/input/<model>/transformers/<variant>/<version>/config.json
        for depth in range(1, 5):
            for cfg in sorted(root.glob("/".join(["*"] * depth) + "/config.json")):
                parts = [q.lower() for q in cfg.parent.relative_to(root).parts]
                if base in parts:
                    found.append(cfg.parent)
    return found


def resolve_backbone(name: str, allow_download: bool = False) -> str:
    """Local folder with the weights, or the hub id when downloading is allowed; else a clear error.

    Order: special names, an existing folder, ``kagglelib.paths.model_search_dirs()`` (repo models/,
    /kaggle/input/...), the Hugging Face cache (``local_files_only``), then the hub (only if allowed and
    ``HF_HUB_OFFLINE`` is not set). Tiny smoke backbones resolve to the MiniLM folder (their tokenizer).
    """
    if name == "minilm" or name in SMOKE_BACKBONES:
        return str(paths.minilm_dir())
    if _is_model_dir(Path(name).expanduser()):
        return str(Path(name).expanduser())
    tried = [str(Path(name).expanduser())] + [str(d) for d in paths.model_search_dirs()]
    found = _search_dirs_for(name)
    if found:
        return str(found[0])
    if "/" in name and not name.startswith(("/", ".")):
        try:
            from huggingface_hub import snapshot_download
            cached = Path(snapshot_download(repo_id=name, local_files_only=True))
            if _is_model_dir(cached):
                return str(cached)
        except Exception:  # noqa: BLE001 - any cache miss falls through to the message below
            pass
        tried.append(f"HF cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')})")
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        if allow_download and not offline:
            return name
    raise FileNotFoundError(
        f"backbone {name!r}: weights not found locally (tried {tried}). Put the model folder (config.json, "
        f"*.safetensors, tokenizer files) in {paths.REPO_ROOT / 'models' / name.split('/')[-1]}, attach it as a "
        "Kaggle dataset/model (found under /kaggle/input/...), or download it into the HF cache on a machine "
        f"with internet (`huggingface-cli download {name}`); set allow_download=True (and unset HF_HUB_OFFLINE) "
        "to fetch it from the hub during the run.")


def tiny_config(name: str, vocab_size: int, pad_token_id: int, task: str = "classifier") -> Any:
    """Config of a randomly initialised tiny Gemma-2 or DeBERTa-v2 (smoke tests only; MiniLM vocabulary)."""
    if name == "tiny-gemma2":
        from transformers import Gemma2Config
        return Gemma2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                            sliding_window=128, pad_token_id=pad_token_id, bos_token_id=101, eos_token_id=102,
                            num_labels=3, attn_implementation="eager", use_cache=False)
    if name == "tiny-deberta":
        if task != "classifier":
            raise ValueError("tiny-deberta is an encoder: task must be 'classifier'")
        from transformers import DebertaV2Config
        return DebertaV2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, max_position_embeddings=512, relative_attention=True,
                               position_buckets=64, pos_att_type=["p2c", "c2p"], pooler_hidden_size=64,
                               pad_token_id=pad_token_id, num_labels=3)
    raise ValueError(f"unknown tiny backbone {name!r}; expected one of {SMOKE_BACKBONES}")


def load_tokenizer(source: str, task: str = "classifier") -> Any:
    """Fast tokenizer with a pad token; right padding for classifiers, left for next-token scoring."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, local_files_only=Path(source).is_dir())
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.padding_side = "right" if task == "classifier" else "left"
    return tok


def label_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the label tokens "0", "1", "2"; each must be a single token."""
    ids = tokenizer(list(LABEL_TOKENS), add_special_tokens=False)["input_ids"]
    for tok, i in zip(LABEL_TOKENS, ids):
        if len(i) != 1:
            raise ValueError(f"label token {tok!r} is {len(i)} tokens for {type(tokenizer).__name__}; "
                             "the next-token task needs single-token labels")
    return [i[0] for i in ids]


# ---------------------------------------------------------------- heads

class ClassifierHead(nn.Module):
    """1-layer (Linear) or 3-layer (Linear-GELU-Dropout-Linear-GELU-Linear) head; runs in its own dtype (fp32)."""

    def __init__(self, in_features: int, n_layers: int = 1, dropout: float = 0.1, n_classes: int = 3):
        super().__init__()
        if n_layers == 1:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, n_classes))
        elif n_layers == 3:
            mid, low = max(in_features // 2, 8), max(in_features // 4, 8)
            self.net = nn.Sequential(nn.Linear(in_features, mid), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(mid, low), nn.GELU(), nn.Linear(low, n_classes))
        else:
            raise ValueError(f"head n_layers must be 1 or 3, got {n_layers}")
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Cast in: a bf16/fp16 (or 4-bit) backbone feeds an fp32 head, so logits stay fp32 without autocast.
        weight = next(m for m in self.net if isinstance(m, nn.Linear)).weight
        return self.net(x.to(weight.dtype))


def init_head_bias(model: nn.Module, prior: Any) -> int:
    """Set the last bias of every ClassifierHead to log(prior): training starts at the class-prior prediction.

    On small data this keeps early predictions calibrated, so learning can only move away from the
    baseline where the data supports it. Returns the number of heads changed.
    """
    logp = torch.log(torch.as_tensor(prior, dtype=torch.float32).clamp_min(1e-6))
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ClassifierHead):
                last = [x for x in m.net if isinstance(x, nn.Linear)][-1]
                last.bias.copy_((logp - logp.mean()).to(last.bias))
                n += 1
    return n


def head_name(model: nn.Module) -> str:
    """Name of the classification module ("score" for decoder LMs, "classifier" for encoders)."""
    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' module to replace")


def replace_head(model: nn.Module, n_layers: int, dropout: float) -> str:
    """Swap the model's score/classifier for a fresh fp32 :class:`ClassifierHead`; returns its name."""
    name = head_name(model)
    old = getattr(model, name)
    in_features = old.in_features if isinstance(old, nn.Linear) else model.config.hidden_size
    device = next(old.parameters()).device
    setattr(model, name, ClassifierHead(in_features, n_layers, dropout).to(device))
    return name


# ---------------------------------------------------------------- building

def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (``layers`` in decoders, ``encoder.layer`` in BERT/DeBERTa)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "layer") and len(module) > 0:
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")
    return best


def lora_targets(spec: ModelSpec, model_type: str) -> list[str]:
    """LoRA target module names: the spec's list, else the default for this model_type."""
    targets = spec.lora_targets or LORA_TARGETS.get(model_type, "")
    if not targets:
        raise ValueError(f"no default LoRA targets for model_type {model_type!r}; set lora_targets "
                         "(comma-separated nn.Linear names)")
    return comma_list(targets)


def _bnb_config(spec: ModelSpec, compute_dtype: torch.dtype) -> Any:
    """BitsAndBytesConfig for 4-bit NF4 (double quant) or 8-bit; clear error without CUDA."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"quantization={spec.quantization!r} (bitsandbytes QLoRA) needs a CUDA GPU and none is "
                           "available here; use quantization='none' (profile cpu-sample or colab-a100 with bf16), "
                           "or run on a GPU (Kaggle T4 / Colab).")
    from transformers import BitsAndBytesConfig
    if spec.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


# Public reports of bitsandbytes LLM.int8() inference vs 16-bit at the 8-13B scale: 2.4x slower (13B, Titan RTX,
# 26.2 s vs 10.9 s: huggingface.co/Open-Orca/OpenOrcaxOpenChat-Preview2-13B/discussions/8) to 5.7x slower
# (Llama-Guard-3-8B INT8 vs bf16 on an A100, 4 s vs 0.7 s: huggingface.co/meta-llama/Llama-Guard-3-8B-INT8/discussions/9).
INT8_SLOWDOWN = (2.4, 5.7)


def warn_8bit() -> str:
    """Warn (and return the message) that 8-bit inference is several times slower than 4-bit or fp16."""
    import warnings

    msg = (f"quantization='8bit': bitsandbytes LLM.int8() runs {INT8_SLOWDOWN[0]}-{INT8_SLOWDOWN[1]}x slower than "
           "16-bit in public reports at 8-13B (its outlier decomposition is extra work per matmul); on a T4 prefer "
           "'4bit' (a 9B fits one 16 GB T4) or fp16 for models that fit. See kagglelib.plan for the time estimate.")
    log.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)
    return msg


def build_base(spec: ModelSpec, tokenizer: Any | None = None, source: str | None = None,
               device: str | torch.device | None = None) -> tuple[nn.Module, Any]:
    """The backbone with its classification head (no LoRA yet) and the tokenizer; weights dtype per spec.

    ``device`` (default: this process's GPU, else CPU) is where a GPU load is placed (``device_map``), and whose
    compute capability decides precision 'auto', the 4-bit compute dtype and the attention kernel.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    source = source or resolve_backbone(spec.backbone, spec.allow_download)
    tokenizer = tokenizer or load_tokenizer(source, spec.task)
    if device is None:
        device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    precision = resolve_precision(spec.precision, device)
    quant = _bnb_config(spec, TORCH_DTYPES[precision]) if spec.quantization != "none" else None
    # Frozen LoRA bases are held in the half-precision dtype; fully fine-tuned weights stay fp32 (AMP trains them).
    dtype = TORCH_DTYPES[precision] if (spec.use_lora and precision != "fp32") else torch.float32
    auto = AutoModelForSequenceClassification if spec.task == "classifier" else AutoModelForCausalLM
    torch.manual_seed(spec.seed)   # tiny models and new heads must be identical when rebuilt for inference
    if spec.smoke:
        config = tiny_config(spec.backbone, len(tokenizer), tokenizer.pad_token_id, spec.task)
        model = auto.from_config(config)
    else:
        from transformers import AutoConfig
        model_type = AutoConfig.from_pretrained(source, local_files_only=not spec.allow_download).model_type
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": not spec.allow_download}
        attn = attention_impl(model_type, spec.attn_implementation, device)
        if attn:
            kwargs["attn_implementation"] = attn
        if spec.task == "classifier":
            kwargs["num_labels"] = 3
        if quant is not None:
            kwargs["quantization_config"] = quant
        if device.type == "cuda" and (quant is not None or spec.use_lora):
            # Straight onto the requested GPU: cuda:1's predictor must not land on GPU 0 (DDP: this rank's GPU).
            kwargs["device_map"] = {"": str(device)}
        try:
            model = auto.from_pretrained(source, **kwargs)
        except OSError as err:
            raise FileNotFoundError(f"could not load backbone {spec.backbone!r} from {source}: {err}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    if spec.task == "classifier":
        replace_head(model, spec.head_layers, spec.head_dropout)
    else:
        model.config.arena_label_token_ids = label_token_ids(tokenizer)
    return model, tokenizer


def modules_to_save(model: nn.Module) -> list[str]:
    """Modules trained in full and saved with a LoRA adapter: the head, and DeBERTa's newly initialised pooler."""
    names = [head_name(model)]
    # DebertaV2ForSequenceClassification adds a ContextPooler (dense + activation) that the checkpoints lack:
    # left out, it would stay random and frozen (and LoRA on its 'dense' would adapt noise).
    if isinstance(getattr(model, "pooler", None), nn.Module) and model.config.model_type in ("deberta-v2", "deberta"):
        names.append("pooler")
    return names


def build_model(spec: ModelSpec) -> tuple[nn.Module, Any]:
    """Trainable model for ``spec`` (LoRA/PiSSA/QLoRA or full fine-tuning, frozen first layers) and tokenizer."""
    model, tokenizer = build_base(spec)
    model_type = model.config.model_type
    n_layers = len(transformer_layers(model))
    if spec.freeze_layers >= n_layers:
        raise ValueError(f"freeze_layers={spec.freeze_layers} but the model has only {n_layers} layers")
    if spec.quantization != "none":
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.use_lora:
        from peft import LoraConfig, get_peft_model
        heads = modules_to_save(model) if spec.task == "classifier" else None
        config = LoraConfig(
            r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
            target_modules=lora_targets(spec, model_type), modules_to_save=heads, bias="none",
            init_lora_weights=True if spec.lora_init == "default" else spec.lora_init,
            layers_to_transform=list(range(spec.freeze_layers, n_layers)) if spec.freeze_layers else None,
            task_type="SEQ_CLS" if spec.task == "classifier" else "CAUSAL_LM")
        model = get_peft_model(model, config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        if spec.freeze_layers:
            for p in model.get_input_embeddings().parameters():
                p.requires_grad_(False)
            for layer in list(transformer_layers(model))[: spec.freeze_layers]:
                for p in layer.parameters():
                    p.requires_grad_(False)
    return model, tokenizer


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- saving and loading

def save_pissa_init(model: nn.Module, path: str | Path) -> Path:
    """Save a PiSSA model's initial adapter, so the final one can be converted to plain LoRA on the original base."""
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True   # as peft documents: saved so that loading it does not redo the SVD
    try:
        model.save_pretrained(str(path))
    finally:
        config.init_lora_weights = init
    return Path(path)


def _save_pissa_as_lora(model: nn.Module, pissa_init: Path, model_dir: Path) -> None:
    """Save a trained PiSSA adapter as a plain rank-2r LoRA that applies to the ORIGINAL base weights.

    PiSSA trains ``W_res + s*B A`` with ``W_res = W - s*B0 A0``, so the update on W is
    ``s*(B A - B0 A0) = s*[B | -B0] [A ; A0]`` (what peft's ``path_initial_model_for_weight_conversion``
    computes; done here because peft 0.21 fails on it when a head is in ``modules_to_save``).
    """
    import copy

    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    init = load_file(str(pissa_init / "adapter_model.safetensors"))
    out = {}
    for key, value in state.items():
        if "lora_A" in key:
            value = torch.cat([value, init[key].to(value.dtype)], dim=0)
        elif "lora_B" in key:
            value = torch.cat([value, -init[key].to(value.dtype)], dim=1)
        out[key] = value.contiguous()
    config = copy.deepcopy(model.peft_config["default"])
    config.r, config.lora_alpha, config.init_lora_weights = 2 * config.r, 2 * config.lora_alpha, True
    config.save_pretrained(str(model_dir))
    save_file(out, str(model_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def inference_needs(spec: ModelSpec) -> dict[str, Any]:
    """What a saved run needs besides its folder: a LoRA base found BY NAME (never a stored path), packages Kaggle lacks."""
    base = None
    if spec.use_lora:   # a folder given at training time is looked up by its last part, as a Kaggle input name
        base = Path(spec.backbone).name if Path(spec.backbone).expanduser().is_absolute() else spec.backbone
    packages = ["bitsandbytes"] if spec.quantization != "none" else []
    if spec.use_lora and (spec.backbone == "minilm" or spec.smoke):   # the base (or tokenizer) is the MiniLM package
        packages.append(paths.MINILM_PACKAGE)
    return {"base_model": base, "packages": packages}


def save_for_inference(model: nn.Module, tokenizer: Any, model_dir: str | Path, pissa_init: str | Path | None = None) -> Path:
    """Adapter + head (peft, safetensors) or full weights (safetensors) plus config and tokenizer into ``model_dir``."""
    from safetensors.torch import save_model

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config") and pissa_init:
        _save_pissa_as_lora(model, Path(pissa_init), model_dir)
    elif hasattr(model, "peft_config"):
        model.save_pretrained(str(model_dir))
    else:
        save_model(model, str(model_dir / "model.safetensors"))   # handles tied embeddings
        model.config.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    return model_dir


def load_for_inference(run_dir: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                       quantization: str | None = None, merge: bool = True) -> tuple[nn.Module, Any, TextConfig, str]:
    """Rebuild a saved run's model in eval mode: returns ``(model, tokenizer, text_cfg, task)``.

    LoRA runs need the original backbone weights (resolved as in training); full fine-tunes need only
    ``model/``. ``quantization`` ("4bit"/"8bit") overrides the training setting for LoRA runs;
    ``merge`` folds LoRA into the weights (skipped when quantised).
    """
    from safetensors.torch import load_model

    from .io import read_json

    run_dir = Path(run_dir)
    cfg = read_json(run_dir / "config.json")
    model_dir = run_dir / "model"
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} not found: the run has no saved model (did training finish?)")
    info_path = run_dir / "run_info.json"   # the base model's name, so no stored absolute path is followed
    base_model = read_json(info_path).get("base_model") if info_path.exists() else None
    if device is None:
        device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    # Precision (and so the 4-bit compute dtype) follows the inference GPU, not the training one: an A100 bf16
    # run re-quantised for a T4 computes in fp16. A saved PiSSA adapter is plain LoRA (see _save_pissa_as_lora).
    precision = PRECISION_OF_DTYPE[dtype] if dtype is not None else resolve_precision("auto", device)
    # A quantisation override applies to LoRA bases only (full fine-tunes load as saved).
    spec = spec_from(cfg, quantization=quantization if cfg.get("use_lora") else None, precision=precision,
                     lora_init="default", backbone=base_model)
    if spec.quantization == "8bit":
        warn_8bit()
    tokenizer = load_tokenizer(str(model_dir), spec.task)
    if spec.use_lora:
        from peft import PeftModel
        base, _ = build_base(spec, tokenizer=tokenizer, device=device)
        model = PeftModel.from_pretrained(base, str(model_dir))
        if merge and spec.quantization == "none":
            model = model.merge_and_unload()
    else:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
        config = AutoConfig.from_pretrained(str(model_dir))
        auto = AutoModelForSequenceClassification if spec.task == "classifier" else AutoModelForCausalLM
        torch.manual_seed(spec.seed)
        model = auto.from_config(config)
        if spec.task == "classifier":
            replace_head(model, spec.head_layers, spec.head_dropout)
        load_model(model, str(model_dir / "model.safetensors"), strict=True)
    if spec.quantization == "none":
        model = model.to(device)
        if dtype is not None:
            model = model.to(dtype)
    if spec.task == "next_token":
        model.config.arena_label_token_ids = label_token_ids(tokenizer)
    model.eval()
    return model, tokenizer, text_config_from(cfg), spec.task
