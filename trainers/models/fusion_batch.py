"""What the fusion models take and give: one batch of aligned modality sequences, one output.

Every fusion model (:mod:`~affectcache.trainers.models.dcmmoe`, :mod:`~affectcache.trainers.models.raav`,
:mod:`~affectcache.trainers.models.kookmin`) is called as ``model(batch) -> FusionOutput``. A batch holds,
per modality, a padded ``(B, T_m, D_m)`` float tensor and a ``(B, T_m)`` validity mask (a frame without a
face, a silent audio window, padding), plus the ``(B, T)`` mask of the output frames. Modalities on the
frame clock share ``T``; token modalities (RAAV's four audio chunk tokens, Kookmin's AST windows) have
their own length. The common shape lets one ablation routine mask any modality of any model
(:mod:`~affectcache.trainers.fusion.contributions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(kw_only=True)
class FusionBatch:
    """Padded, aligned inputs of a batch of windows."""

    inputs: dict[str, torch.Tensor]
    """Modality -> ``(B, T_m, D_m)`` float features (invalid rows may hold anything; models zero them)."""

    valid: dict[str, torch.Tensor]
    """Modality -> ``(B, T_m)`` bool: the row is real data (not padding, not a missing face, ...)."""

    mask: torch.Tensor
    """``(B, T)`` bool: output frames that exist (False = padding of a short window)."""

    def without(self, modality: str) -> FusionBatch:
        """The same batch with ``modality`` masked everywhere and its features zeroed (for ablation)."""
        if modality not in self.inputs:
            raise ValueError(f"modality {modality!r} is not in this batch; it has {sorted(self.inputs)}")
        inputs = dict(self.inputs)
        valid = dict(self.valid)
        inputs[modality] = torch.zeros_like(self.inputs[modality])
        valid[modality] = torch.zeros_like(self.valid[modality])
        return FusionBatch(inputs=inputs, valid=valid, mask=self.mask)

    def to(self, device: torch.device | str) -> FusionBatch:
        """A copy on ``device``."""
        return FusionBatch(inputs={k: v.to(device) for k, v in self.inputs.items()},
                           valid={k: v.to(device) for k, v in self.valid.items()}, mask=self.mask.to(device))


@dataclass(kw_only=True)
class FusionOutput:
    """What a fusion model returns for a batch."""

    preds: torch.Tensor
    """``(B, T, 2)`` valence, arousal per output frame."""

    embedding: torch.Tensor
    """``(B, T, H)`` per-frame embedding before the last head layer (what ``predict`` exports)."""

    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    """Modality -> ``(B, T)`` per-frame contribution weight read off the model's own gate (RAAV's
    reliability weights, DCMMOE's expert gate spread over the experts' modalities, the Kookmin gated unit's
    visual/audio share). Sums to 1 over modalities on frames where any input is valid, 0 elsewhere; empty
    for models without a gate (``dcmmoe-released``)."""

    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    """Model-specific tensors: ``expert_gate`` ``(B, T, E)`` (DCMMOE), ``region_logits`` ``(B, T, K)``
    (Kookmin), ``audio_latents`` ``(B, 4, H)`` (RAAV)."""


class FusionModel(Protocol):
    """Anything called on a :class:`FusionBatch` that returns a :class:`FusionOutput`."""

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names the model reads from ``FusionBatch.inputs``."""
        ...

    def __call__(self, batch: FusionBatch) -> FusionOutput:
        """Predict the batch."""
        ...


def require_modalities(batch: FusionBatch, names: tuple[str, ...], dims: Mapping[str, int],
                       model: str) -> None:
    """Raise a one-line error when ``batch`` lacks a modality or has the wrong feature size for one."""
    missing = [m for m in names if m not in batch.inputs or m not in batch.valid]
    if missing:
        raise ValueError(f"{model}: batch lacks modalities {missing} (inputs and valid masks); "
                       f"it has {sorted(batch.inputs)}")
    for m in names:
        got = batch.inputs[m].shape[-1]
        if got != dims[m]:
            raise ValueError(f"{model}: modality {m!r} has {got} features per row, the config expects "
                             f"{dims[m]}; set the config's input dims to match the store")
