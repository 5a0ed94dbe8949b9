"""Atomic writers for every artifact a run leaves behind (text, JSON, tables, PNG), reading the suite's own tables
back (ids as text: no NA parsing, no number conversion), list parameters read back, and files' content hashes."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

# The process umask, read once (os.umask can only be read by setting it, which would race other threads).
_UMASK = os.umask(0)
os.umask(_UMASK)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Speed cache of folder_sha256: a file's sha256 by (path, size, mtime, ctime, inode). The key a cache uses is always
# the content hash; ctime (set by the kernel on every write or rename, never copied by cp -p, rsync -t or unzip)
# makes a replaced file hash again even when its size and mtime are the old ones.
_SHA256_SEEN: dict[tuple, str] = {}


def folder_sha256(folder: str | Path) -> str:
    """Content identity of a folder (a model's weights, config and tokenizer files): sha256 over the names and
    sha256 of its top-level files, hidden ones left out. Two folders of the same name and sizes but other weights
    differ; each file is hashed once per process while it stays the same file."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")):
        st = f.stat()
        seen = (str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if seen not in _SHA256_SEEN:
            _SHA256_SEEN[seen] = file_sha256(f)
        h.update(f"{f.name}\0{_SHA256_SEEN[seen]}\n".encode())
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes[-1:]), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(text: str, path: str | Path) -> Path:
    """Write UTF-8 text, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically; NaN becomes null."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and x != x:
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if hasattr(x, "item") and callable(x.item):  # numpy scalars
            return clean(x.item())
        if isinstance(x, Path):
            return str(x)
        return x

    return write_text(json.dumps(clean(obj), indent=2, ensure_ascii=False) + "\n", path)


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_table(df: pd.DataFrame, path: str | Path, inputs: Any = ()) -> Path:
    """Write a table in the format its name says (.csv, .csv.gz, .parquet), atomically, never over one of ``inputs``.

    ``inputs``: the files the step read (paths or comma-separated lists); writing over one is refused before
    anything is written. Any other file name is an error: the format is never guessed.
    """
    fmt = table_format(path)
    refuse_input(path, inputs)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, compression="gzip" if str(path).lower().endswith(".gz") else None)
    return Path(path)


def write_csv(df: pd.DataFrame, path: str | Path, inputs: Any = ()) -> Path:
    """Write a DataFrame as CSV (.csv or .csv.gz) without the index, atomically (see :func:`write_table`)."""
    if table_format(path) != "csv":
        raise ValueError(f"write_csv: {path} is not named .csv or .csv.gz")
    return write_table(df, path, inputs)


def read_csv_table(path: str | Path, text_columns: tuple[str, ...] = ("id",)) -> pd.DataFrame:
    """A CSV the suite wrote, read back as written: the key ``text_columns`` always text, no NA parsing (``NA``,
    ``null``, ``None`` stay text); other columns become numbers when every non-empty cell is one, bools when every
    cell is True/False."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in df.columns.drop(list(text_columns), errors="ignore"):
        values = df[col]
        if len(values) and values.isin(["True", "False"]).all():
            df[col] = values.eq("True")
            continue
        try:
            df[col] = pd.to_numeric(values.replace("", np.nan))
        except ValueError:   # a text column: kept as read
            pass
    return df


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated parameter ("a, b," -> ["a", "b"])."""
    return [t.strip() for t in text.split(",") if t.strip()]


def table_format(path: str | Path, what: str = "output") -> str:
    """'csv' or 'parquet' from a table file's name; a ValueError for any other name (the format is never guessed)."""
    name = Path(path).name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"{what} {path}: the name must end in .csv, .csv.gz or .parquet (the file is written in the "
                     "format its name says)")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode (hard and symbolic links)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input(out: str | Path, inputs: Any, what: str = "output") -> None:
    """ValueError when ``out`` is one of ``inputs`` (paths, or comma-separated lists of paths)."""
    for item in inputs or ():
        for inp in (comma_list(item) if isinstance(item, str) else [item]):
            if inp and same_file(out, inp):
                raise ValueError(f"{what} {out} is an input of this step ({inp}); writing it would destroy that "
                                 "input: choose another file name")
