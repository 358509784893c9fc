"""MCDM's multitask :class:`~affectcache.trainers.loop.Task`: concatenated corpora, supervised and
pseudo-label losses weighted by dual-branch GradNorm, dev ``mean_all``.

The loop's ``loss(model, batch)`` is where GradNorm runs: it computes the components, updates both
wallets from their shared-parameter gradient norms (``torch.autograd.grad`` with the graph kept) and
returns ``Σ w_i L_i`` for the loop's ``backward``. The wallets are the task's own training state
(``state_dict``/``load_state_dict``), saved in ``last.pt`` by the loop so a resumed run continues with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from affectcache.trainers.mcdm.evaluate import predict, score
from affectcache.trainers.mcdm.gradnorm import DualGradNorm
from affectcache.trainers.mcdm.losses import loss_components

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import numpy as np

    from affectcache.trainers.mcdm.config import MCDMTrainConfig
    from affectcache.trainers.mcdm.data import ClipBatch, ClipDataset


class MultitaskTask:
    """Training batches from every corpus's train split; selection on each corpus's dev split."""

    score_key = "mean_all"

    def __init__(self, config: MCDMTrainConfig, dataset: ClipDataset) -> None:
        self.config = config
        self.dataset = dataset
        self.train_index = dataset.indices(split=config.train_split)
        self.val_index = dataset.indices(split=config.val_split)
        if not len(self.train_index) or not len(self.val_index):
            raise ValueError(f"need {config.train_split!r} and {config.val_split!r} items in the corpora; "
                             f"got {len(self.train_index)} and {len(self.val_index)} "
                             "(set train_split/val_split)")
        self.gradnorm = DualGradNorm(config.gradnorm_config())
        self.pseudo = config.pseudo_config()
        self.device = torch.device(config.device)

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[ClipBatch]:
        """Shuffled batches of the concatenated train splits (features moved to the device)."""
        for batch in self.dataset.batches(self.train_index, self.config.batch_size, generator=generator):
            yield type(batch)(features={m: t.to(self.device) for m, t in batch.features.items()},
                              labels={k: t.to(self.device) for k, t in batch.labels.items()},
                              index=batch.index)

    def loss(self, model: torch.nn.Module, batch: ClipBatch) -> torch.Tensor:
        """GradNorm-weighted sum of the batch's loss components (updates the weights)."""
        components = loss_components(model(batch.features), batch.labels, self.pseudo)
        return self.gradnorm.combine(components, list(model.shared_parameters()))

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Dev figures of every task, the task means, ``mean_all`` and the current loss weights."""
        outputs = predict(model, self.dataset, self.val_index, device=self.config.device)
        labels = labels_of(self.dataset, self.val_index)
        return {**score(outputs, labels), **{f"w_{k}": v for k, v in self.gradnorm.weights.items()}}

    def state_dict(self) -> dict[str, Any]:
        """GradNorm's wallets (plain data)."""
        return self.gradnorm.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.gradnorm.load_state_dict(state)


def labels_of(dataset: ClipDataset, index: torch.Tensor) -> dict[str, np.ndarray]:
    """Every task's labels of examples ``index`` as numpy (NaN = unlabelled)."""
    return {task: t.index_select(0, index).numpy() for task, t in dataset.labels.items()}
