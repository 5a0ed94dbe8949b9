"""Load arena battles from any of the known layouts into one normalised DataFrame.

Normalised columns: ``id``, ``prompt``, ``response_a``, ``response_b`` (lists of str, one per
turn), ``model_a``, ``model_b`` (str, "" when absent), optional ``language`` and, when winners
are present, ``label`` (0 = A wins, 1 = B wins, 2 = tie). Row order and ids are kept as in the file:
integer-like ids become int64 only when that round-trips exactly (``007`` stays the string ``"007"``).
``df.attrs["load_report"].layout`` is ``"wsdm"`` when the labels came from a WSDM ``winner`` column (the
submission is then ``id,winner``), else ``"kaggle"``.

Documented fallbacks (counted in ``df.attrs["load_report"]``, never a dropped row):
- a text cell that is not a JSON list of strings (e.g. WSDM plain text) becomes one turn holding
  the raw text (``not_json``); a JSON scalar becomes one turn with its string form;
- ``null`` turns become "" (``null_turns``); NaN cells become one empty turn (``missing_cells``);
- lone UTF-16 surrogates are replaced by U+FFFD (``lone_surrogates``), so tokenizers never fail;
- prompt/response turn counts that differ are kept as they are (``turn_mismatch``); rendering pads;
- duplicate ids are kept (``duplicate_ids``) and reported;
- a text column is JSON lists of turns or plain text, decided once per file and column (``_json_column``):
  WSDM-style files (a ``winner`` or ``language`` column) and columns where at most half of the non-empty
  cells parse as JSON lists are plain text, one turn per cell, never JSON-parsed (``plain_text_columns``);
- a CSV separated by tabs, semicolons or pipes is read when its header names the required columns
  (``separator``); the encoding comes from the BOM (UTF-8, UTF-16) or is strict UTF-8 (``encoding``);
- a class that never occurs in the labels (no ties, no wins for A or B) is a warning in ``warnings``.

Errors (``ValueError`` naming the file, and the line or row and the column where there is one): a file that
is not what its name says (a CSV named .parquet, a .gz that is not gzip, an Excel workbook, a folder),
non-UTF-8 text without a BOM (cp1252/latin-1: re-encode, or pass ``encoding``), a record whose field count
differs from the header's or a stray quote, duplicate column names, a blank id or one in Excel's scientific
notation, a header-only file (unless ``allow_empty``). ``make_folds`` refuses too few rows/prompts for the
folds and a single class, with the counts.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
WINNER_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
# Probability targets in the normalised frame; the _a/_b names let swap_ab swap them with the texts.
TARGET_COLUMNS = ("target_a", "target_b", "target_tie")
SWAP_ORDER = (1, 0, 2)   # the A/B swap as a permutation of (A, B, tie): the one place it is written
LABEL_NAMES = ("A", "B", "tie")
# Control characters (tabs, newlines, NUL) written raw inside a JSON string are kept, not a parse failure.
_JSON = json.JSONDecoder(strict=False)


@dataclass
class LoadReport:
    """Counts of every fallback applied while loading one file."""

    path: str
    rows: int = 0
    not_json: int = 0
    null_turns: int = 0
    missing_cells: int = 0
    lone_surrogates: int = 0
    empty_responses: int = 0
    turn_mismatch: int = 0
    duplicate_ids: int = 0
    layout: str = "kaggle"                 # "wsdm" when labels come from a ``winner`` column
    examples: dict[str, list[int]] = field(default_factory=dict)
    encoding: str = ""                     # how the file was decoded (utf-8, utf-8-sig, utf-16); "" for parquet
    separator: str = ","                   # CSV separator found in the header (tab/semicolon/pipe accepted)
    plain_text_columns: list[str] = field(default_factory=list)   # text columns read as one plain turn per cell
    label_counts: list[int] = field(default_factory=list)         # rows per label (A, B, tie)
    warnings: list[str] = field(default_factory=list)             # questionable data (e.g. no ties at all)
    files: list[str] = field(default_factory=list)                # every file this report covers (several: merged)

    def add(self, kind: str, row: int, n: int = 1) -> None:
        """Count ``n`` occurrences of ``kind`` and remember the first few row numbers."""
        setattr(self, kind, getattr(self, kind) + n)
        rows = self.examples.setdefault(kind, [])
        if len(rows) < 5:
            rows.append(row)

    def summary(self) -> str:
        """One line listing the non-zero counts."""
        keys = ["not_json", "null_turns", "missing_cells", "lone_surrogates", "empty_responses",
                "turn_mismatch", "duplicate_ids"]
        parts = [f"{k}={getattr(self, k)}" for k in keys if getattr(self, k)]
        parts += self.warnings
        return f"{self.path}: {self.rows} rows" + (" (" + ", ".join(parts) + ")" if parts else "")


def _clean_surrogates(text: str) -> tuple[str, bool]:
    """Replace lone UTF-16 surrogates by U+FFFD; returns the text and whether any was found."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed, True


