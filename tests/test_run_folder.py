"""kagglelib.run.folder.Run: creating and committing a run, and a committed run read once: its kind, layout, held-out
predictions, fold sub-runs and identity."""
from __future__ import annotations

import pytest

from kagglelib.core.io import write_json, write_text
from kagglelib.run.folder import Run
from kagglelib.run.store import RunError, verify_run


def commit(output_dir, name, kind="baseline", layout="kaggle", preds="id,winner_model_a,winner_model_b,winner_tie\n1,0.2,0.3,0.5\n"):
    with Run.create(output_dir, name) as stage:
        write_json({"config_class": "BaselineConfig", "run_name": name}, stage.config_file)
        write_json({"format": 1, "kind": kind, "layout": layout, "provenance": {"n_rows": 3}}, stage.info_file)
        write_text(preds, stage.oof_file)
    return stage.final


def test_create_stages_every_file_at_its_place_and_commits_once(tmp_path):
    with Run.create(tmp_path, "r") as stage:
        assert stage.path != stage.final and not stage.final.exists()
        assert stage.config_file.name == "config.json" and stage.metrics_file.name == "metrics.json"
        assert stage.valid_preds_file.name == "valid_preds.csv" and stage.fold(2).path == stage.path / "fold2"
        write_json({"config_class": "EncoderTrainConfig", "smoke": True}, stage.config_file)
        write_json({"valid_log_loss": 1.05}, stage.metrics_file)
        for k in (0, 1):   # an all-fold run: fold sub-runs with their own config, metrics and model
            write_json({"config_class": "EncoderTrainConfig", "fold": k}, stage.fold(k).config_file)
            write_json({"valid_log_loss": 1.0 + k}, stage.fold(k).metrics_file)
            write_text("{}", stage.fold(k).model_dir / "config.json")
    files = verify_run(stage.final)["files"]
    assert {"config.json", "metrics.json", "fold1/metrics.json", "fold0/model/config.json"} <= set(files)
    run = Run.open("r", tmp_path)
    assert run.metrics == {"valid_log_loss": 1.05} and run.is_smoke and run.kind == "transformer"
    folds = run.folds
    assert [f.config["fold"] for f in folds] == [0, 1] and folds[1].metrics["valid_log_loss"] == 2.0
    # a fold sub-run is sealed by its parent's manifest: its identity is the parent's and its folder name
    assert folds[0].identity == f"{run.identity}/fold0" != folds[1].identity


def test_a_failed_block_leaves_nothing_and_a_folder_without_manifest_has_no_identity(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with Run.create(tmp_path, "r") as stage:
            write_json({}, stage.config_file)
            1 / 0
    assert not stage.final.exists() and not stage.path.exists()
    loose = tmp_path / "loose"
    loose.mkdir()
    write_json({"config_class": "BaselineConfig"}, loose / "config.json")
    with pytest.raises(RunError, match="no manifest"):
        Run.at(loose).identity


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
