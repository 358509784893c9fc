"""Config parsing, fingerprints, and the registry."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import pytest

from affectcache.extractors import (
    ConfigError,
    ExtractorConfig,
    UnknownExtractorError,
    get_extractor_cls,
    register_extractor,
    runtime_only,
    unregister_extractor,
)
from affectcache.extractors.audio.mfcc import MFCCConfig, MFCCExtractor
from affectcache.extractors.core.registry import available_extractors


@dataclass(frozen=True, kw_only=True)
class SampleConfig(ExtractorConfig):
    """A config with every supported field type."""

    size: int = 3
    """An int."""
    rate: float = 1.5
    """A float."""
    name: str = "x"
    """A string."""
    flag: bool = False
    """A bool."""
    layers: tuple[int, ...] = (1, 2)
    """A tuple."""
    mode: Literal["a", "b"] = "a"
    """A literal."""
    limit: float | None = None
    """An optional."""
    pair: tuple[float, int] = (0.5, 1)
    """A fixed-length tuple."""
    workers: int = runtime_only(2)
    """Runtime only."""


def test_from_dict_coerces_lists_and_ints() -> None:
    cfg = SampleConfig.from_dict({"layers": [3, 4], "rate": 2, "limit": 7})
    assert cfg.layers == (3, 4)
    assert cfg.rate == 2.0
    assert isinstance(cfg.rate, float)
    assert cfg.limit == 7.0
    pair = SampleConfig.from_dict({"pair": [1, 2]}).pair
    assert pair == (1.0, 2)
    assert isinstance(pair[0], float)
    with pytest.raises(ConfigError, match=r"pair\[1\]: expected an integer"):
        SampleConfig.from_dict({"pair": [1, 2.5]})


def test_from_dict_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        SampleConfig.from_dict({"size": "3", "flag": 1, "mode": "c", "bogus": 0, "layers": "12"})
    msg = str(info.value)
    for part in ("unknown keys ['bogus']", "size: expected an integer", "flag: expected true/false",
                 "mode: expected one of ['a', 'b']", "layers: expected a list"):
        assert part in msg


def test_runtime_fields_do_not_change_the_fingerprint() -> None:
    base = SampleConfig()
    assert base.replace(workers=8, device="cuda", batch_size=99).fingerprint() == base.fingerprint()
    assert base.replace(size=4).fingerprint() != base.fingerprint()
    assert "workers" not in base.output_fields()


def test_validate_collects_cross_field_problems() -> None:
    with pytest.raises(ConfigError, match=r"n_mfcc must be in \[1, n_mels=10\].*f_max") as info:
        MFCCConfig.from_dict({"n_mfcc": 20, "n_mels": 10, "f_max": 99999.0})
    assert "batch_size" not in str(info.value)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        MFCCConfig(batch_size=0).check()


def test_registry_lookup_lists_choices() -> None:
    assert get_extractor_cls("mfcc") is MFCCExtractor
    assert "mfcc" in available_extractors()
    with pytest.raises(UnknownExtractorError, match=r"no extractor named 'nope'; available: \[.*'mfcc'"):
        get_extractor_cls("nope")


def test_registry_refuses_bad_or_duplicate_names() -> None:
    class Bad(MFCCExtractor):
        name = "Bad Name"

    with pytest.raises(ValueError, match="must match"):
        register_extractor(Bad)

    class Labels(MFCCExtractor):
        name = "labels"

    with pytest.raises(ValueError, match="reserved"):
        register_extractor(Labels)

    class Twin(MFCCExtractor):
        name = "mfcc"

    with pytest.raises(ValueError, match="already registered"):
        register_extractor(Twin)

    class Fine(MFCCExtractor):
        name = "test-fine"

    register_extractor(Fine)
    try:
        assert get_extractor_cls("test-fine") is Fine
    finally:
        unregister_extractor("test-fine")


def test_broken_entry_point_only_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    from affectcache.extractors.core import registry

    class BrokenEP:
        name = "broken"
        value = "nowhere:Nothing"

        def load(self) -> None:
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(registry.EXTRACTORS, "_plugins_loaded", False)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [BrokenEP()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = available_extractors()
    assert "mfcc" in names
    assert any("broken" in str(w.message) for w in caught)
