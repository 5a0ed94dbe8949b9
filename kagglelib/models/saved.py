"""A trained model on disk: saving the adapter/weights and tokenizer, what loading it needs, and loading it for inference."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.paths import MINILM_PACKAGE
from ..core.versions import warn_on_mismatch
from ..data.text import TextConfig
from ..run.config import part_of
from ..run.folder import Run
from .build import build_base, label_token_ids, load_tokenizer, replace_head, warn_8bit
from .device import PRECISION_OF_DTYPE, local_rank, resolve_precision
from .spec import ModelSpec


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
        path = Path(spec.backbone).expanduser()
        base = spec.backbone
        if path.is_absolute():   # a Kaggle Models folder <model>/<framework>/<variation>/<version>: the variation
            base = path.parent.name if path.name.isdigit() and len(path.parts) > 4 else path.name
    packages = ["bitsandbytes"] if spec.quantization != "none" else []
    if spec.use_lora and (spec.backbone == "minilm" or spec.smoke):   # the base (or tokenizer) is the MiniLM package
        packages.append(MINILM_PACKAGE)
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


def load_for_inference(run: Run | str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                       quantization: str = "", merge: bool = True) -> tuple[nn.Module, Any, TextConfig, str]:
    """Rebuild a saved run's model in eval mode: returns ``(model, tokenizer, text_cfg, task)``.

    LoRA runs need the original backbone weights (resolved as in training); full fine-tunes need only
    ``model/``. ``quantization`` ("4bit"/"8bit"; "" keeps the run's) overrides the training setting for LoRA runs;
    ``merge`` folds LoRA into the weights (skipped when quantised). ``run``: a :class:`Run` or its folder.
    """
    from safetensors.torch import load_model


    run = run if isinstance(run, Run) else Run.at(run)
    cfg, model_dir = run.config, run.model_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} not found: the run has no saved model (did training finish?)")
    info = run.info or {}   # the base model's name, so no stored absolute path is followed
    base_model = info.get("base_model")
    warn_on_mismatch(run.path, info)   # trained with another torch/transformers/peft/... than this machine's
    if device is None:
        device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    # Precision (and so the 4-bit compute dtype) follows the inference GPU, not the training one: an A100 bf16
    # run re-quantised for a T4 computes in fp16. A saved PiSSA adapter is plain LoRA (see _save_pissa_as_lora).
    precision = PRECISION_OF_DTYPE[dtype] if dtype is not None else resolve_precision("auto", device)
    # A quantisation override applies to LoRA bases only (full fine-tunes load as saved).
    override = {"quantization": quantization} if quantization and cfg.get("use_lora") else {}
    spec = part_of(ModelSpec, {**cfg, **override, "precision": precision, "lora_init": "default",
                               **({"backbone": base_model} if base_model else {})})
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
    return model, tokenizer, part_of(TextConfig, cfg), spec.task
