"""Loss components of SCD-MMPSR's semi-supervised multitask training (``MultiTaskLossWithNaN_v3``).

Every example carries all three tasks' labels, NaN where its corpus does not annotate the task:
``emotion [B, 7]`` (a MOSEI label vector), ``personality [B, 5]`` (FIv2 scores in [0, 1]), ``ah [B]``
(BAH 0/1). An example is labelled for a task when its label is finite (the data step never produces a
partly-NaN vector). Components, each present only when it has examples:

* supervised — ``emo_sup``: cross-entropy to the argmax of the label vector; ``per_sup``: mean absolute
  error of the (sigmoid) scores; ``ah_sup``: cross-entropy;
* pseudo-label, on the examples *unlabelled* for the task — ``emo_ssl`` / ``ah_ssl``: cross-entropy to
  the argmax class where its softmax probability exceeds the confidence threshold (0.60); ``per_ssl``:
  scores clamped to [0, 1], binarised at 0.5, kept where ``p > 0.60`` or ``p < 0.40``, binary
  cross-entropy averaged over the kept elements.

:func:`loss_components` returns them by name (``emo_sup``, ``per_sup``, ``ah_sup``, ``emo_ssl``,
``per_ssl``, ``ah_ssl``); :mod:`affectcache.trainers.mcdm.gradnorm` weights them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from affectcache.extractors.core.config import Config

if TYPE_CHECKING:
    from collections.abc import Mapping

SUPERVISED: tuple[str, ...] = ("emo_sup", "per_sup", "ah_sup")
"""Supervised components, in task order."""
PSEUDO: tuple[str, ...] = ("emo_ssl", "per_ssl", "ah_ssl")
"""Pseudo-label components, in task order."""
COMPONENT_TASK: dict[str, str] = {"emo_sup": "emotion", "per_sup": "personality", "ah_sup": "ah",
                                  "emo_ssl": "emotion", "per_ssl": "personality", "ah_ssl": "ah"}
"""Task of each component."""


@dataclass(frozen=True, kw_only=True)
class PseudoLabelConfig(Config):
    """Confidence rules of the pseudo-label components (the authors' config.toml values)."""

    class_confidence: float = 0.60
    """Emotion and A/H: keep an unlabelled example when its top softmax probability exceeds this."""

    score_confidence: float = 0.60
    """Personality: keep an unlabelled trait score ``p`` when ``p > c`` or ``p < 1 − c`` (binarised at
    0.5)."""

    enabled: bool = True
    """Add the pseudo-label components at all (off = the supervised-only baseline)."""

    def validate(self) -> list[str]:
        """Thresholds must make sense as probabilities."""
        problems = []
        if not 0.0 <= self.class_confidence < 1.0:
            problems.append(f"class_confidence must be in [0, 1), got {self.class_confidence}")
        if not 0.5 <= self.score_confidence < 1.0:
            problems.append(f"score_confidence must be in [0.5, 1), got {self.score_confidence}")
        return problems


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: rows whose label is finite (every element of a vector label)."""
    finite = torch.isfinite(labels)
    return finite if finite.ndim == 1 else finite.all(dim=1)


def class_pseudo_mask(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep [B], pseudo class [B])``: argmax of the softmax, kept where its probability > threshold."""
    confidence, pseudo = torch.softmax(logits.detach(), dim=1).max(dim=1)
    return confidence > threshold, pseudo


def score_pseudo_mask(scores: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep [B, T], pseudo [B, T])``: scores binarised at 0.5, kept where ``p > c`` or ``p < 1 − c``."""
    p = scores.detach().clamp(0.0, 1.0)
    return (p > threshold) | (p < 1.0 - threshold), (p > 0.5).to(scores.dtype)


def _emotion_supervised(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target.argmax(dim=1))


def _ah_supervised(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target.long())


def _personality_supervised(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).abs().mean()


def _class_pseudo_loss(output: torch.Tensor, config: PseudoLabelConfig) -> torch.Tensor | None:
    keep, pseudo = class_pseudo_mask(output, config.class_confidence)
    return F.cross_entropy(output[keep], pseudo[keep]) if keep.any() else None


def _score_pseudo_loss(output: torch.Tensor, config: PseudoLabelConfig) -> torch.Tensor | None:
    keep, pseudo = score_pseudo_mask(output, config.score_confidence)
    if not keep.any():
        return None
    bce = F.binary_cross_entropy(output.clamp(0.0, 1.0), pseudo, reduction="none")
    return (bce * keep).sum() / keep.sum()


@dataclass(frozen=True)
class _TaskLoss:
    supervised_key: str
    pseudo_key: str
    supervised: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    pseudo: Callable[[torch.Tensor, PseudoLabelConfig], torch.Tensor | None]


TASK_LOSSES: dict[str, _TaskLoss] = {
    "emotion": _TaskLoss("emo_sup", "emo_ssl", _emotion_supervised, _class_pseudo_loss),
    "personality": _TaskLoss("per_sup", "per_ssl", _personality_supervised, _score_pseudo_loss),
    "ah": _TaskLoss("ah_sup", "ah_ssl", _ah_supervised, _class_pseudo_loss),
}
"""Per task: component names and loss functions."""


def loss_components(outputs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
                    config: PseudoLabelConfig | None = None) -> dict[str, torch.Tensor]:
    """The supervised and pseudo-label losses that have examples in this batch (see the module docstring).

    Args:
        outputs: task → model output (``emotion``/``ah`` logits, ``personality`` scores); tasks the
            model does not predict are simply absent.
        labels: task → labels with NaN where unlabelled (``emotion [B, C]``, ``personality [B, T]``,
            ``ah [B]``); a task without labels in the mapping counts as unlabelled everywhere.
        config: pseudo-label rules.
    """
    config = config or PseudoLabelConfig()
    comps: dict[str, torch.Tensor] = {}
    for task, output in outputs.items():
        try:
            spec = TASK_LOSSES[task]
        except KeyError:
            raise KeyError(f"unknown task output {task!r}; tasks: {sorted(TASK_LOSSES)}") from None
        target = labels.get(task)
        if target is None:
            labelled = torch.zeros(output.shape[0], dtype=torch.bool, device=output.device)
        else:
            labelled = labelled_rows(target)
            if labelled.any():
                comps[spec.supervised_key] = spec.supervised(output[labelled], target[labelled])
        if config.enabled and not labelled.all():
            pseudo = spec.pseudo(output[~labelled], config)
            if pseudo is not None:
                comps[spec.pseudo_key] = pseudo
    return comps
