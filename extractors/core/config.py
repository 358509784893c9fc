"""Extractor configuration: frozen keyword-only dataclasses with strict parsing and a fingerprint.

Every extractor has one config class deriving from :class:`ExtractorConfig`. Fields that cannot change
the numbers written to the store (device, batch size, worker counts) are declared with
:func:`runtime_only`; every other field takes part in :meth:`ExtractorConfig.fingerprint`, so a changed
setting can never silently mix with data written under the old one.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args, get_origin

from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.provenance import stable_hash

T = TypeVar("T")

_RUNTIME_KEY = "affectcache_runtime_only"


def runtime_only(default: T) -> T:
    """Declare a config field that must not influence outputs (excluded from the fingerprint)."""
    return field(default=default, metadata={_RUNTIME_KEY: True})


def is_runtime_only(f: dataclasses.Field[Any]) -> bool:
    """Whether a dataclass field was declared with :func:`runtime_only`."""
    return bool(f.metadata.get(_RUNTIME_KEY, False))



@dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every config in affectcache (extractors, trainers, models): a frozen keyword-only
    dataclass with a docstring under each field, strict parsing, validation and a fingerprint over the
    fields that change results (fields declared with :func:`runtime_only` are left out)."""

    # ---- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return {f.name: _to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def output_fields(self) -> dict[str, Any]:
        """Only the fields that affect outputs: what the fingerprint covers."""
        return {
            f.name: _to_jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not is_runtime_only(f)
        }

    def fingerprint(self) -> str:
        """sha256 over the output-affecting fields and the config class name."""
        return stable_hash({"config_type": type(self).__name__, "fields": self.output_fields()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build a config from plain data; unknown keys and wrong types are refused with all reasons.

        Lists are accepted where the field is a tuple (YAML and JSON have no tuples); ints are accepted
        where a float is expected.
        """
        config = parse_dataclass(cls, data)
        config.check()
        return config

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, parsed and validated like :meth:`from_dict`."""
        return self.from_dict({**self.to_dict(), **changes})

    # ---- validation -------------------------------------------------------------------------------
    def validate(self) -> list[str]:
        """Every cross-field problem of this config (empty when valid). Subclasses extend the list."""
        return []

    def check(self) -> None:
        """Raise :class:`ConfigError` listing every problem :meth:`validate` finds."""
        problems = self.validate()
        if problems:
            raise ConfigError(f"{type(self).__name__}: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class ExtractorConfig(Config):
    """Fields shared by every extractor config. Subclasses add their own, each with a docstring."""

    device: str = runtime_only("cpu")
    """Torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``). Never changes the stored numbers
    beyond float tolerance, so it is not part of the fingerprint."""

    batch_size: int = runtime_only(16)
    """Rows (frames, windows, crops) per model forward; items from several videos share a batch."""

    uses_gpu: ClassVar[bool] = False
    """Class-level: whether the extractor benefits from a GPU (then Dask tasks request ``GPU=1``
    when the config's device is a CUDA device)."""

    def validate(self) -> list[str]:
        """Every cross-field problem of this config (empty when valid). Subclasses extend the list."""
        problems = super().validate()
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.device:
            problems.append("device must be a non-empty string such as 'cpu' or 'cuda'")
        return problems

    def check_device(self) -> None:
        """Raise :class:`ConfigError` when ``device`` cannot be used on this machine (no CUDA build, no
        GPU visible, an index past the GPU count), naming the remedies; a no-op for ``cpu``."""
        if not self.device.startswith(("cuda", "mps")):
            return
        import torch  # only for GPU devices: cpu configs never pay the import

        if self.device.startswith("mps"):
            if not torch.backends.mps.is_available():
                raise ConfigError(f"device={self.device!r}: MPS is not available on this machine; "
                                  "use --set device=cpu")
            return
        if not torch.cuda.is_available():
            why = "torch here was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"device={self.device!r}: {why} (torch {torch.__version__}); use "
                              "--set device=cpu, or run on a GPU node (check CUDA_VISIBLE_DEVICES)")
        _, _, index = self.device.partition(":")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"device={self.device!r}: this machine has {torch.cuda.device_count()} "
                              f"visible GPU(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")


D = TypeVar("D")


def parse_dataclass(cls: type[D], data: Mapping[str, Any]) -> D:
    """Build dataclass ``cls`` from plain data, strictly: unknown keys and wrong types are refused with
    every reason in one :class:`ConfigError`.

    Used by every config of the project (extractors, trainers). Lists are accepted where a field is a
    tuple (YAML and JSON have no tuples); ints are accepted where a float is expected.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping of field values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    problems: list[str] = []
    if unknown:
        problems.append(f"unknown keys {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            continue
        try:
            kwargs[key] = _coerce(value, hints[key], key)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(f"{cls.__name__}: " + "; ".join(problems))
    return cls(**kwargs)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a (simple) type hint, converting lists to tuples and ints to floats."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected None, got {value!r}")
    if origin is Literal:
        if value in get_args(hint):
            return value
        raise ConfigError(f"{key}: expected one of {list(get_args(hint))}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if hint is Any:
        return value
    raise ConfigError(f"{key}: unsupported config field type {hint}")


def field_docs(cls: type[Any]) -> dict[str, str]:
    """The docstring written under each field of a config dataclass (and its dataclass bases), by name.

    Read from the source with ``ast``, so the documentation lives in one place: the dataclass.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # source not available (frozen app, REPL)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in itertools.pairwise(body):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


V = TypeVar("V")


def choose_backend(backends: Mapping[str, V], name: str, what: str) -> V:
    """The entry ``name`` of a backend table; :class:`ConfigError` listing the choices otherwise."""
    try:
        return backends[name]
    except KeyError:
        raise ConfigError(f"no {what} backend {name!r}; available: {sorted(backends)}") from None
