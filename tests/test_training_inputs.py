"""Training reads and checks every input (train files, folds, test file, teacher) before any model weight loads."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import TRAIN
from kagglelib.training import fit
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig

TINY = {"max_steps": 2, "eval_steps": 2, "save_steps": 2, "max_train_rows": 16, "max_valid_rows": 12,
        "max_length": 96, "progress": False}


@pytest.fixture()
def no_weights(monkeypatch):
    """Loading a model fails the test: whatever error comes must come before it."""
    def refuse(spec):
        pytest.fail("the model was loaded before the inputs were checked")
    monkeypatch.setattr(fit, "build_model", refuse)


@pytest.mark.usefixtures("no_weights")
def test_a_teacher_without_fold_record_is_refused_before_the_model_loads(tmp_path):
    teacher = tmp_path / "teacher.csv"
    ids = pd.read_csv(TRAIN)["id"]
    pd.DataFrame({"id": ids, "winner_model_a": 0.4, "winner_model_b": 0.4, "winner_tie": 0.2}).to_csv(teacher, index=False)
    with pytest.raises(ValueError, match="no fold record"):
        fit.train(make_config(DecoderTrainConfig, output_dir=str(tmp_path), teacher=str(teacher), **TINY))


@pytest.mark.usefixtures("no_weights")
def test_a_missing_teacher_run_is_refused_before_the_model_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        fit.train(make_config(DecoderTrainConfig, output_dir=str(tmp_path), teacher="no_such_run", **TINY))


@pytest.mark.usefixtures("no_weights")
def test_too_few_prompts_for_the_folds_is_refused_before_the_model_loads(tmp_path):
    small = tmp_path / "small.csv"
    pd.read_csv(TRAIN).head(4).to_csv(small, index=False)
    with pytest.raises(ValueError, match="cannot make 5 folds"):
        fit.train(make_config(DecoderTrainConfig, output_dir=str(tmp_path), train_path=str(small), **TINY))
