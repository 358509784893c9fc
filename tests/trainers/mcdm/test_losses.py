"""Supervised and pseudo-label loss components: masks, NaN labels, hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from affectcache.trainers.mcdm.losses import (
    PseudoLabelConfig,
    class_pseudo_mask,
    loss_components,
    score_pseudo_mask,
)

NAN = float("nan")


def logits_with_top_probability(p: float, n: int, top: int) -> list[float]:
    """Logits whose softmax gives ``p`` to class ``top`` and spreads the rest evenly."""
    rest = (1 - p) / (n - 1)
    return [math.log(p) if i == top else math.log(rest) for i in range(n)]


def test_class_pseudo_mask_keeps_confident_rows_only() -> None:
    logits = torch.tensor([logits_with_top_probability(0.7, 7, 4), logits_with_top_probability(0.59, 7, 2),
                           logits_with_top_probability(0.61, 7, 0)])
    keep, pseudo = class_pseudo_mask(logits, 0.60)
    assert keep.tolist() == [True, False, True]
    assert pseudo.tolist() == [4, 2, 0]


def test_score_pseudo_mask_binarises_and_keeps_the_confident_tails() -> None:
    scores = torch.tensor([[0.65, 0.55, 0.30, 0.45, 1.20]])
    keep, pseudo = score_pseudo_mask(scores, 0.60)
    assert keep.tolist() == [[True, False, True, False, True]]
    assert pseudo.tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0]]


def test_nan_label_rows_are_unlabelled_and_get_pseudo_labels() -> None:
    emotion_label = torch.tensor([[0.0, 0.5, 0, 0, 0.5, 0, 0], [NAN] * 7, [1.0, 0, 0, 0, 0, 0, 0]])
    logits = torch.tensor([[0.1, 0.2, 0.0, 0.0, 0.3, 0.0, 0.0],
                           logits_with_top_probability(0.8, 7, 5),
                           [0.0] * 7], requires_grad=True)
    comps = loss_components({"emotion": logits}, {"emotion": emotion_label})
    # Supervised: rows 0 and 2, targets = argmax of the label vector (the first of a tie: Anger).
    want_sup = F.cross_entropy(logits[[0, 2]], torch.tensor([1, 0]))
    torch.testing.assert_close(comps["emo_sup"], want_sup)
    # Pseudo-label: row 1, confident (0.8 > 0.6), class 5.
    torch.testing.assert_close(comps["emo_ssl"], F.cross_entropy(logits[[1]], torch.tensor([5])))
    # The NaN row gets no gradient from the supervised loss.
    (grad,) = torch.autograd.grad(comps["emo_sup"], logits)
    assert grad[1].eq(0).all()
    assert grad[0].ne(0).any()


def test_personality_components() -> None:
    labels = torch.tensor([[0.2, 0.4, 0.6, 0.8, 1.0], [NAN] * 5])
    scores = torch.tensor([[0.3, 0.4, 0.5, 0.5, 0.5], [0.9, 0.55, 0.1, 0.5, 0.62]])
    comps = loss_components({"personality": scores}, {"personality": labels})
    mae = (0.1 + 0.0 + 0.1 + 0.3 + 0.5) / 5
    assert comps["per_sup"].item() == pytest.approx(mae)
    # Kept: 0.9 -> 1, 0.1 -> 0, 0.62 -> 1; BCE = mean(-log 0.9, -log 0.9, -log 0.62).
    bce = (-math.log(0.9) - math.log(0.9) - math.log(0.62)) / 3
    assert comps["per_ssl"].item() == pytest.approx(bce, rel=1e-6)


def test_ah_labels_are_class_ids_with_nan_for_other_corpora() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [0.0, 3.0]])
    comps = loss_components({"ah": logits}, {"ah": torch.tensor([1.0, NAN, NAN])})
    torch.testing.assert_close(comps["ah_sup"], F.cross_entropy(logits[:1], torch.tensor([1])))
    # Row 1 is unconfident (p = 0.525), row 2 confident (class 1).
    torch.testing.assert_close(comps["ah_ssl"], F.cross_entropy(logits[2:], torch.tensor([1])))


def test_components_are_absent_without_examples() -> None:
    logits = torch.zeros(2, 2)   # p = 0.5: never confident
    assert loss_components({"ah": logits}, {"ah": torch.tensor([NAN, NAN])}) == {}
    assert set(loss_components({"ah": logits}, {"ah": torch.tensor([0.0, 1.0])})) == {"ah_sup"}
    assert set(loss_components({"ah": logits}, {})) == set()
    confident = torch.tensor([[5.0, 0.0]])
    assert set(loss_components({"ah": confident}, {})) == {"ah_ssl"}
    off = PseudoLabelConfig(enabled=False)
    assert loss_components({"ah": confident}, {}, off) == {}


def test_unknown_task_is_refused() -> None:
    with pytest.raises(KeyError, match="valence"):
        loss_components({"valence": torch.zeros(1, 1)}, {})
