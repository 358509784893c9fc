"""MCDM's figures: the neutral rule, mWACC on a hand example, metrics against scikit-learn, bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from affectcache.trainers import metrics
from affectcache.trainers.mcdm.evaluate import emotion_decisions, meld_scores, score, score_with_ci

sk = pytest.importorskip("sklearn.metrics")


def _logits(probs: list[list[float]]) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


def test_neutral_rule_on_hand_probabilities() -> None:
    probs = [
        [0.90, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01],   # p(neutral) >= 6/7: no emotion at all
        [0.50, 0.30, 0.15, 0.05, 0.00 + 1e-6, 0.0 + 1e-6, 0.0 + 1e-6],  # anger and disgust >= 1/7
        [0.10, 0.10, 0.10, 0.10, 0.40, 0.10, 0.10],   # happiness only (0.10 < 1/7)
        [6 / 7 - 0.01, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0],  # neutral just below 6/7: anger counts
    ]
    decided = emotion_decisions(_logits([[max(x, 1e-9) for x in row] for row in probs]))
    np.testing.assert_array_equal(decided, [[0, 0, 0, 0, 0, 0],
                                            [1, 1, 0, 0, 0, 0],
                                            [0, 0, 0, 1, 0, 0],
                                            [1, 0, 0, 0, 0, 0]])


def test_mwacc_on_a_hand_example() -> None:
    # Two classes, 4 clips. Class 0: P=1, N=3, TP=1, TN=2 -> (1*3/1 + 2) / 6 = 5/6.
    # Class 1: P=2, N=2, TP=1, TN=1 -> (1*2/2 + 1) / 4 = 1/2.  Mean = 2/3.
    target = np.array([[1, 1], [0, 1], [0, 0], [0, 0]])
    preds = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    assert metrics.mwacc(preds, target) == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_classification_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 300)
    p = np.where(rng.random(300) < 0.5, t, rng.integers(0, 7, 300))
    assert metrics.f1(p, t, num_classes=7) == pytest.approx(sk.f1_score(t, p, average="macro"), abs=1e-9)
    assert metrics.f1(p, t, average="weighted", num_classes=7) == pytest.approx(
        sk.f1_score(t, p, average="weighted"), abs=1e-9)
    assert metrics.uar(p, t, num_classes=7) == pytest.approx(sk.recall_score(t, p, average="macro"), abs=1e-9)
    pm, tm = rng.integers(0, 2, (200, 6)), rng.integers(0, 2, (200, 6))
    per_class_f1 = [sk.f1_score(tm[:, c], pm[:, c], average="macro") for c in range(6)]
    assert metrics.mmf1(pm, tm) == pytest.approx(np.mean(per_class_f1), abs=1e-9)
    # Weighted accuracy (TP·N/P + TN)/2N is the binary balanced accuracy.
    per_class_bacc = [sk.balanced_accuracy_score(tm[:, c], pm[:, c]) for c in range(6)]
    assert metrics.mwacc(pm, tm) == pytest.approx(np.mean(per_class_bacc), abs=1e-9)


def _fake_outputs(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 7, n)
    labels = {"emotion": np.eye(7, dtype=np.float32)[cls],
              "personality": rng.random((n, 5)).astype(np.float32),
              "ah": rng.integers(0, 2, n).astype(np.float32)}
    labels["emotion"][: n // 3] = np.nan            # a third unlabelled for emotion
    labels["ah"][n // 2:] = np.nan
    outputs = {"emotion": (3 * np.eye(7)[cls] + rng.normal(size=(n, 7))).astype(np.float32),
               "personality": np.clip(labels["personality"] + 0.1 * rng.normal(size=(n, 5)), 0, 1
                                      ).astype(np.float32),
               "ah": rng.normal(size=(n, 2)).astype(np.float32)}
    return outputs, labels


def test_score_uses_only_labelled_rows_and_the_authors_means() -> None:
    outputs, labels = _fake_outputs(90, 1)
    got = score(outputs, labels)
    rows = np.isfinite(labels["ah"])
    want_f1 = sk.f1_score(labels["ah"][rows], outputs["ah"][rows].argmax(1), average="macro")
    assert got["bah_mf1"] == pytest.approx(want_f1, abs=1e-9)
    p, y = outputs["personality"], labels["personality"]
    assert got["fiv2_macc"] == pytest.approx(1 - np.abs(p - y).mean(), abs=1e-6)
    assert got["fiv2_mccc"] == pytest.approx(np.mean([metrics.ccc(p[:, k], y[:, k]) for k in range(5)]),
                                             abs=1e-6)
    assert got["mean_pkl"] == pytest.approx((got["fiv2_macc"] + got["fiv2_ccc_flat"]) / 2)
    assert got["mean_emo"] == pytest.approx((got["mosei_mmf1"] + got["mosei_muar"]) / 2)
    assert got["mean_all"] == pytest.approx((got["mean_emo"] + got["mean_pkl"] + got["mean_ah"]) / 3)
    # A task without any labelled row leaves the mean of the others.
    labels["ah"][:] = np.nan
    partial = score(outputs, labels)
    assert "bah_mf1" not in partial
    assert partial["mean_all"] == pytest.approx((got["mean_emo"] + got["mean_pkl"]) / 2)


def test_bootstrap_intervals_bracket_the_value_and_are_seeded() -> None:
    outputs, labels = _fake_outputs(120, 2)
    a = score_with_ci(outputs, labels, n_resamples=60, seed=3)
    b = score_with_ci(outputs, labels, n_resamples=60, seed=3)
    assert a == b
    for entry in a.values():
        assert entry["low"] <= entry["value"] <= entry["high"]
        assert entry["high"] - entry["low"] > 0
    assert a["fiv2_macc"]["value"] == pytest.approx(score(outputs, labels)["fiv2_macc"])
    single = metrics.bootstrap_ci(lambda idx: 1.0, 1)
    assert math.isnan(single.low)


def test_meld_scores_and_confusion() -> None:
    target = np.array([0, 1, 1, 2, 3, 4, 5, 6, -1])
    predicted = np.array([0, 1, 2, 2, 3, 4, 5, 0, 3])
    out = meld_scores(predicted, target, n_resamples=30, seed=0)
    keep = target >= 0
    assert out["meld_mf1"]["value"] == pytest.approx(sk.f1_score(target[keep], predicted[keep],
                                                                 average="macro"), abs=1e-9)
    assert out["meld_wf1"]["value"] == pytest.approx(sk.f1_score(target[keep], predicted[keep],
                                                                 average="weighted"), abs=1e-9)
    confusion = np.asarray(out["confusion"])
    assert confusion.sum() == keep.sum()
    assert confusion[1, 2] == 1
    assert confusion[6, 0] == 1
