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

from .frame import TEXT_COLUMNS, WINNER_COLUMNS, add_targets, one_hot


log = logging.getLogger(__name__)
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
    raw = _read_table(path, encoding)
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
                        separator=attrs.get("separator", ","))
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
