"""Notebook 01's library call (eda.run_eda), the shared text conventions, and the configs: from_params's name checks,
one home per setting (profile tables), saved configs read back."""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass

import pandas as pd
import pytest

from kagglelib.analysis.ablation import AblationConfig
from kagglelib.analysis.eda import (EdaConfig, length_table, longer_wins_rate, position_rates, run_eda,
                                    share_interval, special_responses)
from kagglelib.inference.submit import InferenceConfig
from kagglelib.run.layout import CONFIG, EDA_FIGURES, METRICS
from kagglelib.run.store import NOTEBOOK_OF
from kagglelib.training.baseline import BaselineConfig
from kagglelib.training.config import DecoderTrainConfig, EncoderTrainConfig, config_from_json
from kagglelib.run.config import (METADATA_KEYS, PROFILES, RunConfig, flatten, from_params, looks_like_parameter,
                                  make_config, parameter_names, save_config)
from kagglelib.data.features import text_stats
from kagglelib.data.text import join_turns


def test_run_eda_writes_metrics_and_figures(tmp_path):
    result = run_eda(EdaConfig(output_dir=str(tmp_path), min_battles=5))
    run = tmp_path / "runs" / "eda"
    for name in [CONFIG, METRICS, *EDA_FIGURES.values()]:
        assert (run / name).stat().st_size > 0, name
    metrics = json.loads((run / METRICS).read_text())
    assert metrics["n_train"] == 1110 and metrics["n_test"] == 200
    assert metrics["label_share"] == {"A": 0.3405, "B": 0.3514, "tie": 0.3081}
    assert json.loads((run / CONFIG).read_text())["min_battles"] == 5
    models = result["tables"]["model_win_rates"]
    assert len(models) and (models["battles"] >= 5).all()
    assert (models["battles"] < 10).any()          # min_battles reached the table: the default 10 would drop these
    assert set(result["figures"]) == set(EDA_FIGURES)


def test_refusals_are_one_pattern_for_eda_and_features():
    texts = ["I'm sorry, but I cannot provide that.", "As an AI, I must decline.", "Sorry for the delay: here it is.",
             "The answer is 42."]
    df = pd.DataFrame({"prompt": [["q"]] * 4, "response_a": [[t] for t in texts], "response_b": [["ok"]] * 4,
                       "label": [0, 1, 2, 0]})
    table = special_responses(df)
    assert table.loc["refusal in A only", "rows"] == 2                  # an apology alone is not a refusal
    assert (text_stats(pd.Series(texts))["refusal"] > 0).tolist() == [True, True, False, False]


def test_turns_are_joined_the_same_way_everywhere():
    df = pd.DataFrame({"id": [1], "prompt": [["q1", "q2"]], "response_a": [["one", "two"]], "response_b": [["x"]], "label": [0]})
    assert join_turns(df["response_a"]).tolist() == ["one\ntwo"]
    assert length_table(df).loc[0, "response_a_chars"] == len("one\ntwo")


@dataclass
class _Cfg(RunConfig):
    resume: str = "auto"
    batch_size: int = 4
    eval_batch_size: int = 8


def test_from_params_rejects_misspelt_names_and_ignores_other_globals(tmp_path):
    namespace = {"output_dir": str(tmp_path), "batch_size": 2, "sys": sys, "pd": pd, "RunConfig": RunConfig,
                 "from_params": from_params, "In": ["", "x = 1"], "_i1": "batch_sise = 3", "demo_resume": True,
                 "frame": pd.DataFrame({"batch_sise": [1]}), "extra_switch": "on"}
    cfg = from_params(_Cfg, namespace)
    assert cfg.batch_size == 2 and cfg.eval_batch_size == 8 and cfg.output_dir == str(tmp_path)
    for typo, meant in [("batch_sise", "batch_size"), ("eval_batchsize", "eval_batch_size"), ("resumee", "resume"),
                        ("run_nme", "run_name"), ("output_dirs", "output_dir")]:
        with pytest.raises(ValueError, match=f"unknown parameter '{typo}'; did you mean '{meant}'"):
            from_params(_Cfg, {**namespace, typo: 1})
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        from_params(_Cfg, {**namespace, "batch_sise": [1, 2]})          # lists are parameters too ("a,b" or [..])


