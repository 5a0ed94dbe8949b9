"""A run folder is one consistent unit: written in a staging folder, committed by rename, sealed by a manifest.

Writers (01 EDA, 02 baseline, 03/04 training, 05 inference, 06's TTA twin) call
:meth:`kagglelib.run.folder.Run.create`, which is :func:`staged_run`::

    with Run.create(output_dir, run_name) as stage:
        ...write every artifact at its place under stage.path (stage.config_file, stage.oof_file, ...)...

which takes ``runs/.<name>.lock`` (pid, host, time; a second writer of the same run stops with an error
naming the holder; a lock left by a dead process on this host is taken over, with a warning), writes into
``runs/.<name>.staging-<pid>``, writes ``manifest.json`` last (every file's relative path, size and
sha256) and only then replaces ``runs/<name>`` by renaming; the old run is removed only after the new one
is in place. A failure or kill leaves the old run untouched, so a run is always fully old or fully new.

Readers call :func:`verify_run`: a run without a manifest, with a file missing, changed, or not listed
(a file from another generation) is refused with an error naming the run and the file.

State that must survive a kill but is not part of the run lives outside the staging folder: training
checkpoints in ``runs/.<name>.work/`` (:func:`work_dir`; resumed only when the configuration equals the
checkpoints' one) and inference chunk caches in ``<output_dir>/cache/inference/``. Folders named
``checkpoints``, ``checkpoint-*`` and ``cache`` inside a run are resumption state, and hidden names are
editors' and file managers' litter: neither is in the manifest.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.checks import check_run_name
from ..core.io import file_sha256, read_json, write_json
from .names import CONFIG, MANIFEST, RunFiles


log = logging.getLogger(__name__)
# config_class -> notebook; "GemmaTrainConfig" is DecoderTrainConfig's name in runs saved before the rename.
NOTEBOOK_OF = {"BaselineConfig": "02_baseline", "DecoderTrainConfig": "03_train_gemma_lora",
               "GemmaTrainConfig": "03_train_gemma_lora",
               "EncoderTrainConfig": "04_train_deberta", "InferenceConfig": "05_tta_inference",
               "EdaConfig": "01_eda"}


class RunError(RuntimeError):
    """A run folder that must not be used: incomplete, from mixed generations, or locked by another writer."""


def runs_root(output_dir: str | Path) -> Path:
    """``<output_dir>/runs``."""
    return Path(output_dir) / "runs"


def _check_name(run_name: str) -> None:
    check_run_name(run_name)


def work_dir(output_dir: str | Path, run_name: str) -> Path:
    """``runs/.<name>.work``: state that survives a kill (training checkpoints), found again by a rerun."""
    return runs_root(output_dir) / f".{run_name}.work"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def _acquire(lock: Path, run_name: str) -> None:
    """Create the lock file exclusively; take over a lock whose process is dead on this host."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if isinstance(pid, int) and host == me["host"] and not _pid_alive(pid):
                log.warning("run %r: taking over the stale lock %s of pid %s (no longer running) from %s",
                            run_name, lock, pid, holder.get("time"))
                lock.unlink(missing_ok=True)
                continue
            raise RunError(f"run {run_name!r} is being written by pid {pid} on host {host} since "
                           f"{holder.get('time')} (lock {lock}); wait for it to finish, use another run_name, or "
                           "delete the lock file if that process is gone") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        return
    raise RunError(f"run {run_name!r}: could not take the lock {lock}")


@contextmanager
def run_lock(output_dir: str | Path, run_name: str) -> Iterator[Path]:
    """Hold ``runs/.<name>.lock`` for the block (see :func:`_acquire`)."""
    _check_name(run_name)
    root = runs_root(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f".{run_name}.lock"
    _acquire(lock, run_name)
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def files_sha256(spec: str | Path) -> list[str]:
    """sha256 of a data file, or of each file of a comma-separated list (a missing one counts by its name)."""
    names = [str(spec)] if Path(spec).is_file() else [t.strip() for t in str(spec).split(",") if t.strip()]
    return [file_sha256(n) if Path(n).is_file() else f"missing:{n}" for n in names]


def _listed(rel: Path) -> bool:
    """Whether a file (path relative to the run) belongs in the manifest.

    Not: resumption state, and hidden names (atomic writers' temporary files, .ipynb_checkpoints, .DS_Store).
    """
    return rel.as_posix() != MANIFEST and rel.parts[0] != "cache" \
        and not any(p == "checkpoints" or p.startswith(("checkpoint-", ".")) for p in rel.parts)


def run_files(run_dir: str | Path) -> list[str]:
    """Relative paths (posix) of the files a manifest covers, sorted."""
    run_dir = Path(run_dir)
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and _listed(p.relative_to(run_dir)))


def write_manifest(run_dir: str | Path) -> dict[str, Any]:
    """Write ``manifest.json`` listing every artifact's size and sha256 (call it last)."""
    run_dir = Path(run_dir)
    files = {rel: {"size": (run_dir / rel).stat().st_size, "sha256": file_sha256(run_dir / rel)}
             for rel in run_files(run_dir)}
    manifest = {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}
    write_json(manifest, run_dir / MANIFEST)
    return manifest


