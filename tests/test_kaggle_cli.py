"""What the packager prints and writes, run through the real `kaggle` CLI (parser + checks; network stubbed)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kaggle_cli import cli_version, commands_in, run_cli
from kagglelib import packaging
from kagglelib.core.io import write_json, write_text

COMP = "llm-classification-finetuning"


def _bundle(root: Path, bases: dict[str, str] | None = None, model_sources: list[str] | None = None) -> list[str]:
    """dataset/ and kernel/ folders as package() writes them (a stand-in run), and the printed commands."""
    dataset, kernel = root / "dataset", root / "kernel"
    (dataset / "kagglelib").mkdir(parents=True)
    write_text('"""stand-in"""\n', dataset / "kagglelib" / "__init__.py")
    (dataset / "runs" / "baseline").mkdir(parents=True)
    write_json({"kind": "baseline"}, dataset / "runs" / "baseline" / "run_info.json")
    write_json(packaging.dataset_metadata("me"), dataset / "dataset-metadata.json")
    kernel.mkdir()
    nb = packaging.kernel_notebook(["baseline"], packaging.DATASET_SLUG, has_wheels=True)
    write_text(json.dumps(nb), kernel / "05_tta_inference.ipynb")
    sources = packaging.model_sources_for(bases or {}, model_sources)
    write_json(packaging.kernel_metadata("me", "arena-pref-inference", packaging.DATASET_SLUG, COMP, sources),
               kernel / "kernel-metadata.json")
    text = "\n".join(packaging.kaggle_commands(dataset, kernel, "me", "arena-pref-inference", packaging.DATASET_SLUG,
                                               COMP, 0, bases or {}, sources))
    return commands_in(text)


def test_every_printed_command_passes_the_real_cli(tmp_path):
    root = tmp_path / "a folder with spaces"   # the printed paths are shell-quoted
    commands = _bundle(root)
    assert [c.split()[1:3] for c in commands] == [["datasets", "create"], ["datasets", "version"],
                                                   ["kernels", "push"], ["kernels", "status"],
                                                   ["competitions", "submit"]], commands
    sent = {}
    for command in commands:
        result = run_cli(command.replace("VERSION", "3"), tmp_path, tmp_path / "cfg")
        assert result.code == 0 and "error" not in result.out.lower(), (cli_version(), command, result.out)
        sent.update(result.requests)
        if "datasets create" in command:   # --dir-mode zip uploads the folders, zipped, with their files
            assert result.uploads["kagglelib.zip"] == ["__init__.py"], result.uploads
            assert "baseline/run_info.json" in result.uploads["runs.zip"]
    created = sent["create_dataset"][0]
    assert (created.owner_slug, created.slug, created.license_name) == ("me", "arena-pref-runs", "apache-2.0")
    assert created.is_private and len(created.files) == 2
    assert sent["create_dataset_version"][0].body.version_notes == "new runs"
    kernel = sent["save_kernel"][0]
    assert kernel.machine_shape == "NvidiaTeslaT4"   # GPU T4 x2 in the CLI's help and docs
    assert kernel.enable_gpu and not kernel.enable_internet and kernel.is_private
    assert kernel.dataset_data_sources == ["me/arena-pref-runs"] and kernel.competition_data_sources == [COMP]
    assert kernel.kernel_type == "notebook" and kernel.language == "python" and kernel.slug == "me/arena-pref-inference"
    assert json.loads(kernel.text)["cells"][1]["id"] == "offline-wheels"
    status = sent["get_kernel_session_status"][0]
    assert (status.user_name, status.kernel_slug) == ("me", "arena-pref-inference")
    submitted = sent["create_code_submission"][0]
    assert (submitted.competition_name, submitted.file_name, submitted.kernel_slug, submitted.kernel_version) == (
        COMP, "submission.csv", "arena-pref-inference", 3)


def test_the_old_submit_line_is_refused_by_the_cli(tmp_path):
    """What the packager printed before: a kernel submission without -f, which the current CLI refuses."""
    result = run_cli(f"kaggle competitions submit -c {COMP} -k me/arena-pref-inference -v 3 -m 'x'", tmp_path,
                     tmp_path / "cfg")
    assert result.code == 1 and "No file specified" in result.out and not result.requests


def test_lora_base_becomes_a_kaggle_models_handle_the_cli_accepts(tmp_path):
    commands = _bundle(tmp_path, bases={"gemma_lora": "google/gemma-2-9b-it"})
    meta = json.loads((tmp_path / "kernel" / "kernel-metadata.json").read_text())
    assert meta["model_sources"] == ["google/gemma-2/transformers/gemma-2-9b-it/2"]
    push = next(c for c in commands if "kernels push" in c)
    result = run_cli(push, tmp_path, tmp_path / "cfg")
    assert result.code == 0, result.out
    assert result.requests["save_kernel"][0].model_data_sources == ["google/gemma-2/transformers/gemma-2-9b-it/2"]


def test_a_hugging_face_id_as_model_source_is_refused_at_home_as_by_the_cli(tmp_path):
    with pytest.raises(ValueError, match="google/gemma-2/transformers/gemma-2-2b-it/2"):
        packaging.model_sources_for({"r": "google/gemma-2-2b-it"}, ["google/gemma-2-2b-it"])
    # The CLI's own check, on a metadata file holding the Hugging Face id.
    _bundle(tmp_path)
    meta_path = tmp_path / "kernel" / "kernel-metadata.json"
    meta = json.loads(meta_path.read_text())
    write_json({**meta, "model_sources": ["google/gemma-2-2b-it"]}, meta_path)
    result = run_cli(f"kaggle kernels push -p '{tmp_path / 'kernel'}'", tmp_path, tmp_path / "cfg")
    assert result.code == 1 and "Model instance version must be specified" in result.out
    assert "save_kernel" not in result.requests


def test_unknown_lora_base_prints_how_to_attach_it(tmp_path):
    text = "\n".join(packaging.kaggle_commands(tmp_path / "d", tmp_path / "k", "me", "arena-pref-inference",
                                               packaging.DATASET_SLUG, COMP, 0, {"r": "Qwen/Qwen2.5-7B"}, []))
    assert "--model-sources OWNER/MODEL/FRAMEWORK/VARIATION/VERSION" in text and "Qwen/Qwen2.5-7B" in text


def test_wheels_are_fetched_for_kaggles_python(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, check):
        calls.append(cmd)
        (tmp_path / "cache").mkdir(exist_ok=True)
        (tmp_path / "cache" / "bitsandbytes-0.49.0-py3-none-manylinux_2_24_x86_64.whl").write_bytes(b"")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert packaging.download_wheels(["bitsandbytes"], tmp_path / "wheels", tmp_path / "cache") == [
        "bitsandbytes-0.49.0-py3-none-manylinux_2_24_x86_64.whl"]
    cmd = calls[0]
    assert cmd[cmd.index("--python-version") + 1] == packaging.KAGGLE_PYTHON == "3.12"


def test_a_base_trained_from_a_kaggle_models_folder_is_named_by_its_variation():
    import dataclasses

    from kagglelib.models.saved import inference_needs
    from test_models import tiny

    spec = dataclasses.replace(tiny(), backbone="/kaggle/input/gemma-2/transformers/gemma-2-2b-it/2")
    base = inference_needs(spec)["base_model"]
    assert base == "gemma-2-2b-it"   # not "2", the version folder
    assert packaging.model_sources_for({"r": base}, None) == ["google/gemma-2/transformers/gemma-2-2b-it/2"]
    assert inference_needs(dataclasses.replace(tiny(), backbone="/data/models/my-base"))["base_model"] == "my-base"
