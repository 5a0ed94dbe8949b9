"""Trainer options a Kaggle user sets: the optimizer (e.g. paged_adamw_8bit) and report_to, passed through."""
from __future__ import annotations

import inspect

import pytest

from kagglelib.training import loop
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig


def _cfg(tmp_path, **kw):
    return make_config(DecoderTrainConfig, output_dir=str(tmp_path), progress=False, precision="fp32", **kw)


def test_optim_and_report_to_reach_training_arguments(tmp_path, monkeypatch):
    accepted = inspect.signature(loop.TrainingArguments.__init__).parameters
    assert {"optim", "report_to"} <= set(accepted)   # also in 4.56 (the floor): both fields exist there
    args = loop.training_arguments(_cfg(tmp_path, report_to="tensorboard,wandb"), 64, 1, tmp_path)
    assert args.report_to == ["tensorboard", "wandb"] and args.optim == "adamw_torch"
    assert loop.training_arguments(_cfg(tmp_path), 64, 1, tmp_path).report_to in ("none", [])
    # A bitsandbytes optimizer on a GPU machine: the name goes through, and the Trainer picks bitsandbytes' class.
    monkeypatch.setattr(loop.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loop.torch.cuda, "get_device_capability", lambda device=None: (7, 5))   # a T4
    kwargs = loop.training_argument_kwargs(_cfg(tmp_path, optim="paged_adamw_8bit"), 64, 1, tmp_path)
    assert kwargs["optim"] == "paged_adamw_8bit"
    monkeypatch.undo()
    pytest.importorskip("bitsandbytes")
    kwargs["use_cpu"] = True
    args = loop.TrainingArguments(**kwargs)
    cls, opt_kwargs = loop.Trainer.get_optimizer_cls_and_kwargs(args)
    assert "bitsandbytes" in cls.__module__ and opt_kwargs.get("optim_bits") == 8 and opt_kwargs.get("is_paged")


def test_bitsandbytes_optimizer_without_cuda_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loop.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="paged_adamw_8bit.*CUDA only"):
        loop.training_argument_kwargs(_cfg(tmp_path, optim="paged_adamw_8bit"), 64, 1, tmp_path)


def test_unknown_optimizer_or_integration_is_refused_at_config_time(tmp_path):
    with pytest.raises(ValueError, match="did you mean.*paged_adamw_8bit"):
        _cfg(tmp_path, optim="paged_adamw8bit")
    with pytest.raises(ValueError, match=r"report_to: \['tensorbord'\]"):
        _cfg(tmp_path, report_to="tensorbord")
    assert _cfg(tmp_path, report_to="all").report_to == "all"
