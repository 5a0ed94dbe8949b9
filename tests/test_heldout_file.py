"""One held-out predictions format for every producer (02, 03/04 one fold and all folds), soft rows flagged."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TRAIN
from kagglelib.data.frame import WINNER_COLUMNS, soft_rows, targets
from kagglelib.data.load import load_arena
from kagglelib.run.info import write_heldout
from kagglelib.run.config import make_config
from kagglelib.training.config import DecoderTrainConfig
from kagglelib.training.fit import train

TINY = {"max_steps": 2, "eval_steps": 2, "save_steps": 2, "max_train_rows": 16, "max_valid_rows": 0,
        "max_length": 96, "progress": False}


def soft_train_file(tmp_path) -> tuple[str, set[str]]:
    """The sample with every third row's winners replaced by probabilities (pseudo-labels); their ids."""
    raw = pd.read_csv(TRAIN)
    raw[list(WINNER_COLUMNS)] = raw[list(WINNER_COLUMNS)].astype(float)
    soft = raw.index % 3 == 0
    raw.loc[soft, list(WINNER_COLUMNS)] = [0.7, 0.2, 0.1]
    path = tmp_path / "train_soft.csv"
    raw.to_csv(path, index=False)
    return str(path), set(raw.loc[soft, "id"].astype(str))


def test_writer_flags_soft_rows_only_when_there_are_some(tmp_path):
    path, soft_ids = soft_train_file(tmp_path)
    rows = load_arena(path).head(30)
    probs = np.full((30, 3), 1 / 3)
    table = write_heldout(tmp_path / "oof.csv", rows, probs, np.zeros(30, dtype=int))
    assert list(table.columns[:4]) == ["id", "fold", "label", "soft"]
    assert table["soft"].tolist() == soft_rows(targets(rows)).tolist() and table["soft"].any()
    hard = write_heldout(tmp_path / "hard.csv", load_arena(TRAIN).head(30), probs, np.zeros(30, dtype=int))
    assert "soft" not in hard.columns
    assert list(pd.read_csv(tmp_path / "oof.csv").columns) == list(table.columns)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_transformer_run_on_pseudo_labels_flags_them_in_valid_preds(tmp_path):
    """05 must not fit blend weights or a temperature on pseudo-labels as if they were human labels."""
    path, soft_ids = soft_train_file(tmp_path)
    cfg = make_config(DecoderTrainConfig, output_dir=str(tmp_path), train_path=path, run_name="soft", **TINY)
    train(cfg)
    preds = pd.read_csv(cfg.run_dir / "valid_preds.csv", dtype={"id": str})
    assert "soft" in preds.columns
    assert preds["soft"].astype(bool).tolist() == preds["id"].isin(soft_ids).tolist() and preds["soft"].any()
