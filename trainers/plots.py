"""PNG figures of a VA run (the ``plots`` extra: matplotlib, headless Agg backend, imported here only).

* :func:`plot_traces`: target and estimate over time, one panel per label, for a few videos (Team RAS's
  figure in seed 000), the videos with the most labelled frames first.
* :func:`plot_ccc_per_video`: CCC per video and label, sorted, as bars.
* :func:`plot_confusion`: a confusion matrix (e.g. MCDM's MELD zero-shot).
* :func:`plot_contributions`: one video's target vs estimate above a modality × time heatmap of
  per-frame contributions (fusion runs; seed 000's figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")  # headless: run folders are written on servers without a display

import matplotlib.pyplot as plt
import numpy as np

from affectcache.trainers import metrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from affectcache.trainers.va_tasks import FramePredictions


def plot_traces(pred: FramePredictions, path: Path, *, n_videos: int = 4) -> None:
    """Target vs estimate over time for the ``n_videos`` videos with the most labelled frames."""
    clock = pred.clock
    counts = np.bincount(clock.row_video[clock.target_mask], minlength=len(clock))
    chosen = [int(i) for i in np.argsort(-counts, kind="stable")[:n_videos] if counts[i] > 0]
    n_labels = len(clock.labels)
    fig, axes = plt.subplots(max(len(chosen), 1), n_labels, figsize=(5 * n_labels, 2.2 * max(len(chosen), 1)),
                             squeeze=False)
    for row, i in enumerate(chosen):
        rows = slice(int(clock.offsets[i]), int(clock.offsets[i + 1]))
        t = clock.time_s[rows]
        valid = clock.target_mask[rows]
        for k, label in enumerate(clock.labels):
            ax = axes[row][k]
            ax.plot(t, np.where(valid, clock.targets[rows, k], np.nan), color="black", lw=1, label="target")
            ax.plot(t, pred.preds[rows, k], color="tab:red", lw=1, label="estimate")
            score = metrics.ccc(pred.preds[rows, k], clock.targets[rows, k], valid)
            ax.set_title(f"{clock.video_ids[i]} {label} (CCC {score:.2f})", fontsize=8)
            ax.set_ylim(-1.05, 1.05)
            ax.set_xlabel("s", fontsize=7)
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ccc_per_video(pred: FramePredictions, path: Path, *,
                       moments: metrics.Moments = "population") -> None:
    """CCC of every video and label, sorted by the mean over labels."""
    clock = pred.clock
    scores = np.stack([metrics.per_group_scores(pred.preds[:, k], clock.targets[:, k], clock.row_video,
                                                clock.target_mask, moments=moments)
                       for k in range(len(clock.labels))], axis=1)
    scores = np.pad(scores, ((0, len(clock) - scores.shape[0]), (0, 0)), constant_values=np.nan)
    order = np.argsort(-np.nan_to_num(scores.mean(axis=1), nan=-2.0), kind="stable")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(clock) + 2), 3))
    width = 0.8 / len(clock.labels)
    x = np.arange(len(clock))
    for k, label in enumerate(clock.labels):
        ax.bar(x + k * width, scores[order, k], width=width, label=label)
    ax.set_xticks(x + 0.4 - width / 2, [clock.video_ids[i] for i in order], rotation=90, fontsize=6)
    ax.set_ylabel("CCC")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path, *, title: str = "") -> None:
    """A confusion matrix (rows: reference, columns: prediction), counts and row-normalised shading."""
    counts = np.asarray(matrix, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.7 * len(classes)))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_contributions(pred: FramePredictions, video: int, maps: Mapping[str, np.ndarray], path: Path, *,
                       title: str = "contribution") -> None:
    """Video ``video``'s target vs estimate (one panel per label) above a heatmap of ``maps`` (name ->
    per-frame value on the clock) over the same time axis."""
    clock = pred.clock
    rows = slice(int(clock.offsets[video]), int(clock.offsets[video + 1]))
    t = clock.time_s[rows]
    valid = clock.target_mask[rows]
    n_labels = len(clock.labels)
    fig, axes = plt.subplots(n_labels + 1, 1, figsize=(8, 1.8 * (n_labels + 1) + 0.2 * len(maps)),
                             sharex=True, squeeze=False)
    for k, label in enumerate(clock.labels):
        ax = axes[k][0]
        ax.plot(t, np.where(valid, clock.targets[rows, k], np.nan), color="black", lw=1, label="target")
        ax.plot(t, pred.preds[rows, k], color="tab:red", lw=1, label="estimate")
        score = metrics.ccc(pred.preds[rows, k], clock.targets[rows, k], valid)
        ax.set_title(f"{clock.video_ids[video]} {label} (CCC {score:.2f})", fontsize=8)
        ax.set_ylim(-1.05, 1.05)
    axes[0][0].legend(fontsize=7, loc="upper right")
    heat = axes[n_labels][0]
    names = list(maps)
    grid = np.stack([np.asarray(maps[m])[rows] for m in names]) if names else np.zeros((1, t.size))
    extent = (float(t[0]), float(t[-1]) if t.size > 1 else float(t[0]) + 1.0, len(names) - 0.5, -0.5)
    image = heat.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", extent=extent)
    heat.set_yticks(range(len(names)), names, fontsize=7)
    heat.set_xlabel("s", fontsize=7)
    heat.set_title(title, fontsize=8)
    fig.colorbar(image, ax=heat, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
