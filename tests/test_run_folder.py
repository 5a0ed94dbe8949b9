"""kagglelib.run.folder.Run: a committed run read once, its kind, layout, held-out predictions and identity."""
from __future__ import annotations

import pytest

from kagglelib.core.io import write_json, write_text
from kagglelib.run.folder import Run
from kagglelib.run.store import RunError, staged_run


def commit(output_dir, name, kind="baseline", layout="kaggle", preds="id,winner_model_a,winner_model_b,winner_tie\n1,0.2,0.3,0.5\n"):
    with staged_run(output_dir, name) as stage:
        write_json({"config_class": "BaselineConfig", "run_name": name}, stage.path / "config.json")
        write_json({"format": 1, "kind": kind, "layout": layout, "provenance": {"n_rows": 3}}, stage.path / "run_info.json")
        write_text(preds, stage.path / "oof.csv")
    return stage.final


def test_run_reads_its_folder_once_and_answers(tmp_path):
    path = commit(tmp_path, "b", layout="wsdm")
    run = Run.open("b", tmp_path)
    assert run.path == path and run.name == "b" and run.kind == "baseline" and run.layout == "wsdm"
    assert run.submission_columns == ["id", "winner"] and run.provenance == {"n_rows": 3}
    assert run.heldout_file == path / "oof.csv" and run.heldout().loc["1", "winner_tie"] == 0.5
    assert run.fold_dirs == []


def test_identity_is_the_content_not_the_name(tmp_path):
    a = Run.open(commit(tmp_path / "x", "baseline"))
    b = Run.open(commit(tmp_path / "y", "baseline", preds="id,winner_model_a,winner_model_b,winner_tie\n1,0.5,0.3,0.2\n"))
    assert a.name == b.name and a.identity != b.identity
    again = Run.open(commit(tmp_path / "x", "baseline", preds="id,winner_model_a,winner_model_b,winner_tie\n1,0.1,0.1,0.8\n"))
    assert again.path == a.path and again.identity != a.identity   # a new generation is another run


def test_a_changed_file_is_refused_on_open(tmp_path):
    path = commit(tmp_path, "b")
    write_text("id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n", path / "oof.csv")
    with pytest.raises(RunError, match="oof.csv"):
        Run.open(path)