def manifest_hash(run_dir: str | Path) -> str:
    """sha256 of the run's manifest: changes whenever any artifact of the run changes."""
    return file_sha256(Path(run_dir) / MANIFEST)


def verify_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest, after checking every listed file's size and hash and that no other file is there."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        notebook = "the notebook that made it"
        try:
            notebook = NOTEBOOK_OF.get(read_json(run_dir / CONFIG).get("config_class"), notebook)
        except (OSError, ValueError):
            pass
        raise RunError(f"run {run_dir}: no {MANIFEST}, so it cannot be checked for completeness (made by an older "
                       f"version of the suite, or not finished); re-run {notebook} to write it again")
    try:
        files = read_json(path)["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"run {run_dir}: {MANIFEST} is unreadable ({err}); re-run the notebook that made it") from None
    for rel, want in files.items():
        f = run_dir / rel
        if not f.is_file():
            raise RunError(f"run {run_dir}: file {rel} listed in {MANIFEST} is missing; the run is incomplete")
        if f.stat().st_size != want["size"] or file_sha256(f) != want["sha256"]:
            raise RunError(f"run {run_dir}: file {rel} differs from {MANIFEST} (changed after the run was "
                           "committed, or copied incompletely); re-copy or re-run it")
    extra = sorted(set(run_files(run_dir)) - set(files))
    if extra:
        raise RunError(f"run {run_dir}: file {extra[0]} is not listed in {MANIFEST} ({len(extra)} such): it does "
                       "not belong to this run's generation; remove it or re-run")
    return read_json(path)


def committed_files(run_dir: str | Path) -> list[str]:
    """Every file of a checked run (:func:`verify_run`), its manifest last: what a copy of the run must hold."""
    return [*verify_run(run_dir)["files"], MANIFEST]


@dataclass
class Staging(RunFiles):
    """Where a writer puts the run (``path``, with each artifact's place: :class:`~.names.RunFiles`), where it lands
    (``final``), and whether to commit it."""

    path: Path
    final: Path
    commit: bool = True


def _clean_leftovers(root: Path, run_name: str) -> None:
    """Under the lock: remove staging folders of earlier (killed) writers; restore an old run a kill left aside."""
    final = root / run_name
    for p in sorted(root.glob(f".{run_name}.staging-*")):
        shutil.rmtree(p, ignore_errors=True)
    olds = sorted(root.glob(f".{run_name}.old-*"))
    if olds and not final.exists():
        log.warning("run %r: restoring %s, left aside by a commit that was killed", run_name, olds[-1])
        os.replace(olds[-1], final)
        olds = olds[:-1]
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)


def commit(stage: Staging) -> Path:
    """Seal the staging folder with its manifest and put it in place of the run folder (old one removed after)."""
    write_manifest(stage.path)
    final = stage.final
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(stage.path, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def staged_run(output_dir: str | Path, run_name: str, main_process: bool = True) -> Iterator[Staging]:
    """Lock the run, yield a fresh staging folder, commit it atomically if the block succeeds and ``commit``.

    On an error (or ``stage.commit = False``) the staging folder is removed and the old run stays.
    ``main_process=False`` (other DDP ranks, which write nothing) yields the paths without locking.
    """
    _check_name(run_name)
    root = runs_root(output_dir)
    final = root / run_name
    check_not_linked(final)
    if not main_process:
        yield Staging(root / f".{run_name}.staging-rank", final, commit=False)
        return
    with run_lock(output_dir, run_name):
        _clean_leftovers(root, run_name)
        stage = Staging(root / f".{run_name}.staging-{os.getpid()}", final)
        stage.path.mkdir(parents=True)
        try:
            yield stage
            if stage.commit:
                commit(stage)
        finally:
            if stage.path.exists():
                shutil.rmtree(stage.path, ignore_errors=True)


def check_not_linked(final: Path) -> None:
    """A run folder that is a symbolic link is refused before the run starts: a commit replaces the folder by rename,
    which would replace the link (the run landing beside it, the linked folder left stale). Link the output_dir or
    its ``runs/`` folder instead: those are never renamed."""
    if final.is_symlink():
        raise RunError(f"run folder {final} is a symbolic link (to {os.readlink(final)}); a run is committed by "
                       "renaming its folder, which would replace the link. Remove the link and point output_dir "
                       "(or its runs/ folder) at that disk instead")


def same_state(folder: Path, state: dict[str, Any]) -> bool:
    """Whether ``folder/state.json`` exists and equals ``state`` (JSON-normalised)."""
    path = folder / "state.json"
    if not path.is_file():
        return False
    try:
        return read_json(path) == json.loads(json.dumps(state, default=str))
    except (OSError, ValueError):
        return False


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Record the configuration the state in ``folder`` (checkpoints) belongs to."""
    write_json(json.loads(json.dumps(state, default=str)), folder / "state.json")
