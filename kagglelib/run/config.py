"""Run configs: the shared notebook parameters, profile defaults, and saving a config next to its run.

A notebook's ``parameters`` cell holds flat literals; the next cell calls
``cfg = from_params(SomeConfig, globals())``, which picks the config's parameter names out of the
notebook namespace and builds it with :func:`make_config` in three layers: the dataclass defaults
(the ``cpu-sample`` values), under the profile's table (``PROFILE_DEFAULTS``), under the user's values.
A parameter left ``None`` in the cell is not set: the layers below apply. Other names are ignored, except
a lower_snake_case literal close to a parameter name: that is a misspelt parameter and an error
("did you mean ...?").

A config may hold parts (a training config's ``model: ModelSpec`` and ``text: TextConfig``): their fields
are parameters under their own flat names (``backbone``, ``max_length``), and ``config.json`` stores the
config flat (:func:`flatten`), so the saved names are the parameter names.
"""
from __future__ import annotations

import dataclasses
import difflib
import platform
import re
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..core.checks import check_run_name
from ..core.io import comma_list, write_json
from ..core.paths import (KAGGLE_INPUT, REPO_ROOT, competition_files, default_output_dir, detect_env,
                          resolve_data_path, sample_paths)
from . import layout
from .layout import CONFIG


PROFILES = ("cpu-sample", "kaggle-t4", "colab-a100")
# Keys a saved config.json carries beside the dataclass's fields: what save_config adds, then what callers pass it
# (02/05: notebook; training: smoke, world_size). Readers strip them to rebuild the config.
METADATA_KEYS = ("config_class", "env", "host", "python", "created", "notebook", "smoke", "world_size", "fold_dirs")
T = TypeVar("T", bound="RunConfig")
P = TypeVar("P")


