"""The LaScA preference learner: an MLP on window-representation differences (§3.3, §5.1).

Inputs per window come from the store: ``x_t`` (``lasca-windows``), ``s_t`` (``lasca-embedding``) and the
variants ``features`` = x, ``text`` = s, ``fused`` = [x | s]. Each pair's input is
``z[second] - z[first]``. The classifier is scikit-learn's ``MLPClassifier`` with the paper's knobs: two
hidden layers (min(d/2, 250), min(d/4, 125)), Adam, at most 25 iterations, L2 alpha 1, tol 1e-3,
shuffling, early stopping after 3 non-improving iterations.

Protocol (subject-independent): ``folds`` = K folds over subjects (the manifest's ``subject``, else the
video id), every variant trained and tested on the same folds; ``seeds`` = train on the ``train`` split,
test on the ``test`` split, once per seed. Accuracy per fold/seed; variants are compared with the
Wilcoxon signed-rank test over folds.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.config import Config
from affectcache.store.errors import FeatureNotFoundError, StoreError
from affectcache.store.usable import usable_ids
from affectcache.store.zarr_store import label_modality
from affectcache.trainers.pairs import preference_pairs, window_labels

if TYPE_CHECKING:

    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

Variant = Literal["features", "text", "fused"]
VARIANTS: tuple[Variant, ...] = ("features", "text", "fused")
MIN_PAIRS_FOR_EARLY_STOPPING = 500
"""Below this many training pairs, early stopping uses the training loss (the hold-out would be tiny)."""
FEATURES_MODALITY = "lasca-windows"
TEXT_MODALITY = "lasca-embedding"


@dataclass(frozen=True, kw_only=True)
class PreferenceConfig(Config):
    """Settings of a preference-learning experiment."""

    label: str = "arousal"
    """Label track (``labels/<label>`` in the store)."""

    threshold: float = 0.2
    """Relative-change margin tau for keeping a pair (LaScA: 0.10 or 0.20)."""

    epsilon: float = 1e-3
    """Floor of ``max(|a(t)|, eps)`` in the relative change."""

    variants: tuple[Variant, ...] = VARIANTS
    """Input variants to train: ``features`` (x), ``text`` (s), ``fused`` ([x | s])."""

    protocol: Literal["folds", "seeds"] = "folds"
    """``folds``: K subject folds over all items; ``seeds``: train split vs test split, N seeds."""

    n_folds: int = 15
    """K of the subject folds (capped at the number of subjects)."""

    n_seeds: int = 15
    """N of the seeds protocol."""

    seed: int = 0
    """Base random seed (fold assignment, MLP initialisation and shuffling)."""

    max_iter: int = 25
    """Adam epochs at most."""

    alpha: float = 1.0
    """L2 penalty."""

    tol: float = 1e-3
    """Improvement below which an iteration counts as non-improving."""

    n_iter_no_change: int = 3
    """Stop after this many non-improving iterations."""

    early_stopping: bool = True
    """Judge improvement on a held-out 10 % of the training pairs (else on the training loss)."""

    learning_rate_init: float = 1e-3
    """Adam step size (scikit-learn's default; the paper does not give one)."""

    batch_size: int | None = None
    """Pairs per Adam step; None = scikit-learn's min(200, n). With few pairs, 25 epochs of one step
    each learn nothing: use a small batch on small corpora (the demo uses 16)."""

    def validate(self) -> list[str]:
        """Every problem of this config."""
        problems = super().validate()
        if self.threshold < 0 or self.epsilon <= 0:
            problems.append("need threshold >= 0 and epsilon > 0")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            problems.append(f"variants must be a non-empty subset of {list(VARIANTS)}, "
                            f"got {list(self.variants)}")
        if self.n_folds < 2 or self.n_seeds < 1 or self.max_iter < 1:
            problems.append("need n_folds >= 2, n_seeds >= 1, max_iter >= 1")
        return problems


@dataclass(kw_only=True)
class PairSet:
    """Every preference pair of a set of videos, with inputs for each variant."""

    inputs: dict[str, npt.NDArray[np.float32]]
    """Variant -> (n_pairs, d) differences ``z[second] - z[first]``."""
    label: npt.NDArray[np.int64]
    """(n_pairs,) 1 = affect rises."""
    video: npt.NDArray[np.str_]
    """(n_pairs,) video id of each pair."""
    group: npt.NDArray[np.str_]
    """(n_pairs,) subject (or video id) of each pair, for subject-independent folds."""
    n_windows: int = 0
    """Windows seen (with a label)."""
    per_video: dict[str, int] = field(default_factory=dict)
    """Pairs per video."""


def load_pairs(fs: FeatureStore, manifest: Manifest, config: PreferenceConfig,
               video_ids: list[str] | None = None) -> PairSet:
    """Build the pairs of the manifest's items (or ``video_ids``) from the store.

    Raises:
        FeatureNotFoundError: A needed modality or label entry is missing (and not recorded as failed).
    """
    track = label_modality(config.label)
    needed = [FEATURES_MODALITY, TEXT_MODALITY, track]
    for name in needed:
        if not fs.has_modality(name):
            raise FeatureNotFoundError(f"{name!r} is not in {fs.url}; build the LaScA chain first "
                                       "(`affectcache lasca build ...`)" if name != track else
                                       f"label track {config.label!r} is not in {fs.url}")
    # Items that failed or do not apply upstream are left out with one warning (given ids are used as is).
    ids = (video_ids if video_ids is not None
           else usable_ids(fs, needed, manifest.ids(), step="preference pairs"))
    inputs: dict[str, list[np.ndarray]] = {v: [] for v in config.variants}
    labels, videos, groups = [], [], []
    per_video: dict[str, int] = {}
    n_windows = 0
    for vid in ids:
        x = fs.read(FEATURES_MODALITY, vid)
        s = fs.read(TEXT_MODALITY, vid)
        if x.start_s is None or x.end_s is None or s.start_s is None or not np.array_equal(x.start_s,
                                                                                             s.start_s):
            raise StoreError(f"{vid}: {FEATURES_MODALITY} and {TEXT_MODALITY} windows differ; "
                             "rebuild the chain")
        affect, has_label = window_labels(fs.read(track, vid), x.start_s, x.end_s)
        valid = has_label & (x.mask if x.mask is not None else True)
        n_windows += int(valid.sum())
        pairs = preference_pairs(affect, valid, threshold=config.threshold, epsilon=config.epsilon)
        per_video[vid] = len(pairs)
        if not len(pairs):
            continue
        z = {"features": x.values.astype(np.float32), "text": s.values.astype(np.float32)}
        z["fused"] = np.concatenate([z["features"], z["text"]], axis=1)
        for variant in config.variants:
            inputs[variant].append(z[variant][pairs.second] - z[variant][pairs.first])
        labels.append(pairs.label)
        videos.append(np.full(len(pairs), vid))
        subject = manifest.get(vid).subject if vid in manifest else None
        groups.append(np.full(len(pairs), subject or vid))
    if not labels:
        raise StoreError(f"no preference pair passes threshold {config.threshold} in {len(ids)} videos")
    return PairSet(inputs={k: np.concatenate(v) for k, v in inputs.items()}, label=np.concatenate(labels),
                   video=np.concatenate(videos).astype(str), group=np.concatenate(groups).astype(str),
                   n_windows=n_windows, per_video=per_video)


def hidden_sizes(d: int) -> tuple[int, int]:
    """The paper's hidden layer sizes for input width ``d``: (min(d/2, 250), min(d/4, 125))."""
    return max(1, min(d // 2, 250)), max(1, min(d // 4, 125))


def make_model(d: int, config: PreferenceConfig, seed: int) -> Any:
    """An untrained ``MLPClassifier`` with the paper's settings for ``d`` input features."""
    from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped,unused-ignore]

    return MLPClassifier(hidden_layer_sizes=hidden_sizes(d), solver="adam", max_iter=config.max_iter,
                         batch_size="auto" if config.batch_size is None else config.batch_size,
                         alpha=config.alpha, tol=config.tol, shuffle=True,
                         early_stopping=config.early_stopping, n_iter_no_change=config.n_iter_no_change,
                         learning_rate_init=config.learning_rate_init,
                         random_state=seed)


def fit_model(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], config: PreferenceConfig,
              seed: int) -> Any:
    """Train one model (the 25-iteration cap is the method, so its convergence warning is silenced).

    With fewer than :data:`MIN_PAIRS_FOR_EARLY_STOPPING` pairs, early stopping watches the training loss
    instead of a 10 % hold-out.
    """
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped,unused-ignore]

    model = make_model(x.shape[1], config, seed)
    if config.early_stopping and len(y) < MIN_PAIRS_FOR_EARLY_STOPPING:
        # The 10 % hold-out would be a handful of pairs whose score is noise (it stops training after
        # a few epochs); judge improvement on the training loss instead.
        logger.debug("only %d training pairs: early stopping on the training loss", len(y))
        model.set_params(early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


@dataclass(frozen=True, kw_only=True)
class Split:
    """One train/test split of the protocol."""

    name: str
    """``fold0``..., or ``seed0``..."""
    train: npt.NDArray[np.bool_]
    """Training pairs."""
    test: npt.NDArray[np.bool_]
    """Test pairs."""
    seed: int
    """Model seed."""


def protocol_splits(pairs: PairSet, manifest: Manifest, config: PreferenceConfig) -> list[Split]:
    """The subject-independent splits of the configured protocol."""
    if config.protocol == "seeds":
        split_of = {it.video_id: it.split for it in manifest}
        train = np.asarray([split_of.get(v) == "train" for v in pairs.video])
        test = np.asarray([split_of.get(v) == "test" for v in pairs.video])
        if not train.any() or not test.any():
            raise StoreError("the seeds protocol needs pairs from both the train and the test split")
        return [Split(name=f"seed{k}", train=train, test=test, seed=config.seed + k)
                for k in range(config.n_seeds)]
    subjects = np.unique(pairs.group)
    k = min(config.n_folds, len(subjects))
    if k < 2:
        raise StoreError("subject folds need pairs from at least 2 subjects (or videos)")
    rng = np.random.default_rng(config.seed)
    fold_of = {s: i % k for i, s in enumerate(rng.permutation(subjects))}
    folds = np.asarray([fold_of[g] for g in pairs.group])
    return [Split(name=f"fold{i}", train=folds != i, test=folds == i, seed=config.seed + i) for i in range(k)]


@dataclass(frozen=True, kw_only=True)
class VariantResult:
    """Accuracies of one variant over the protocol's splits."""

    variant: str
    """Input variant."""
    accuracies: tuple[float, ...]
    """Pairwise accuracy per split, in split order."""
    n_test: tuple[int, ...]
    """Test pairs per split."""

    @property
    def mean(self) -> float:
        """Mean accuracy."""
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Standard deviation of the accuracies."""
        return float(np.std(self.accuracies))


def run_protocol(pairs: PairSet, manifest: Manifest, config: PreferenceConfig) -> list[VariantResult]:
    """Train and test every variant on the same splits."""
    splits = protocol_splits(pairs, manifest, config)
    results = []
    for variant in config.variants:
        x = pairs.inputs[variant]
        accs, sizes = [], []
        for split in splits:
            if not split.test.any() or len(np.unique(pairs.label[split.train])) < 2:
                continue  # a fold whose subjects have no usable pair
            model = fit_model(x[split.train], pairs.label[split.train], config, split.seed)
            accs.append(float((model.predict(x[split.test]) == pairs.label[split.test]).mean()))
            sizes.append(int(split.test.sum()))
        results.append(VariantResult(variant=variant, accuracies=tuple(accs), n_test=tuple(sizes)))
        logger.info("%s: accuracy %.3f +- %.3f over %d splits", variant, results[-1].mean, results[-1].std,
                    len(accs))
    return results


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Wilcoxon signed-rank test between two variants' per-split accuracies."""

    a: str
    """First variant."""
    b: str
    """Second variant."""
    mean_difference: float
    """mean(a) - mean(b)."""
    statistic: float | None
    """Wilcoxon statistic (None when every difference is zero)."""
    p_value: float
    """Two-sided p-value (1.0 when every difference is zero)."""

    @property
    def significant(self) -> bool:
        """p < 0.05."""
        return self.p_value < 0.05


def compare_variants(results: list[VariantResult]) -> list[Comparison]:
    """Wilcoxon signed-rank test for every pair of variants (paired over splits)."""
    from scipy.stats import wilcoxon

    out = []
    for ra, rb in itertools.combinations(results, 2):
        a, b = np.asarray(ra.accuracies), np.asarray(rb.accuracies)
        if len(a) != len(b):
            raise ValueError(f"{ra.variant} and {rb.variant} were evaluated on different splits")
        if not np.any(a - b):
            out.append(Comparison(a=ra.variant, b=rb.variant, mean_difference=0.0, statistic=None,
                                  p_value=1.0))
            continue
        res = wilcoxon(a, b)
        out.append(Comparison(a=ra.variant, b=rb.variant, mean_difference=float(a.mean() - b.mean()),
                              statistic=float(res.statistic), p_value=float(res.pvalue)))
    return out