def test_looks_like_parameter():
    assert looks_like_parameter("n_folds", 5) and looks_like_parameter("runs", ["a", "b"])
    assert looks_like_parameter("probe_rows", None)
    assert not looks_like_parameter("pd", pd) and not looks_like_parameter("In", [""])
    assert not looks_like_parameter("_i3", "x") and not looks_like_parameter("cfg", {"a": 1})
    assert not looks_like_parameter("read", open)


def test_position_and_longer_wins_shares_with_intervals():
    df = pd.DataFrame({"id": range(4), "prompt": [["q"]] * 4, "response_a": [["aaaa"], ["a"], ["aaaa"], ["a"]],
                       "response_b": [["b"], ["bbbb"], ["b"], ["b"]], "label": [0, 1, 1, 2]})
    pos = position_rates(df)
    half = 1.96 * (1 / 3 * 2 / 3 / 3) ** 0.5
    assert (pos["a_wins"], pos["b_wins"]) == (1, 2) and pos["a_share_of_decisive"] == pytest.approx(1 / 3)
    assert (pos["ci_low"], pos["ci_high"]) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    longer = longer_wins_rate(df)                    # the tie is left out; the longer side won 2 of 3
    assert longer["rows"] == 3 and longer["longer_wins"] == pytest.approx(2 / 3)
    assert all(v != v for v in share_interval(0, 0))   # no rows: NaN, not a division error


CONFIGS = (EdaConfig, BaselineConfig, DecoderTrainConfig, EncoderTrainConfig,
           InferenceConfig, AblationConfig)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_profile_tables_hold_only_what_differs(cls):
    """The dataclass defaults are cpu-sample's values; a GPU profile's table names parameters of the class and holds
    only values that differ from the default (one the same as the default belongs nowhere); no default is a None
    waiting for a profile to fill it."""
    table = cls.PROFILE_DEFAULTS
    assert set(table) <= set(PROFILES) - {"cpu-sample"}
    defaults = flatten(cls())
    assert not [k for k, v in defaults.items() if v is None], f"{cls.__name__}: None defaults"
    for profile, values in table.items():
        for key, value in values.items():
            assert key in parameter_names(cls), f"{cls.__name__}: {profile} sets {key!r}, not a parameter"
            assert json.dumps(value) != json.dumps(defaults[key]), f"{cls.__name__}.{key}: {profile} repeats the default"
        built = flatten(make_config(cls, profile=profile))
        assert all(built[k] == v for k, v in values.items()), f"{cls.__name__}: {profile}'s table not applied"


def test_saved_training_config_reads_back_under_the_old_and_new_class_name(tmp_path):
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), lr=5e-3)
    path = save_config(cfg, tmp_path, smoke=cfg.smoke, world_size=1)
    saved, names = set(json.loads(path.read_text())), set(parameter_names(DecoderTrainConfig))
    assert names <= saved and saved - names == {"config_class", "env", "host", "python", "created", "smoke", "world_size"}
    assert saved - names <= set(METADATA_KEYS)
    assert config_from_json(path) == cfg
    raw = {**json.loads(path.read_text()), "config_class": "GemmaTrainConfig"}   # a run saved before the rename
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert config_from_json(tmp_path / "old.json") == cfg
    assert NOTEBOOK_OF["GemmaTrainConfig"] == NOTEBOOK_OF["DecoderTrainConfig"] == "03_train_gemma_lora"
    with pytest.raises(ValueError, match="METADATA_KEYS"):   # an extra key no reader would know to strip
        save_config(cfg, tmp_path, gpu="a100")
