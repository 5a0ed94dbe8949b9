"""Backbones and classifiers: resolve weights offline, build (Q)LoRA/PiSSA or fully fine-tuned models, save, reload.

One builder serves every backbone (Gemma-2, DeBERTa-v2/v3, BERT family, MiniLM) and both tasks:

- ``task="classifier"``: ``AutoModelForSequenceClassification`` whose ``score``/``classifier`` module is
  replaced by a 1- or 3-layer :class:`ClassifierHead` (always trained and saved, LoRA or not);
- ``task="next_token"``: ``AutoModelForCausalLM`` scored on the label tokens "0"/"1"/"2" after
  :data:`kagglelib.text.INSTRUCTION` (see :func:`kagglelib.predict.forward_logits`).

Inference (:func:`load_for_inference`) imports nothing from training.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.io import comma_list, folder_sha256
from ..core.paths import REPO_ROOT, minilm_dir, model_search_dirs
from ..data.text import LABEL_TOKENS
from .device import TORCH_DTYPES, attention_impl, local_rank, resolve_precision
from .spec import HEAD_NAMES, LORA_TARGETS, ModelSpec, SMOKE_BACKBONES

log = logging.getLogger(__name__)


def _is_model_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def _search_dirs_for(name: str) -> list[Path]:
    """Model folders matching ``name`` (full id or its last part) under model_search_dirs, up to 4 levels deep."""
    base = name.rstrip("/").split("/")[-1].lower()
    found: list[Path] = []
    for root in model_search_dirs():
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


def one_model_folder(name: str, found: list[Path]) -> Path:
    """The folder ``name`` stands for: the one found (the same folder may be found by several roots), or several
    with the same content; folders of that name with other contents (two attached versions or datasets) are an
    error, never a silent pick: a LoRA adapter on another base predicts wrongly without a word."""
    folders: list[Path] = []
    for p in found:   # the first path seen of each folder
        if all(p.resolve() != q.resolve() for q in folders):
            folders.append(p)
    if len(folders) > 1 and len({folder_sha256(p) for p in folders}) > 1:   # hashed only when ambiguous
        raise ValueError(f"backbone {name!r}: {len(folders)} model folders of that name with different contents "
                         f"{[str(p) for p in folders]}; pass the folder's path as the backbone (or detach the others)")
    return folders[0]


def resolve_backbone(name: str, allow_download: bool = False) -> str:
    """Local folder with the weights, or the hub id when downloading is allowed; else a clear error.

    Order: special names, an existing folder, ``kagglelib.paths.model_search_dirs()`` (repo models/,
    /kaggle/input/...), the Hugging Face cache (``local_files_only``), then the hub (only if allowed and
    ``HF_HUB_OFFLINE`` is not set). Tiny smoke backbones resolve to the MiniLM folder (their tokenizer).
    """
    if name == "minilm" or name in SMOKE_BACKBONES:
        return str(minilm_dir())
    if _is_model_dir(Path(name).expanduser()):
        return str(Path(name).expanduser())
    tried = [str(Path(name).expanduser())] + [str(d) for d in model_search_dirs()]
    found = _search_dirs_for(name)
    if found:
        return str(one_model_folder(name, found))
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
        f"*.safetensors, tokenizer files) in {REPO_ROOT / 'models' / name.split('/')[-1]}, attach it as a "
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
