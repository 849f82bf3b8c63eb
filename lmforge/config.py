"""The run config: one TOML file, one section per stage, loaded into typed dataclasses.

Every problem in a file (unknown keys, wrong types, bad values) is collected and reported
together in one :class:`ConfigError`, each line naming the file and the dotted key, with the fix
where there is an obvious one. Each stage's own dataclass lives beside the stage.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.clean.config import CleanConfig
from lmforge.collect.config import CollectConfig
from lmforge.errors import ConfigError
from lmforge.model.config import ModelConfig
from lmforge.sample.config import SampleConfig
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.train.config import TrainConfig


@dataclass
class RunConfig:
    """A whole run: where it lives and how each stage is configured."""

    name: str = "run"
    """Run name; outputs go to ``<runs_dir>/<name>/``."""
    runs_dir: str = "runs"
    """Folder that holds the run directories (relative to the current directory)."""
    seed: int = 1337
    """Seed for every random choice of the run (splits, init, data order)."""
    hash_inputs: bool = False
    """Fingerprint external input files by their content (SHA-256) rather than their size and mtime."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def validate(self) -> list[str]:
        problems = [] if self.name and "/" not in self.name else ["name: must be a non-empty name without '/'"]
        if self.seed < 0:  # numpy's generators take none
            problems.append(f"seed: must be >= 0 (it is {self.seed})")
        return problems

    @property
    def run_path(self) -> Path:
        return Path(self.runs_dir) / self.name


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Load ``path`` and apply ``--set section.key=value`` overrides; raise ConfigError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found (see configs/ for examples)"])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    for item in overrides:
        apply_override(data, item, problems)
    cfg = from_dict(RunConfig, data, str(path), problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def config_from_dict(data: dict, origin: str = "<dict>") -> RunConfig:
    """Build a RunConfig from plain data (used by tests and by run directories)."""
    problems: list[str] = []
    cfg = from_dict(RunConfig, data, origin, problems)
    if problems:
        raise ConfigError(problems)
    return cfg


def apply_override(data: dict, item: str, problems: list[str]) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        problems.append(f"--set {item!r}: expected section.key=value, e.g. train.max_steps=50")
        return
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as a path or a name: keep it as a string
    *parents, leaf = key.strip().split(".")
    if _field_type(RunConfig, [*parents, leaf]) is str and not isinstance(value, str):
        value = raw  # name=2024, init_from=nan: text where text is expected, not a number
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            problems.append(f"--set {item!r}: {part} is not a section")
            return
    node[leaf] = value


def _field_type(cls: Any, path: list[str]) -> Any:
    """The declared type of the dotted field ``path`` of dataclass ``cls`` (None when there is none)."""
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return None
        cls = typing.get_type_hints(cls).get(part)
    return cls


def from_dict(cls: type, data: Any, origin: str, problems: list[str], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, appending every problem found to ``problems``.

    Each problem reads ``<origin>: <dotted.key>: <what is wrong>``.
    """
    if not isinstance(data, dict):
        problems.append(TypeProblem(f"{origin}: {prefix or '<top>'}: expected a table, got {data!r}"))
        return cls()
    upgrade = getattr(cls, "upgrade_keys", None)
    if upgrade is not None:  # a table's older key names, moved to where they live now
        data = upgrade(dict(data))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs, before = {}, len(problems)
    for key, value in data.items():
        if key not in names:
            problems.append(f"{origin}: {prefix}{key}: unknown key{_suggest(key, names)}")
            continue
        kwargs[key] = _coerce(hints[key], value, origin, f"{prefix}{key}", problems)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    # Value checks assume well-typed fields, so they run only when this table's types were right.
    if validate is not None and not any(isinstance(p, TypeProblem) for p in problems[before:]):
        problems.extend(f"{origin}: {prefix}{msg}" for msg in validate())
    return obj


class TypeProblem(str):
    """A problem that leaves a field of the wrong type (so value checks on that table are skipped)."""


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(names)})"


def _coerce(tp: Any, value: Any, origin: str, key: str, problems: list[str]) -> Any:
    """Check ``value`` against type ``tp``; nested dataclasses, lists and dicts are recursed."""
    kind = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, origin, problems, prefix=f"{key}.")
    if kind in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        if value is None:
            return None
        for option in options:  # the first type that fits: e.g. float | bool, a threshold or false (off)
            trial: list[str] = []
            coerced = _coerce(option, value, origin, key, trial)
            if not trial:
                return coerced
        return _coerce(options[0], value, origin, key, problems)
    if kind is list:
        if not isinstance(value, list):
            problems.append(TypeProblem(f"{origin}: {key}: expected a list, got {value!r}"))
            return []
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, origin, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if kind is dict:
        if not isinstance(value, dict):
            problems.append(TypeProblem(f"{origin}: {key}: expected a table, got {value!r}"))
            return {}
        _, value_tp = typing.get_args(tp)
        return {k: _coerce(value_tp, v, origin, f"{key}.{k}", problems) for k, v in value.items()}
    return _coerce_scalar(tp, value, origin, key, problems)


def _coerce_scalar(tp: Any, value: Any, origin: str, key: str, problems: list[str]) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        # TOML allows nan and inf; no setting of ours means either (an lr of inf trains to NaN)
        problems.append(TypeProblem(f"{origin}: {key}: must be a finite number, got {value!r}"))
        return value
    if tp is Any or (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    problems.append(TypeProblem(f"{origin}: {key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})"))
    return value


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Any) -> str:
    """Write a config back as TOML (the resolved config saved in the run directory)."""
    data = to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)

