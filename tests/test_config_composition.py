"""Configs by composition: a training config holds a ModelSpec and a TextConfig, is built in layers (dataclass
defaults <- profile <- user values) from flat parameter names, and reads back from flat config.json files,
including those saved before the composition (tests/fixtures/config_8f5ea91_encoder.json, written by main at 8f5ea91).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kagglelib.analysis.factors import changed_settings
from kagglelib.data.text import TextConfig
from kagglelib.models.spec import ModelSpec
from kagglelib.run.config import config_parts, flatten, from_params, make_config, parameter_names, save_config
from kagglelib.training.config import DecoderTrainConfig, EncoderTrainConfig, TrainConfig, config_from_json

OLD_CONFIG = Path(__file__).parent / "fixtures" / "config_8f5ea91_encoder.json"
TRAIN_CLASSES = (TrainConfig, DecoderTrainConfig, EncoderTrainConfig)


@pytest.mark.parametrize("cls", TRAIN_CLASSES, ids=lambda c: c.__name__)
def test_training_config_holds_the_model_spec_and_text_config_without_copying_their_fields(cls):
    assert config_parts(cls) == {"model": ModelSpec, "text": TextConfig}
    own = {f.name for f in dataclasses.fields(cls)}
    copied = own & {f.name for part in (ModelSpec, TextConfig) for f in dataclasses.fields(part)}
    assert not copied, f"{cls.__name__} re-declares {sorted(copied)}"
    assert not [f.name for f in dataclasses.fields(cls) if f.default is None], "a None default waiting for a profile"
    names = parameter_names(cls)   # every flat name, each in exactly one place
    assert names["backbone"] == names["lora_r"] == names["seed"] == "model" and names["max_length"] == "text"
    assert names["lr"] == names["fold"] == ""


def test_profile_is_a_base_layer_under_the_users_values(tmp_path):
    cfg = make_config(EncoderTrainConfig, output_dir=str(tmp_path), profile="kaggle-t4", lr=3e-5, max_length=512)
    assert cfg.lr == 3e-5 and cfg.text.max_length == 512                      # the user's values win
    assert cfg.model.backbone == "microsoft/deberta-v3-large" and cfg.text.prompt_tokens == 256   # the profile's
    assert cfg.model.precision == "fp16" and cfg.method == "finetune" and cfg.head_lr == 1e-4
    assert cfg.model.use_lora is False and cfg.epochs == 2.0                  # the class defaults under both
    default = make_config(EncoderTrainConfig, output_dir=str(tmp_path))       # cpu-sample: the dataclass defaults
    assert default == EncoderTrainConfig(output_dir=str(tmp_path)) and default.model.backbone == "minilm"
    # A parameters cell leaves a setting None for "the profile's value": the layers below show through.
    cell = from_params(EncoderTrainConfig, {"output_dir": str(tmp_path), "profile": "kaggle-t4", "lr": None,
                                            "backbone": None, "max_length": 768, "lora_r": 8})
    assert cell.lr == 1e-5 and cell.model.backbone == "microsoft/deberta-v3-large"
    assert cell.text.max_length == 768 and cell.model.lora_r == 8
    # The parts check their own ranges and rules, whichever layer set the value.
    with pytest.raises(ValueError, match="lora_r must be an integer >= 1"):
        make_config(DecoderTrainConfig, output_dir=str(tmp_path), lora_r=0)
    with pytest.raises(ValueError, match="quantization .QLoRA. needs use_lora=True"):
        make_config(EncoderTrainConfig, output_dir=str(tmp_path), quantization="4bit")


def test_misspelt_nested_parameter_names_the_one_meant(tmp_path):
    namespace = {"output_dir": str(tmp_path), "max_length": 300, "lora_alpha": 8, "demo_resume": True}
    cfg = from_params(DecoderTrainConfig, namespace)
    assert cfg.text.max_length == 300 and cfg.model.lora_alpha == 8
    for typo, meant in [("max_lenght", "max_length"), ("lora_rr", "lora_r"), ("backbon", "backbone"),
                        ("prompt_token", "prompt_tokens"), ("gradient_checkpointin", "gradient_checkpointing")]:
        with pytest.raises(ValueError, match=f"unknown parameter '{typo}'; did you mean '{meant}'"):
            from_params(DecoderTrainConfig, {**namespace, typo: 1})
        with pytest.raises(ValueError, match=f"unknown parameter '{typo}'; did you mean '{meant}'"):
            make_config(DecoderTrainConfig, **{typo: 1})
    with pytest.raises(ValueError, match="unknown parameter 'model'"):   # the parts are not parameters
        make_config(DecoderTrainConfig, model=ModelSpec())


def test_config_saved_before_the_composition_loads_into_the_composed_config(tmp_path):
    old = json.loads(OLD_CONFIG.read_text())
    assert "backbone" in old and "model" not in old   # flat, as main wrote it at 8f5ea91
    cfg = config_from_json(OLD_CONFIG)
    assert isinstance(cfg, EncoderTrainConfig) and cfg.method == "finetune"
    assert cfg.model.backbone == "tiny-deberta" and cfg.model.freeze_layers == 1 and cfg.model.seed == 42
    assert cfg.text == TextConfig(max_length=128, prompt_tokens=32, response_tokens=96)
    assert cfg.max_steps == 4 and cfg.max_train_rows == 64
    flat = flatten(cfg)
    # Settings added since (issue 21's tuned pairwise runs) take their defaults; the rest are the file's.
    newer = {"pairwise_head", "pairwise_tta", "pairwise_tune", "pairwise_tune_epochs", "pairwise_tune_lr",
             "pairwise_lora_lr", "pairwise_tune_head_lr", "pairwise_tune_tokens", "pairwise_tune_batch"}
    assert set(flat) - set(old) == newer and flat["pairwise_tune"] == "none"
    same = {k for k in flat if k not in ("train_path", "test_path", "output_dir") and k not in newer}   # paths: this machine's
    assert {k: flat[k] for k in same} == {k: old[k] for k in same}
    # Written back flat under the same names; the new file reads back to the same config.
    path = save_config(cfg, tmp_path, smoke=cfg.smoke, world_size=1)
    saved = json.loads(path.read_text())
    assert set(saved) == set(old) | newer and "model" not in saved and config_from_json(path) == cfg
    # An older file without a newer setting: that setting takes the profile's value, as before.
    del old["head_prior_init"], old["method"]
    (tmp_path / "older.json").write_text(json.dumps(old))
    older = config_from_json(tmp_path / "older.json")
    assert older.head_prior_init is True and older.method == "pairwise"


def test_factor_table_names_a_changed_nested_setting(tmp_path):
    ref = config_from_json(OLD_CONFIG)
    variant = make_config(EncoderTrainConfig, **{**flatten(ref), "head_layers": 3, "run_name": "old_encoder__head_layers-3"})
    assert variant.model.head_layers == 3
    for cfg in (ref, variant):
        save_config(cfg, tmp_path / cfg.run_name, smoke=cfg.smoke, world_size=1)
    # The reference as main saved it (flat file, paths as written there) against the variant saved now.
    (tmp_path / "old_encoder" / "config.json").write_text(OLD_CONFIG.read_text())
    ref_cfg, cfg = (json.loads((tmp_path / n / "config.json").read_text())   # as factor_table reads them
                    for n in ("old_encoder", "old_encoder__head_layers-3"))
    changed = changed_settings(ref_cfg, {**cfg, "train_path": ref_cfg["train_path"], "test_path": ref_cfg["test_path"]})
    assert changed == "head_layers=3"
