"""Library versions recorded in run_info.json and the warning when a run is loaded with other major/minor ones."""
from __future__ import annotations

import warnings

import pytest
import torch

from kagglelib.core import versions
from kagglelib.core.io import read_json, write_json
from kagglelib.models.build import build_model
from kagglelib.models.saved import load_for_inference
from kagglelib.run.info import write_run_info
from test_models import _save_run, tiny


def test_major_minor_comparison():
    recorded = {"torch": "2.13.0+cpu", "transformers": "4.56.2", "peft": "0.16.0", "accelerate": "1.15.0",
                "bitsandbytes": None, "tokenizers": "0.22.1"}
    installed = {"torch": "2.13.1", "transformers": "5.0.0", "peft": "0.19.1", "accelerate": "1.15.3",
                 "bitsandbytes": "0.50.2", "tokenizers": "0.23.0"}
    assert versions.version_mismatches(recorded, installed) == [
        "transformers 4.56.2 (run) vs 5.0.0 (here)", "peft 0.16.0 (run) vs 0.19.1 (here)",
        "tokenizers 0.22.1 (run) vs 0.23.0 (here)"]   # patch releases and a library missing on one side: silent
    assert versions.version_mismatches(installed, installed) == []


def test_run_info_records_the_installed_versions(tmp_path):
    write_run_info(tmp_path, "baseline", "kaggle", {})
    libs = read_json(tmp_path / "run_info.json")["libraries"]
    assert list(libs) == list(versions.LIBRARIES)
    assert libs["torch"] == torch.__version__.split("+")[0] or libs["torch"] == torch.__version__
    import transformers
    assert libs["transformers"] == transformers.__version__


def test_loading_a_run_made_with_other_versions_warns(tmp_path):
    spec = tiny(backbone="tiny-deberta", use_lora=False)
    model, tok = build_model(spec)
    run = _save_run(tmp_path, spec, model, tok, None)
    write_run_info(run, "transformer", "kaggle", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # same versions: no warning
        load_for_inference(run, device="cpu")
    info = read_json(run / "run_info.json")
    write_json({**info, "libraries": {**info["libraries"], "transformers": "4.56.0", "peft": "0.1.0"}},
               run / "run_info.json")
    with pytest.warns(UserWarning, match=r"transformers 4\.56\.0 \(run\) vs .* peft 0\.1\.0 \(run\)"):
        load_for_inference(run, device="cpu")
