"""The model registry: every trainable model by name, with its config class and its builder.

A model module registers itself on import::

    register_model(ModelSpec(name="ras-face", config_type=RasFaceConfig, build=build_ras_face,
                             summary="Team RAS face temporal Transformer"))

``build(config, input_dims)`` returns a ``torch.nn.Module``; ``input_dims`` maps each input stream to its
feature width (known only once the store's modalities are loaded). ``get_model_spec(name)`` finds a spec
(an unknown name is refused with the choices); :func:`describe_config` renders a config's fields with
their documentation (``affectcache train show-config NAME``).

Built-ins are imported on first lookup (the generic
:class:`~affectcache.extractors.core.registry.Registry`), so importing this package stays cheap (no torch)
and other trainer packages register their models into the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.registry import Registry
from affectcache.trainers.config import TrainerConfig

logger = logging.getLogger(__name__)

__all__ = ["ModelSpec", "available_models", "describe_config", "get_model_spec", "register_model"]

BUILTIN_MODULES: tuple[str, ...] = (
    "affectcache.trainers.models.ras_face",
    "affectcache.trainers.models.ras_behaviour",
    "affectcache.trainers.models.ras_audio",
    "affectcache.trainers.mcdm.config",
    "affectcache.trainers.models.dcmmoe",
    "affectcache.trainers.models.raav",
    "affectcache.trainers.models.kookmin",
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


MODELS: Registry[ModelSpec] = Registry("model", error=ConfigError, builtin_modules=BUILTIN_MODULES)
"""Every trainable model by name; the built-in model modules are imported on first lookup."""


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (a second, different registration of a name is refused)."""
    return MODELS.register(spec.name, spec)


def available_models() -> list[str]:
    """Sorted names of the registered models."""
    return MODELS.names()


def get_model_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; :class:`ConfigError` with the choices (and the closest) otherwise."""
    return MODELS.get(name)


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
