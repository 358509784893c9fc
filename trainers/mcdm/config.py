"""Training config of MCDM (architecture + SCD-MMPSR's optimisation, pseudo-labels and GradNorm) and its
registration as ``mcdm`` (MCDM-2, the default) and ``mcdm-1`` in the model registry.

:class:`MCDMTrainConfig` is one flat config: the loop's fields
(:class:`~affectcache.trainers.loop.LoopConfig`) and the architecture's
(:class:`~affectcache.trainers.mcdm.model.MCDMConfig`) plus the pseudo-label and
GradNorm hyperparameters, with the authors' ``config.toml`` values as defaults: Adam (L2 weight decay 1e-5)
at 1e-4, ReduceLROnPlateau (factor 0.5, patience 2, min lr 1e-7) on the dev ``mean_all``, batch 32,
100 epochs, early stop after 15, seed 42. ``input_dims`` is taken from the data when the model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from affectcache.trainers.loop import LoopConfig
from affectcache.trainers.mcdm.gradnorm import GradNormConfig
from affectcache.trainers.mcdm.losses import PseudoLabelConfig
from affectcache.trainers.mcdm.model import MCDM, MCDMConfig
from affectcache.trainers.models import ModelSpec, register_model

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_SOURCES: tuple[str, ...] = ("clip-face", "clap-audio", "text-embedding", "behaviour-hidden")
"""Store modality of each default input (face, audio, text, behaviour)."""


@dataclass(frozen=True, kw_only=True)
class MCDMTrainConfig(LoopConfig, MCDMConfig):
    """MCDM training: loop settings, architecture, pseudo-labels, GradNorm (defaults: the authors')."""

    sources: tuple[str, ...] = DEFAULT_SOURCES
    """Store modality read for each input of ``modalities`` (parallel to it); clip vectors are their
    rows' mean‖std."""

    train_split: str = "train"
    """Manifest split trained on (every corpus)."""

    val_split: str = "val"
    """Split of model selection (``mean_all``), learning-rate plateau and early stopping (the corpus
    adapters call the authors' dev split ``val``)."""

    test_split: str = "test"
    """Split scored with bootstrap CIs at the end (when labelled)."""

    pseudo_labels: bool = True
    """Add the pseudo-label (SSL) components (off: the supervised-only baseline)."""

    class_confidence: float = 0.60
    """Emotion and A/H pseudo-labels: top softmax probability must exceed this."""

    score_confidence: float = 0.60
    """Personality pseudo-labels: keep ``p > c`` or ``p < 1 − c``."""

    gradnorm: bool = True
    """Adapt the loss weights with dual-branch GradNorm (off: fixed initial weights)."""

    alpha_sup: float = 1.25
    """GradNorm restoring-force exponent, supervised wallet."""

    lr_sup: float = 0.01
    """GradNorm weight learning rate, supervised wallet."""

    alpha_ssl: float = 1.0
    """GradNorm restoring-force exponent, pseudo-label wallet."""

    lr_ssl: float = 0.005
    """GradNorm weight learning rate, pseudo-label wallet."""

    lambda_ssl: float = 0.3
    """Initial weight of each pseudo-label component (wallet budget ``3·λ_ssl``)."""

    weight_floor: float = 1e-3
    """Lower bound of a GradNorm weight before rescaling."""

    bootstrap_resamples: int = 1000
    """Bootstrap resamples of the test figures' confidence intervals (0: no intervals)."""

    optimizer: Literal["adamw", "adam"] = "adam"
    """The authors train with ``torch.optim.Adam`` (L2 weight decay)."""

    lr: float = 1e-4
    """Adam learning rate."""

    weight_decay: float = 1e-5
    """Adam weight decay."""

    batch_size: int = 32
    """Clips per optimiser step (drawn from the concatenated corpora)."""

    plateau_factor: float = 0.5
    """ReduceLROnPlateau factor."""

    plateau_patience: int = 2
    """ReduceLROnPlateau patience (epochs)."""

    min_lr: float = 1e-7
    """ReduceLROnPlateau lower bound."""

    def validate(self) -> list[str]:
        problems = super().validate()
        if len(self.sources) != len(self.modalities):
            problems.append(f"sources ({len(self.sources)}) must name one store modality per input "
                            f"({len(self.modalities)})")
        if self.bootstrap_resamples < 0:
            problems.append("bootstrap_resamples must be >= 0")
        problems.extend(self.pseudo_config().validate())
        problems.extend(self.gradnorm_config().validate())
        return problems

    def model_config(self, input_dims: Mapping[str, int] | None = None) -> MCDMConfig:
        """The architecture part, with the data's input widths when given."""
        names = {f.name for f in dataclasses.fields(MCDMConfig)}
        values = {k: v for k, v in self.to_dict().items() if k in names}
        if input_dims is not None:
            missing = [m for m in self.enabled_modalities if m not in input_dims]
            if missing:
                raise ValueError(f"the data lacks inputs {missing}; set sources or disabled_modalities")
            values["input_dims"] = [int(input_dims.get(m, 1)) for m in self.modalities]
        return MCDMConfig.from_dict(values)

    def pseudo_config(self) -> PseudoLabelConfig:
        """The pseudo-label rules."""
        return PseudoLabelConfig(class_confidence=self.class_confidence,
                                 score_confidence=self.score_confidence, enabled=self.pseudo_labels)

    def gradnorm_config(self) -> GradNormConfig:
        """The GradNorm hyperparameters."""
        return GradNormConfig(alpha_sup=self.alpha_sup, lr_sup=self.lr_sup, alpha_ssl=self.alpha_ssl,
                              lr_ssl=self.lr_ssl, lambda_ssl=self.lambda_ssl, floor=self.weight_floor,
                              enabled=self.gradnorm)


@dataclass(frozen=True, kw_only=True)
class MCDM1TrainConfig(MCDMTrainConfig):
    """MCDM-1: vanilla graph attention + multi-head cross-attention (otherwise as ``mcdm``)."""

    graph: Literal["unitary", "attention"] = "attention"
    """Graph layer kind (MCDM-1: ``attention``)."""


def demo_config(**changes: object) -> MCDMTrainConfig:
    """Tiny dims and few epochs for the synthetic demo and tests."""
    base = MCDMTrainConfig(hidden_dim=32, out_dim=32, num_heads=4, dropout=0.0, graph_dropout=0.0, epochs=30,
                           lr=3e-3, early_stop_patience=10, plateau_patience=4, bootstrap_resamples=200)
    return base.replace(**changes)


def demo_config_1(**changes: object) -> MCDM1TrainConfig:
    """MCDM-1 with the demo's dims and epochs."""
    return MCDM1TrainConfig.from_dict({**demo_config().to_dict(), "graph": "attention", **changes})


def build_mcdm(config: MCDMTrainConfig, input_dims: Mapping[str, int]) -> MCDM:
    """MCDM for the data's clip-vector widths (input name → width)."""
    return MCDM(config.model_config(input_dims))


register_model(ModelSpec(name="mcdm", config_type=MCDMTrainConfig, build=build_mcdm,
                         summary="SCD-MMPSR MCDM-2: unitary graph + cross-attention, multitask with SSL",
                         presets={"demo": demo_config}))
register_model(ModelSpec(name="mcdm-1", config_type=MCDM1TrainConfig, build=build_mcdm,
                         summary="SCD-MMPSR MCDM-1: graph attention + cross-attention, multitask with SSL",
                         presets={"demo": demo_config_1}))
