"""The model registry: every trainable model by name, with its config class and its builder.

A model module registers itself on import::

    register_model(ModelSpec(name="ras-face", config_type=RasFaceConfig, build=build_ras_face,
                             summary="Team RAS face temporal Transformer"))

``build(config, input_dims)`` returns a ``torch.nn.Module``; ``input_dims`` maps each input stream to its
feature width (known only once the store's modalities are loaded). ``get_model_spec(name)`` finds a spec
(an unknown name is refused with the choices); :func:`describe_config` renders a config's fields with
their documentation (``affectcache train show-config NAME``).

Built-ins are imported by :func:`_load_builtins` on first use, so importing this package stays cheap (no
torch) and other trainer packages can register their models into the same table.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.config import TrainerConfig

logger = logging.getLogger(__name__)

__all__ = ["ModelSpec", "available_models", "describe_config", "get_model_spec", "register_model"]

BUILTIN_MODULES: tuple[str, ...] = (
    "affectcache.trainers.models.ras_face",
    "affectcache.trainers.models.ras_behaviour",
    "affectcache.trainers.models.ras_audio",
)
"""Modules whose import registers the built-in models (others add theirs by calling register_model)."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One registered model."""

    name: str
    """Registry name (lowercase, ``[a-z0-9.-]``), e.g. ``ras-face``."""
    config_type: type[TrainerConfig]
    """Its config class; ``config_type()`` is the authors' default."""
    build: Callable[[Any, Mapping[str, int]], Any]
    """``build(config, input_dims) -> torch.nn.Module``; ``input_dims`` maps input streams to widths."""
    summary: str = ""
    """One line for listings."""
    presets: Mapping[str, Callable[[], Any]] | None = None
    """Named alternative configs (e.g. ``demo``) besides the default."""


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to the registry (a second registration of a name is refused unless ``replace``)."""
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", spec.name):
        raise ValueError(f"model name {spec.name!r} must match [a-z0-9][a-z0-9.-]*")
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available_models() -> list[str]:
    """Sorted names of the registered models."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; :class:`ConfigError` listing the choices otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"no model {name!r}; available: {sorted(_REGISTRY)}") from None


def describe_config(config: TrainerConfig) -> str:
    """YAML of a config, each field preceded by its documentation as comments."""
    import yaml

    from affectcache.extractors.core.config import field_docs

    docs = field_docs(type(config))
    lines: list[str] = []
    for key, value in config.to_dict().items():
        lines.extend(f"# {line.strip()}" for line in docs.get(key, "").splitlines())
        lines.append(yaml.safe_dump({key: value}, sort_keys=False).rstrip())
    return "\n".join(lines)
