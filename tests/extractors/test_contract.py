"""Contract suite: every registered extractor, checked the same way (zarr's StoreTests pattern)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import tests.helpers  # noqa: F401  (registers the test-only extractors)
from affectcache.extractors import (
    ConfigError,
    ExtractorConfig,
    available_extractors,
    get_extractor_cls,
)
from affectcache.extractors.core.config import field_docs, is_runtime_only
from tests.extractors.conftest import TEST_FACTORIES

if TYPE_CHECKING:
    from pathlib import Path

NAMES = available_extractors()


def test_every_registered_extractor_has_a_test_factory() -> None:
    missing = sorted(set(NAMES) - set(TEST_FACTORIES))
    assert not missing, f"add tiny test factories for {missing} to tests/extractors/conftest.py"


@pytest.fixture(params=NAMES)
def case(request: pytest.FixtureRequest, tmp_path: Path, media_dir: Path) -> dict[str, Any]:
    name = request.param
    if name not in TEST_FACTORIES:
        pytest.fail(f"no test factory for {name}")
    config, items, upstream = TEST_FACTORIES[name](tmp_path, media_dir)
    cls = get_extractor_cls(name)
    ups = [upstream.get(it.video_id, {}) for it in items]
    return {"name": name, "cls": cls, "config": config, "items": items, "upstream": ups}


def test_config_round_trips(case: dict[str, Any]) -> None:
    config: ExtractorConfig = case["config"]
    data = json.loads(json.dumps(config.to_dict()))
    again = type(config).from_dict(data)
    assert again == config
    assert again.fingerprint() == config.fingerprint()


def test_unknown_config_keys_are_rejected(case: dict[str, Any]) -> None:
    config_type = case["cls"].config_type
    with pytest.raises(ConfigError, match=r"unknown keys.*no_such_field"):
        config_type.from_dict({"no_such_field": 1})


def test_every_config_field_is_documented(case: dict[str, Any]) -> None:
    config_type = case["cls"].config_type
    docs = field_docs(config_type)
    undocumented = [f.name for f in dataclasses.fields(config_type) if not docs.get(f.name)]
    assert not undocumented, f"{config_type.__name__}: fields without a docstring: {undocumented}"


def test_fingerprint_ignores_runtime_fields_only(case: dict[str, Any]) -> None:
    config: ExtractorConfig = case["config"]
    fields = dataclasses.fields(config)
    runtime = {f.name for f in fields if is_runtime_only(f)}
    assert {"device", "batch_size"} <= runtime
    changed = config.replace(device="cuda:3", batch_size=config.batch_size + 1)
    assert changed.fingerprint() == config.fingerprint()
    # Changing any output field that still validates must change the fingerprint.
    tried = 0
    for f in fields:
        if f.name in runtime:
            continue
        value = getattr(config, f.name)
        if isinstance(value, bool):
            candidate: Any = not value
        elif isinstance(value, int):
            candidate = value + 1
        elif isinstance(value, float):
            candidate = value * 0.5 if value else 0.5
        else:
            continue
        try:
            other = config.replace(**{f.name: candidate})
        except ConfigError:
            continue
        tried += 1
        assert other.fingerprint() != config.fingerprint(), f.name
    assert tried or not [f for f in fields if f.name not in runtime]


def test_construction_is_cheap_and_pickles_without_weights(case: dict[str, Any]) -> None:
    ext = case["cls"](case["config"])
    assert ext._model is None  # nothing loaded by the constructor
    ext.extract(case["items"][0], case["upstream"][0])
    assert ext._model is not None or ext.model is None
    clone = pickle.loads(pickle.dumps(ext))
    assert clone._model is None
    assert clone.config == ext.config
    assert len(pickle.dumps(ext)) < 20_000


def test_extract_batch_equals_single_items(case: dict[str, Any]) -> None:
    ext = case["cls"](case["config"])
    items, ups = case["items"], case["upstream"]
    batched = ext.extract_batch(items, ups)
    single = [ext.extract(it, up) for it, up in zip(items, ups, strict=True)]
    assert [f.video_id for f in batched] == [it.video_id for it in items]
    for b, s in zip(batched, single, strict=True):
        assert b.allclose(s, rtol=1e-4, atol=1e-4), b.video_id
    # Grouping must not matter either: reversed order gives the same arrays per item.
    reverse = ext.extract_batch(items[::-1], ups[::-1])[::-1]
    for b, r in zip(batched, reverse, strict=True):
        assert b.allclose(r, rtol=1e-4, atol=1e-4), b.video_id


def test_rows_are_keyed_and_times_increase(case: dict[str, Any]) -> None:
    ext = case["cls"](case["config"])
    for feats in ext.extract_batch(case["items"], case["upstream"]):
        assert feats.kind == ext.modality_kind
        assert feats.n_rows > 0
        if feats.kind == "frame":
            assert feats.time_s is not None
            assert np.all(np.diff(feats.time_s) > 0)
        else:
            assert feats.start_s is not None
            assert np.all(np.diff(feats.start_s) >= 0)
        if feats.values.dtype.kind == "f":
            assert np.isfinite(feats.values).all()


def test_media_needs_declare_what_extraction_decodes(case: dict[str, Any]) -> None:
    """A task decodes each item once for the rates and samplings its extractors declare; an undeclared
    one would silently cost a second decode."""
    from affectcache.extractors.media.decode_memo import shared_decoding

    ext = case["cls"](case["config"])
    needs = ext.media_needs()
    with shared_decoding(needs) as memo:
        ext.extract_batch(case["items"], case["upstream"])
    assert memo.requested.audio_rates <= needs.audio_rates
    if not ext.upstream_modalities():  # frames picked by an upstream's stored sampling are its to declare
        assert memo.requested.frame_samplings <= needs.frame_samplings
    assert memo.stats.decodes <= len(case["items"])  # one pass per item at most


def test_provenance_is_complete_json(case: dict[str, Any]) -> None:
    ext = case["cls"](case["config"])
    ups = {name: "f" * 64 for name in ext.upstream_modalities()}
    prov = json.loads(json.dumps(ext.provenance(ups)))
    for key in ("extractor", "version", "modality_kind", "config", "config_fingerprint", "model",
                "libraries", "created", "upstream"):
        assert key in prov, key
    assert prov["extractor"] == case["name"]
    assert {"python", "numpy", "zarr"} <= set(prov["libraries"])
    assert set(prov["model"]) >= {"id", "revision", "sha256"}
