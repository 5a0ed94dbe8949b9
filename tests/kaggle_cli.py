"""Run a `kaggle ...` command line through the real kaggle CLI (its parser and checks), offline.

Only the network is stubbed: the Kaggle client the CLI builds for each request records the request instead
of sending it, and file uploads record the file (a folder zipped by ``--dir-mode zip`` records its entries).
Everything the CLI checks before sending (arguments, metadata files, ids, sources) runs as for a user.
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

# Importing kaggle reads (and creates) its config folder: a temporary one unless the user set theirs.
os.environ.setdefault("KAGGLE_CONFIG_DIR", tempfile.mkdtemp(prefix="kaggle-config-"))
import kaggle  # noqa: E402  a test dependency (requirements-dev.txt): missing, the tests fail rather than skip
from kaggle import cli  # noqa: E402
from kaggle.api.kaggle_api_extended import KaggleApi  # noqa: E402
from requests import HTTPError, Response  # noqa: E402


@dataclass
class CliResult:
    """Exit code, output and what the CLI would have sent."""

    code: int
    out: str
    requests: dict[str, list[Any]] = field(default_factory=dict)   # client method name -> request objects
    uploads: dict[str, list[str]] = field(default_factory=dict)    # uploaded file name -> zip entries (or [])


def _client(requests: dict[str, list[Any]]) -> mock.MagicMock:
    """A stand-in Kaggle client: records each request, answers like a server accepting it."""
    def record(name: str, answer: Any = None, error: Exception | None = None):
        def call(request: Any) -> Any:
            requests.setdefault(name, []).append(request)
            if error is not None:
                raise error
            return answer
        return call

    not_found = Response()
    not_found.status_code = 404
    ok = dict(error=None, status="ok", url="https://www.kaggle.com/stub", invalidTags=[], invalidDatasetSources=[],
              invalidCompetitionSources=[], invalidKernelSources=[], versionNumber=1)
    client = mock.MagicMock()
    ds, kn = client.datasets.dataset_api_client, client.kernels.kernels_api_client
    ds.get_dataset_status.side_effect = record("get_dataset_status", error=HTTPError(response=not_found))
    ds.create_dataset.side_effect = record("create_dataset", SimpleNamespace(**ok))
    ds.create_dataset_version.side_effect = record("create_dataset_version", SimpleNamespace(**ok))
    kn.save_kernel.side_effect = record("save_kernel", SimpleNamespace(**ok))
    kn.get_kernel_session_status.side_effect = record("get_kernel_session_status",
                                                      SimpleNamespace(status="complete", failure_message=""))
    client.competitions.competition_api_client.create_code_submission.side_effect = record(
        "create_code_submission", SimpleNamespace(message="Successfully submitted", ref=7))
    return client


def run_cli(command: str, cwd: Path, config_dir: Path) -> CliResult:
    """Run one ``kaggle ...`` line (shell-quoted, as printed) in ``cwd`` with stub credentials."""
    argv = shlex.split(command)
    assert argv[0] == "kaggle", command
    requests: dict[str, list[Any]] = {}
    uploads: dict[str, list[str]] = {}

    def upload_blob(self: Any, path: str, *args: Any, **kwargs: Any) -> str:
        entries = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
        uploads[Path(path).name] = entries
        return f"token-{len(uploads)}"

    context = mock.MagicMock()
    context.__enter__.return_value = _client(requests)
    context.__exit__.return_value = False
    env = {"KAGGLE_USERNAME": "me", "KAGGLE_KEY": "stub", "KAGGLE_CONFIG_DIR": str(config_dir)}
    out = io.StringIO()
    old_cwd = os.getcwd()
    with mock.patch.dict(os.environ, env), mock.patch.object(sys, "argv", argv), \
            mock.patch.object(KaggleApi, "build_kaggle_client", return_value=context), \
            mock.patch.object(KaggleApi, "_upload_blob", upload_blob), \
            mock.patch.object(KaggleApi, "already_printed_version_warning", True), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        os.chdir(cwd)
        try:
            cli.api.authenticate()
            cli.main()
            code = 0
        except SystemExit as e:   # argparse errors (2) and the CLI's own failures (1)
            code = e.code if isinstance(e.code, int) else 1
        finally:
            os.chdir(old_cwd)
    return CliResult(code, out.getvalue(), requests, uploads)


def commands_in(text: str) -> list[str]:
    """The ``kaggle`` command lines of a COMMANDS.txt (the later ``datasets version`` one is commented)."""
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line.startswith("later: kaggle "):
            line = line[len("later: "):]
        if line.startswith("kaggle "):
            lines.append(line)
    return lines


def cli_version() -> str:
    """The installed kaggle CLI's version."""
    return kaggle.__version__
