"""Fields every valence/arousal trainer config shares: inputs, labels, splits, evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from affectcache.trainers.loop import LoopConfig
from affectcache.trainers.metrics import MOMENTS, Moments


@dataclass(frozen=True, kw_only=True)
class VAConfig(LoopConfig):
    """Inputs, labels, splits and evaluation of a frame-level valence/arousal trainer."""

    view: ClassVar[str] = ""
    """Class-level: the example view the trainer builds (``frame-windows``, ``segments``,
    ``audio-windows``)."""

    input_modality: str = "grada-face"
    """Store modality the model reads."""

    input_columns: tuple[int, int] | None = None
    """``[start, stop)`` of the stored value columns to use (GRADA: [0, 256] = the embedding of the 266
    values); null = every column."""

    labels: tuple[str, ...] = ("valence", "arousal")
    """Label tracks (``labels/<name>``), in output order."""

    train_split: str = "train"
    """Manifest split trained on."""

    val_split: str = "val"
    """Manifest split for model selection, the plateau scheduler and early stopping."""

    test_split: str = "test"
    """Manifest split also evaluated at the end when it has labels."""

    eval_moments: Moments = "population"
    """CCC moments of the evaluation (``ras`` reproduces Team RAS's reported numbers: covariance 1/N,
    variances 1/(N−1))."""

    bootstrap_resamples: int = 1000
    """Video-level bootstrap resamples of the final confidence intervals."""

    def input_names(self) -> tuple[str, ...]:
        """Store modalities the run depends on (fusion configs read several)."""
        return (self.input_modality,)

    def validate(self) -> list[str]:
        problems = super().validate()
        if not self.labels:
            problems.append("labels must name at least one label track")
        if self.input_columns is not None and not 0 <= self.input_columns[0] < self.input_columns[1]:
            problems.append(f"input_columns must be [start, stop) with 0 <= start < stop, got "
                            f"{list(self.input_columns)}")
        if self.eval_moments not in MOMENTS:
            problems.append(f"eval_moments must be one of {list(MOMENTS)}")
        if self.bootstrap_resamples < 0:
            problems.append("bootstrap_resamples must be >= 0")
        return problems
