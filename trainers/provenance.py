"""What a trained run depends on in the store, and the refusal when that changed.

A run records, per input modality, its config fingerprint and model identity (fingerprints chain every
upstream modality, so rebuilding anything upstream changes them), and per label track its fingerprint and a
hash of the label values used. Training into, evaluating or predicting with a run against a store whose
current identities differ is refused with :class:`~affectcache.store.errors.ProvenanceMismatchError`.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

from affectcache.extractors.core.errors import ConfigError
from affectcache.store.errors import ProvenanceMismatchError

if TYPE_CHECKING:
    from pathlib import Path

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


def prepare_run_dir(run_dir: Path, model: str, config: dict[str, Any], inputs: dict[str, Any], *,
                    overwrite: bool) -> None:
    """Make ``run_dir`` ready for a run of ``model`` with ``config`` on ``inputs``.

    A folder holding an earlier run is resumed only when that run had the same model, config and inputs
    (changed inputs are a :class:`ProvenanceMismatchError`, another model/config a :class:`ConfigError`);
    ``overwrite`` deletes it first.
    """
    previous = run_dir / "run.json"
    if previous.exists():
        if overwrite:
            shutil.rmtree(run_dir)
        else:
            old = json.loads(previous.read_text(encoding="utf-8"))
            check_inputs(old["inputs"], inputs, str(run_dir))
            if old.get("model") != model or old.get("config") != config:
                raise ConfigError(f"{run_dir} holds a {old.get('model')} run with another config; use "
                                  "another folder or --overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