def parse_turns(cell: object, report: LoadReport | None = None, row: int = -1, as_json: bool = True) -> list[str]:
    """Parse one JSON-encoded list of turns into a list of str, applying the documented fallbacks.

    ``as_json=False`` (a plain-text column): a text cell is one turn holding the text, never parsed.
    """
    report = report or LoadReport(path="<cell>")
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        report.add("missing_cells", row)
        return [""]
    if isinstance(cell, (list, tuple, np.ndarray)):
        value: object = list(cell)
    elif not as_json:
        value = [str(cell)]
    else:
        text = str(cell)
        try:
            value = _JSON.decode(text)
        except (json.JSONDecodeError, RecursionError):
            report.add("not_json", row)
            value = [text]
    if not isinstance(value, list):
        report.add("not_json", row)
        value = [text if isinstance(value, str) else str(cell)]
    turns: list[str] = []
    for turn in value:
        if turn is None:
            report.add("null_turns", row)
            turn = ""
        elif not isinstance(turn, str):
            turn = json.dumps(turn, ensure_ascii=False) if isinstance(turn, (list, dict)) else str(turn)
        turn, had_surrogate = _clean_surrogates(turn)
        if had_surrogate:
            report.add("lone_surrogates", row)
        turns.append(turn)
    return turns


def _sniff(head: bytes) -> str:
    """What a file's first bytes say it is (for error messages): parquet, gzip, zip/xlsx, UTF-16 text, text."""
    if head.startswith(b"PAR1"):
        return "a parquet file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip file (an Excel .xlsx workbook is one)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if not head.strip():
        return "an empty file"
    if head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith((b"{", b"[")):
        return "JSON text"
    return "text (CSV?)"


def _decode(data: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    """(text, encoding used): a BOM decides (UTF-8, UTF-16), else strict UTF-8; anything else is a named error."""
    if encoding:
        return data.decode(encoding), encoding
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: starts with a {enc} byte-order mark but is not valid {enc} "
                                 f"(byte {err.start}): {err.reason}") from None
    head = data[:4096]
    if head and head.count(b"\x00") > len(head) // 4:
        raise ValueError(f"{path}: looks like UTF-16 text without a byte-order mark (many NUL bytes); "
                         "save it as UTF-8 (e.g. `iconv -f UTF-16LE -t UTF-8`)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte {data[err.start:err.start + 1]!r} at "
                         f"offset {err.start}); the file is probably cp1252/latin-1 (Excel). Re-save it as "
                         "'CSV UTF-8' or convert it: `iconv -f cp1252 -t utf-8 in.csv > out.csv`, or pass "
                         "load_arena(path, encoding='cp1252') if you know the encoding") from None


SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _read_csv_text(text: str, path: Path) -> pd.DataFrame:
    """Parse CSV text with the csv module (strict quoting), checking every record's field count.

    The separator is the one that splits the header into the required columns (comma first; tab,
    semicolon and pipe accepted, noted in ``attrs``). Blank lines are not records. Empty fields
    become NaN as in ``pd.read_csv``. ``attrs["lines"]`` holds the file line each row starts on.
    """
    csv.field_size_limit(2**31 - 1)
    first = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    sep = ","
    for cand in SEPARATORS:
        names = [c.strip().strip('"').lstrip("\ufeff") for c in first.split(cand)]
        if {"id", *TEXT_COLUMNS} <= set(names):
            sep = cand
            break
    others = [n for c, n in SEPARATORS.items() if c != "," and c in first]
    if sep == "," and "," not in first and others:
        raise ValueError(f"{path}: line 1: the header is not comma-separated (it has {others[0]}s) and does not "
                         f"name the columns {['id', *TEXT_COLUMNS]}; found {first[:200]!r}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    records, lines = [], []
    start = 1
    try:
        for rec in reader:
            if rec:
                records.append(rec)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise ValueError(f"{path}: line {start}: {err} (expected {SEPARATORS[sep]}-separated fields, text "
                         'fields in double quotes with inner quotes doubled ""; a stray quote?)') from None
    if not records:
        raise ValueError(f"{path}: the file is empty (no header line)")
    header = [h.strip().lstrip("\ufeff") for h in records[0]]
    for rec, line in zip(records[1:], lines[1:]):
        if len(rec) != len(header):
            raise ValueError(f"{path}: line {line}: expected {len(header)} fields (the header's columns), found "
                             f"{len(rec)}; a text with an unquoted separator, a line break outside quotes or a "
                             f"stray quote? (separator {SEPARATORS[sep]})")
    df = pd.DataFrame(records[1:], columns=header, dtype=object) if len(records) > 1 else \
        pd.DataFrame(columns=header, dtype=object)
    df = df.mask(df == "", np.nan)
    df.attrs["lines"] = np.asarray(lines[1:], dtype=np.int64)   # an array: pandas deep-copies attrs often
    df.attrs["separator"] = sep
    return df


def _read_table(path: Path, encoding: str | None = None) -> pd.DataFrame:
    """Read csv / csv.gz / tsv / parquet / jsonl with every CSV column as text; bad files get named errors.

    The file's content decides, not only its name: a ``.parquet`` must start with ``PAR1`` and a ``.gz``
    must be gzip, else the error says what the file really is. Encodings: see :func:`_decode`.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a data file; pass the train/test file inside it")
    name = path.name.lower()
    with open(path, "rb") as f:
        head = f.read(8)
    if name.endswith(".parquet") or head.startswith(b"PAR1"):
        if not head.startswith(b"PAR1"):
            raise ValueError(f"{path}: named .parquet but it is {_sniff(head)}; rename it to what it is")
        if not name.endswith(".parquet"):
            raise ValueError(f"{path}: this is a parquet file; name it *.parquet")
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as err:   # pyarrow's errors derive from these
            raise ValueError(f"{path}: not a readable parquet file (truncated or damaged?): {err}") from None
    else:
        if name.endswith(".gz") != head.startswith(b"\x1f\x8b"):
            what = "named .gz but it is " + _sniff(head) if name.endswith(".gz") else "gzip-compressed"
            raise ValueError(f"{path}: {what}; rename it to match its content (.csv or .csv.gz)")
        if head.startswith(b"PK\x03\x04"):
            raise ValueError(f"{path}: this is {_sniff(head)}, not CSV; save it as 'CSV UTF-8'")
        try:
            data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: damaged gzip file (truncated download?): {err}") from None
        text, enc = _decode(data, path, encoding)
        if name.endswith((".jsonl", ".jsonl.gz")):
            try:
                df = pd.read_json(io.StringIO(text), lines=True, dtype=False)
            except ValueError as err:
                raise ValueError(f"{path}: not valid JSON lines: {err}") from None
        else:
            df = _read_csv_text(text, path)
        df.attrs["encoding"] = enc
    dup = pd.Index(df.columns)[pd.Index(df.columns).duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{path}: duplicate column name(s) {dup}; every column must be named once")
    return df


def _labels(df: pd.DataFrame, path: Path, report: LoadReport) -> np.ndarray | None:
    """(n, 3) target probabilities from the winner columns (one-hot or soft) or a WSDM ``winner`` column.

    Soft winner columns must each be in [0, 1] and sum to 1 within 1e-6 per row; sets ``report.layout``.
    """
    if all(c in df.columns for c in WINNER_COLUMNS):
        probs = np.zeros((len(df), 3), dtype=np.float64)
        for j, col in enumerate(WINNER_COLUMNS):
            values = pd.to_numeric(df[col], errors="coerce")
            bad = values.isna() | (values < 0) | (values > 1)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(f"{path}: column '{col}' row {row} must be 0 or 1 (or a probability in [0, 1]), "
                                 f"got {df[col].iloc[row]!r}")
            probs[:, j] = values.to_numpy(dtype=np.float64)
        bad_sum = np.abs(probs.sum(axis=1) - 1) > 1e-6
        if bad_sum.any():
            row = int(np.flatnonzero(bad_sum)[0])
            raise ValueError(f"{path}: row {row} (id {df['id'].iloc[row]}) winner columns are not one-hot nor "
                             f"probabilities summing to 1 (within 1e-6): {probs[row].tolist()}")
        return probs
    if "winner" in df.columns:
        report.layout = "wsdm"
        mapping = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
        labels = df["winner"].map(lambda w: mapping.get(str(w).strip().lower(), -1)).to_numpy()
        if (labels < 0).any():
            row = int(np.flatnonzero(labels < 0)[0])
            raise ValueError(f"{path}: column 'winner' row {row} must be model_a/model_b/tie, "
                             f"got {df['winner'].iloc[row]!r}")
        return one_hot(labels.astype(np.int64))
    return None


def _ids(ids: pd.Series) -> np.ndarray:
    """int64 when every id is an integer whose text form round-trips, else the ids as text (missing: "")."""
    text = ids.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    if len(text) and text.str.fullmatch(r"-?[1-9][0-9]{0,17}|0").all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def _where(raw: pd.DataFrame, row: int) -> str:
    """'line N' (CSV: the file line the row starts on) or 'row N' (0-based data row) for error messages."""
    lines = raw.attrs.get("lines")
    return f"line {lines[row]}" if lines is not None and len(lines) > row else f"row {row}"


def _as_json_list(cell: object) -> list | None:
    """The cell parsed as a JSON list, or None when it is not one."""
    if isinstance(cell, (list, tuple, np.ndarray)):
        return list(cell)
    text = str(cell).strip()
    if not text.startswith("["):
        return None
    try:
        value = _JSON.decode(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, list) else None


def _json_column(cells: list, wsdm: bool) -> list | None:
    """Whether a text column holds JSON lists of turns, decided once per file and column (never per cell).

    Real lists (parquet) are turns. A WSDM-style file (``winner`` or ``language`` column) holds plain text.
    Otherwise JSON when more than half of the non-empty cells parse as JSON lists (then a cell that does
    not gets the ``not_json`` fallback); else plain text, so a plain text that happens to look like JSON
    (``'["apple", "banana"]'``, ``'[]'``) is kept as written.
    Returns the cells to hand to :func:`parse_turns` (JSON lists already parsed, so each cell is parsed
    once), or None for a plain-text column.
    """
    missing = [c is None or (isinstance(c, float) and np.isnan(c)) for c in cells]
    if any(isinstance(c, (list, tuple, np.ndarray)) for c in cells):
        return cells
    filled = [i for i, (c, m) in enumerate(zip(cells, missing)) if not m and str(c).strip()]
    if wsdm or not filled:
        return None
    parsed = {i: _as_json_list(cells[i]) for i in filled}
    if sum(v is not None for v in parsed.values()) * 2 <= len(filled):
        return None
    return [parsed[i] if parsed.get(i) is not None else c for i, c in enumerate(cells)]


def _check_ids(raw: pd.DataFrame, path: Path) -> None:
    """Blank ids and ids Excel turned into scientific notation (digits lost) are errors naming the line."""
    for i, v in enumerate(raw["id"].tolist()):
        text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        if not text:
            raise ValueError(f"{path}: {_where(raw, i)}: column 'id' is blank; every row needs an id")
        if re.fullmatch(r"-?[0-9](\.[0-9]+)?[eE][+-]?[0-9]+", text):
            raise ValueError(f"{path}: {_where(raw, i)}: column 'id' is {text!r}, an id in scientific notation "
                             "(Excel rewrites long ids so and loses digits); export the ids as text")


def _label_warnings(labels: np.ndarray, report: LoadReport) -> None:
    """Count rows per label; warn when a class never occurs (ties are absent by design in WSDM data)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or not len(labels):
        return
    report.label_counts = np.bincount(labels, minlength=3)[:3].tolist()
    for k, what in ((0, "no wins for A"), (1, "no wins for B"), (2, "no ties")):
        if report.label_counts[k] == 0 and not (k == 2 and report.layout == "wsdm"):
            report.warnings.append(f"{what} in {len(labels)} labelled rows (that class gets no signal)")


def load_arena(path: str | Path, encoding: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Read a Kaggle/HF/WSDM arena file into the normalised layout described in the module docstring.

    ``encoding`` overrides the detection (e.g. "cp1252" for a file you know is so); ``allow_empty``
    accepts a file with a header and no rows (else an error: an empty submission is never intended).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"arena file not found: {path}")
    return arena_from_table(_read_table(path, encoding), path, allow_empty)


def arena_from_table(raw: pd.DataFrame, path: str | Path, allow_empty: bool = False) -> pd.DataFrame:
    """The normalised frame of :func:`load_arena` from a table already read (``path`` names it in messages)."""
    path = Path(path)
    missing = [c for c in ("id", *TEXT_COLUMNS) if c not in raw.columns]
    if missing:
        seps = [n for c, n in SEPARATORS.items() if c != "," and any(c in str(h) for h in raw.columns)]
        hint = f" (the header has {seps[0]}s: is the file {seps[0]}-separated with other column names?)" if seps else ""
        raise ValueError(f"{path}: missing required column(s) {missing}; found {list(raw.columns)}{hint}")
    if not len(raw) and not allow_empty:
        raise ValueError(f"{path}: has a header but no rows; pass allow_empty=True if that is intended")
    attrs = dict(raw.attrs)
    raw = raw.reset_index(drop=True)   # a parquet file may carry any index; rows are matched by position
    raw.attrs = attrs
    _check_ids(raw, path)
    report = LoadReport(path=str(path), rows=len(raw), encoding=attrs.get("encoding", ""),
                        separator=attrs.get("separator", ","), files=[str(path)])
    out = pd.DataFrame({"id": _ids(raw["id"])})
    wsdm = "winner" in raw.columns or "language" in raw.columns
    for col in TEXT_COLUMNS:
        cells = raw[col].tolist()
        json_cells = _json_column(cells, wsdm)
        if json_cells is None:
            report.plain_text_columns.append(col)
        out[col] = pd.Series([parse_turns(c, report, i, json_cells is not None)
                              for i, c in enumerate(json_cells if json_cells is not None else cells)], dtype=object)
    for col in ("model_a", "model_b"):
        out[col] = raw[col].fillna("").astype(str).to_numpy() if col in raw.columns else ""
    if "language" in raw.columns:
        out["language"] = raw["language"].fillna("").astype(str).to_numpy()
    targets = _labels(raw, path, report)
    if targets is not None:
        add_targets(out, targets)
        _label_warnings(out["label"].to_numpy(), report)
    for i, (p, a, b) in enumerate(zip(out["prompt"], out["response_a"], out["response_b"])):
        if not (len(p) == len(a) == len(b)):
            report.add("turn_mismatch", i)
        for side in (a, b):
            if not any(t.strip() for t in side):
                report.add("empty_responses", i)
    dup = out["id"].duplicated(keep=False).to_numpy()
    if dup.any():
        for i in np.flatnonzero(dup):
            report.add("duplicate_ids", int(i))
    out.attrs["load_report"] = report
    if report.summary() != f"{path}: {report.rows} rows":
        log.warning("load_arena fallbacks: %s", report.summary())
    return out


def content_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows' ids, texts and labels, in order: equal only for the same content, not just the same ids."""
    import hashlib

    # Soft targets join the hash only when present, so one-hot frames keep their fingerprints.
    cols = [c for c in ("id", *TEXT_COLUMNS, "label", *(TARGET_COLUMNS if is_soft(df) else ())) if c in df.columns]
    h = hashlib.sha256(json.dumps(cols).encode())
    for row in df[cols].itertuples(index=False):
        h.update(json.dumps([v if isinstance(v, (list, str)) else str(v) for v in row], ensure_ascii=False,
                            default=str).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def swap_ab(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with response A and B (texts, models, labels, any ``*_a``/``*_b`` column) swapped."""
    out = df.copy()
    for col in df.columns:
        if col.endswith("_a") and col[:-2] + "_b" in df.columns:
            twin = col[:-2] + "_b"
            out[col], out[twin] = df[twin].to_numpy(), df[col].to_numpy()
    if "label" in df.columns:
        out["label"] = swap_labels(df["label"].to_numpy())
    return out


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels with A (0) and B (1) exchanged; tie (2) stays."""
    return np.asarray(SWAP_ORDER)[np.asarray(labels, dtype=np.int64)]


def swap_probs(probs: np.ndarray) -> np.ndarray:
    """Swap the A and B entries of probabilities / targets: (n, 3), (n, 2) or a single (3,) vector."""
    probs = np.asarray(probs)
    order = list(SWAP_ORDER) if probs.shape[-1] == 3 else [1, 0]
    return probs[..., order]


def prob_frame(ids: object, probs: np.ndarray, **extra: object) -> pd.DataFrame:
    """``id`` (+ extra columns, in the order given) + the three winner probability columns."""
    out = pd.DataFrame({"id": np.asarray(ids)})
    for k, v in extra.items():
        out[k] = v
    for j, col in enumerate(WINNER_COLUMNS):
        out[col] = probs[:, j]
    return out


def rows_by_id(df: pd.DataFrame, ids: object) -> pd.DataFrame:
    """The rows of ``df`` whose ids (compared as text) are ``ids``, in that order (KeyError if one is missing)."""
    keyed = df.assign(_key=df["id"].astype(str)).set_index("_key")
    return keyed.loc[pd.Index(ids).astype(str)].reset_index(drop=True)


def prompt_groups(df: pd.DataFrame) -> np.ndarray:
    """Group key per row: the whole prompt text, so battles on the same prompt share a fold."""
    return pd.factorize(df["prompt"].map(lambda turns: "\x1f".join(turns)))[0]


def make_folds(df: pd.DataFrame, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """Fold number per row from StratifiedGroupKFold on the label, grouped by prompt; deterministic by seed."""
    from sklearn.model_selection import StratifiedGroupKFold

    if "label" not in df.columns:
        raise ValueError("make_folds needs a 'label' column (a train file with winner columns)")
    check_trainable(df, n_splits)
    folds = np.full(len(df), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, valid_idx) in enumerate(splitter.split(np.zeros(len(df)), df["label"], prompt_groups(df))):
        folds[valid_idx] = k
    return folds


def check_trainable(df: pd.DataFrame, n_splits: int) -> None:
    """Error (with the counts) when the rows cannot make ``n_splits`` folds or hold a single class."""
    where = df.attrs.get("load_report").path if df.attrs.get("load_report") else "train data"
    labels = np.asarray(df["label"])
    hard = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    counts = np.bincount(labels, minlength=3).tolist() if hard and len(labels) else []
    if hard and len(labels) and sum(c > 0 for c in counts) < 2:
        raise ValueError(f"{where}: every one of the {len(df)} rows has the same label (counts A/B/tie {counts}); "
                         "a model needs at least two classes")
    n_groups = len(np.unique(prompt_groups(df))) if len(df) else 0
    if n_groups < n_splits:
        raise ValueError(f"{where}: {len(df)} rows with {n_groups} distinct prompts cannot make {n_splits} folds "
                         f"(folds are grouped by prompt); use more rows or n_folds <= {max(n_groups, 1)}")


def one_hot(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """One-hot float matrix from integer labels."""
    return np.eye(n_classes)[np.asarray(labels, dtype=np.int64)]


def add_targets(df: pd.DataFrame, targets: np.ndarray) -> pd.DataFrame:
    """Set ``label`` (argmax; the first class on an exact tie) and the ``target_*`` probability columns in place."""
    targets = np.asarray(targets, dtype=np.float64)
    df["label"] = targets.argmax(axis=1).astype(np.int64)
    for col, values in zip(TARGET_COLUMNS, targets.T):
        df[col] = values
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    """(n, 3) probability targets: the ``target_*`` columns, else one-hot ``label``."""
    if all(c in df.columns for c in TARGET_COLUMNS):
        return df[list(TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return one_hot(df["label"].to_numpy())


def soft_rows(targets: np.ndarray) -> np.ndarray:
    """Per row of (n, 3) targets: True where they are not one-hot (pseudo-labels, teacher outputs)."""
    t = np.asarray(targets, dtype=np.float64)
    return ((t != 0) & (t != 1)).any(axis=1)


def is_soft(df: pd.DataFrame) -> bool:
    """True when some row's targets are not one-hot (pseudo-labels, teacher files)."""
    if not all(c in df.columns for c in TARGET_COLUMNS) or not len(df):
        return False
    return bool(soft_rows(df[list(TARGET_COLUMNS)].to_numpy()).any())


def pair_keys(df: pd.DataFrame) -> np.ndarray:
    """Content hash per row of (prompt, {response_a, response_b}): equal for a battle and its A/B-swapped copy."""
    import hashlib

    def key(p: list[str], a: list[str], b: list[str]) -> str:
        sides = sorted(json.dumps(x, ensure_ascii=False) for x in (a, b))
        text = json.dumps([p, *sides], ensure_ascii=False)
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    return np.array([key(p, a, b) for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"])], dtype=object)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (kagglelib.checks.same_file: resolved path or inode)."""
    from .checks import same_file as same

    return same(a, b)


def split_paths(paths: str | Path | list) -> list[str]:
    """A list of train files from a list or a comma-separated string ("a.csv,b.csv")."""
    if isinstance(paths, (list, tuple)):
        return [str(p) for p in paths]
    return [t.strip() for t in str(paths).split(",") if t.strip()]


def load_training(paths: str | Path | list) -> pd.DataFrame:
    """One labelled frame from one or several train files, de-duplicated across files (documented drop).

    A single file is exactly :func:`load_arena`. With several files, a row of a later file whose
    :func:`pair_keys` hash (A/B-swap aware) already appeared in an earlier file is dropped and counted;
    duplicates inside one file are kept (as with one file) and counted. ``source`` holds the file index;
    ``df.attrs["train_report"]`` has rows per file, duplicates dropped and ids. Ids must be unique across files.
    """
    files = split_paths(paths)
    if not files:
        raise ValueError("train_path is empty")
    for i, f in enumerate(files):
        twin = next((g for g in files[:i] if Path(f).exists() and same_file(f, g)), None)
        if twin is not None:
            raise ValueError(f"train_path: {f} is listed twice (also as {twin}); list each train file once")
    frames = [load_arena(f) for f in files]
    for f, df in zip(files, frames):
        if "label" not in df.columns:
            raise ValueError(f"{f}: training needs winner columns (winner_model_a/b/tie or winner)")
    layouts = {f: df.attrs["load_report"].layout for f, df in zip(files, frames)}
    if len(set(layouts.values())) > 1:   # the layout decides the submission format: never by file order
        raise ValueError(f"train files' label layouts differ: {layouts} (kaggle: A/B/tie winner columns, wsdm: an "
                         "A/B-only 'winner' column, submitted as id,winner); train on one competition's files, or "
                         "convert one file to the other's columns first")
    if len(frames) == 1:
        out = frames[0]
        out.attrs["train_report"] = {"files": [{"path": files[0], "rows": len(out), "kept": len(out),
                                                "duplicates_dropped": 0}], "rows": len(out), "duplicates_dropped": 0,
                                     "ids_as_text": False}
        return out
    seen: set[str] = set()
    kept, report = [], []
    for i, (f, df) in enumerate(zip(files, frames)):
        keys = pair_keys(df)
        new = np.array([k not in seen for k in keys], dtype=bool)
        seen.update(keys.tolist())
        part = df[new].assign(source=i)
        within = int(pd.Series(keys[new]).duplicated().sum())
        report.append({"path": f, "rows": len(df), "kept": int(new.sum()), "duplicates_dropped": int((~new).sum()),
                       "duplicates_within_file_kept": within, "soft_rows": _soft_rows(part)})
        if (~new).any():
            log.warning("%s: %d rows already in an earlier train file (A/B swap included) were dropped",
                        f, int((~new).sum()))
        kept.append(part)
    for col in TARGET_COLUMNS:   # files without soft targets: one-hot ones, so the columns are complete
        for part in kept:
            if col not in part.columns:
                part[col] = one_hot(part["label"].to_numpy())[:, TARGET_COLUMNS.index(col)]
    ids_as_text = len({str(p["id"].dtype) for p in kept}) > 1
    if ids_as_text:   # int ids in one file, text in another: all as text, so ids compare one way (announced)
        log.warning("train files mix integer and text ids (%s): every id is used as text",
                    {f: str(df["id"].dtype) for f, df in zip(files, frames)})
        for p in kept:
            p["id"] = p["id"].astype(str).astype(object)
    out = pd.concat(kept, ignore_index=True)
    clash = out["id"].astype(str).duplicated(keep=False) & (out.groupby(out["id"].astype(str))["source"]
                                                            .transform("nunique") > 1)
    if clash.any():
        row = int(np.flatnonzero(clash.to_numpy())[0])
        raise ValueError(f"id {out['id'].iloc[row]!r} occurs in several train files "
                         f"({sorted(set(out.loc[clash.to_numpy(), 'source'].map(lambda k: files[k])))}); "
                         "give one file's ids a prefix")
    out.attrs["load_report"] = merge_reports([df.attrs["load_report"] for df in frames])
    out.attrs["train_report"] = {"files": report, "rows": len(out), "ids_as_text": ids_as_text,
                                 "duplicates_dropped": int(sum(r["duplicates_dropped"] for r in report))}
    return out


def merge_reports(reports: list[LoadReport]) -> LoadReport:
    """One report over several files: counts summed, each file's warnings kept with its name (one layout)."""
    counts = ("rows", "not_json", "null_turns", "missing_cells", "lone_surrogates", "empty_responses",
              "turn_mismatch", "duplicate_ids")
    out = LoadReport(path=",".join(r.path for r in reports), layout=reports[0].layout,
                     files=[f for r in reports for f in (r.files or [r.path])])
    for k in counts:
        setattr(out, k, sum(getattr(r, k) for r in reports))
    out.warnings = [f"{Path(r.path).name}: {w}" for r in reports for w in r.warnings]
    out.plain_text_columns = sorted({c for r in reports for c in r.plain_text_columns})
    if all(r.label_counts for r in reports):
        out.label_counts = np.sum([r.label_counts for r in reports], axis=0).tolist()
    return out


def _soft_rows(df: pd.DataFrame) -> int:
    """Rows whose targets are not one-hot."""
    if not all(c in df.columns for c in TARGET_COLUMNS):
        return 0
    return int(soft_rows(df[list(TARGET_COLUMNS)].to_numpy()).sum())


def leakage_report(train: pd.DataFrame, folds: np.ndarray | None = None, test: pd.DataFrame | None = None) -> dict:
    """How many training rows share their prompt with the test file, and with another fold (should be 0)."""
    prompts = train["prompt"].map(lambda t: "\x1f".join(t))
    out: dict = {}
    if test is not None:
        test_prompts = set(test["prompt"].map(lambda t: "\x1f".join(t)))
        in_test = prompts.isin(test_prompts).to_numpy()
        out["train_rows_prompt_in_test"] = int(in_test.sum())
        if "source" in train.columns:
            by_file = pd.Series(in_test).groupby(train["source"].to_numpy()).sum()
            out["train_rows_prompt_in_test_by_file"] = {int(k): int(v) for k, v in by_file.items()}
    if folds is not None:
        n_folds_per_prompt = pd.Series(folds).groupby(prompts.to_numpy()).nunique()
        shared = prompts.map(n_folds_per_prompt).to_numpy() > 1
        out["train_rows_prompt_in_other_fold"] = int(shared.sum())
    return out