@dataclass
class RunConfig:
    """Parameters every notebook shares (the contract): data, outputs, run name, profile.

    Build a config with :func:`make_config` (or :func:`from_params` in a notebook): the constructor takes the values
    as given and applies no profile table (its defaults are cpu-sample's).
    """

    train_path: str = ""            # "" = the competition train.csv on Kaggle, else the bundled sample
    test_path: str = ""             # "" = the competition test.csv on Kaggle, else the bundled sample
    output_dir: str = ""            # "" = outputs/ (repo), /kaggle/working/outputs, /content/outputs
    run_name: str = "run"           # artifacts go to <output_dir>/runs/<run_name>/
    profile: str = "cpu-sample"     # cpu-sample | kaggle-t4 | colab-a100

    # Per profile (beside cpu-sample, whose values are the dataclass defaults): flat parameter name -> the value that
    # replaces the default under that profile (make_config applies it under the user's values).
    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}
    # True where the train file is optional (05 reads it only to check the runs' provenance): "" stays "".
    TRAIN_OPTIONAL: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        check_run_name(self.run_name)
        if self.train_path or not self.TRAIN_OPTIONAL:
            self.train_path = str(resolve_input(self.train_path, "train"))
        self.test_path = str(resolve_input(self.test_path, "test"))
        self.output_dir = str(Path(self.output_dir).expanduser() if self.output_dir else default_output_dir())

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/runs/<run_name>``, created on first use."""
        return layout.run_dir(self.output_dir, self.run_name)


def resolve_input(path: str | list, split: str) -> Path | str:
    """An explicit path (cwd, then repo root, then data dirs), or the default train/test file for this env.

    Several files (a list, or a comma-separated string from papermill) resolve one by one, joined by commas.
    """

    items = path if isinstance(path, (list, tuple)) else comma_list(path) if "," in str(path) else None
    if items is not None:
        return ",".join(str(resolve_input(p, split)) for p in items)
    if path:
        p = Path(path).expanduser()
        if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
            return REPO_ROOT / p
        return resolve_data_path(p)
    if detect_env() == "kaggle":
        found = competition_files(split)
        if len(found) > 1:   # never guess: another attached dataset's train.csv must not replace the competition's
            raise ValueError(f"{len(found)} candidate {split} files under {KAGGLE_INPUT}: "
                             f"{[str(p) for p in found]}; set the parameter {split}_path to the one to use")
        if found:
            return found[0]
    return sample_paths()[0 if split == "train" else 1]


PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]*")
# difflib similarity from which an unknown name counts as a misspelt field: catches a dropped, doubled or swapped
# letter ("learing_rate", "n_fold", "max_lenght"), not a different word ("demo_resume" vs "resume" is 0.71).
MISSPELLING_CUTOFF = 0.8


def looks_like_parameter(name: str, value: Any) -> bool:
    """A name a parameters cell or papermill could have set: lower_snake_case, holding a plain literal.

    A notebook's globals also hold imports (modules, classes, functions), IPython's own names (``In``, ``_i3``)
    and, on a re-run, the results of later cells (frames, figures, paths); none of those pass.
    """
    return bool(PARAMETER_NAME.fullmatch(name)) and _is_literal(value)


def _is_literal(value: Any) -> bool:
    """str, number, bool, None, or a list/tuple of them: what a parameters cell or ``papermill -p`` writes."""
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def config_parts(cls: type) -> dict[str, type]:
    """The parts of config class ``cls``: field name -> dataclass type (a training config's model and text)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def parameter_names(cls: type) -> dict[str, str]:
    """Every flat parameter name of config class ``cls`` -> the part holding it ("" = a field of ``cls`` itself), in
    field order with each part's fields in its place."""
    parts = config_parts(cls)
    names: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        for name in [g.name for g in dataclasses.fields(parts[f.name])] if f.name in parts else [f.name]:
            if name in names:   # one flat name, two fields: a developer's error, found by any test building cls
                raise TypeError(f"{cls.__name__}: parameter {name!r} is declared twice (in a part and beside it)")
            names[name] = f.name if f.name in parts else ""
    return names


def _unknown(cls: type, name: str, close: str | None) -> str:
    return f"{cls.__name__}: unknown parameter {name!r}" + (f"; did you mean {close!r}?" if close else "")


def _closest(name: str, names: dict[str, str]) -> str | None:
    """The parameter ``name`` looks like a misspelling of, if any."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=MISSPELLING_CUTOFF)
    return close[0] if close else None


def make_config(cls: type[T], **values: Any) -> T:
    """Build ``cls`` from flat parameter values: dataclass defaults <- the profile's table <- ``values``.

    ``values`` use the flat names (``backbone=..., lora_r=..., max_length=...``); a value of None is not set.
    An unknown name is an error (with the parameter meant when it looks misspelt).
    """
    names = parameter_names(cls)
    for name in values:
        if name not in names:
            raise ValueError(_unknown(cls, name, _closest(name, names)))
    given = {k: v for k, v in values.items() if v is not None}
    profile = given.get("profile", cls.profile)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    layered = {**cls.PROFILE_DEFAULTS.get(profile, {}), **given}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    parts = {part: dataclasses.replace(fields[part].default_factory(),
                                       **{k: v for k, v in layered.items() if names[k] == part})
             for part in config_parts(cls)}
    return cls(**{k: v for k, v in layered.items() if not names[k]}, **parts)


def from_params(cls: type[T], namespace: dict[str, Any]) -> T:
    """Build ``cls`` from the names a notebook's parameters cell defined (papermill overrides included).

    Other names are ignored (papermill injects any ``-p`` it is given, a cell may hold notebook-only switches),
    except a parameter-like name (see :func:`looks_like_parameter`) that is close to a parameter: a misspelt
    setting would otherwise be dropped silently, so it is an error naming the parameter meant.
    """
    names = parameter_names(cls)
    for name, value in namespace.items():
        close = _closest(name, names) if name not in names and looks_like_parameter(name, value) else None
        if close:
            raise ValueError(_unknown(cls, name, close))
    return make_config(cls, **{k: v for k, v in namespace.items() if k in names})


def flatten(cfg: Any) -> dict[str, Any]:
    """The config as flat parameter name -> value (its parts' fields under their own names): what config.json holds."""
    parts = config_parts(type(cfg))
    out: dict[str, Any] = {}
    for name, value in dataclasses.asdict(cfg).items():
        out.update(value if name in parts else {name: value})
    return out


def part_of(part_cls: type[P], flat: dict[str, Any]) -> P:
    """One part (a ModelSpec, a TextConfig) of a flat saved config: the values it holds, the defaults for the rest."""
    return part_cls(**{f.name: flat[f.name] for f in dataclasses.fields(part_cls) if f.name in flat})


def save_config(cfg: Any, run_dir: str | Path | None = None, **extra: Any) -> Path:
    """Write ``config.json`` (all fields + notebook kind, host, time) into the run folder."""
    run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir
    data = flatten(cfg)
    unknown = sorted(set(extra) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"save_config: {unknown} are not in config.METADATA_KEYS (readers could not strip them)")
    data.update(config_class=type(cfg).__name__, env=detect_env(), host=platform.node(),
                python=platform.python_version(), created=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    return write_json(data, run_dir / CONFIG)
