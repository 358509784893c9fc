"""What a trained run depends on in the store, and the refusal when that changed.

A run records, per input modality, its config fingerprint and model identity (fingerprints chain every
upstream modality, so rebuilding anything upstream changes them), and per label track its fingerprint and a
hash of the label values used. Training into, evaluating or predicting with a run against a store whose
current identities differ is refused with :class:`~affectcache.store.errors.ProvenanceMismatchError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectcache.store.errors import ProvenanceMismatchError

if TYPE_CHECKING:
    from affectcache.store.zarr_store import FeatureStore


def modality_identity(fs: FeatureStore, name: str) -> dict[str, Any]:
    """The part of a modality's provenance that identifies its numbers: fingerprint and model."""
    prov = fs.provenance(name)
    return {"fingerprint": prov["config_fingerprint"], "model": prov["model"]}


def check_inputs(recorded: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Refuse when the store's inputs differ from those recorded with a run."""
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if changed:
        raise ProvenanceMismatchError(
            f"the store's inputs differ from those {where} was trained on: {changed} changed (rebuilt "
            "modalities, another normaliser/lexicon/encoder, or new labels); train a new run")
