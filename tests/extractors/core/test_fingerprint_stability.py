"""Stored data stays valid across refactors: the default config fingerprint of every built-in extractor is
pinned here. A fingerprint that changes makes every store built before the change look stale (and refuses
to extend it), so a change here must be deliberate: bump the extractor's version and say so in the
changelog instead of editing a constant to make this pass."""

from __future__ import annotations

import pytest

from affectcache.extractors import available_extractors, get_extractor_cls

# Computed with the code before the layout move (commit 1387f69); identical after it.
PINNED: dict[str, str] = {
    "ast": "f21d7e51d94a74e4c775c7060206c4790d89f9ff254fb262963a06a162f73704",
    "behaviour-caption": "6817d0a14b6913c02e611690abb27f2500e3dfa89dce964d16d5709a697e5e91",
    "behaviour-hidden": "ad52ac4492463a7ce2b2a0364616ba775da7db4ce612a76f4040a6657738513e",
    "blendshapes": "1bce11c32ad1ee9537e950d2a1b00445e3983ddf6f494450d0b53c20e35e4b09",
    "clap-audio": "00086e347129f66787c5d77473d19c3cd7937ad98233ab0a8a5983e7b507c960",
    "clip-face": "ae055be836a60e65b4b1900571ae5ee3307260a21a865a4c977ed14b7de262d2",
    "clip-scene": "a45ab0cfd69a7675bfedfd5161aaa9f5288339f5d0f9ee16a2f4def4e6668228",
    "face": "c2b779af06ab3c44693e9014a7d87274715472f0182177db19c8ed8ed6f38962",
    "grada-face": "45e9b104bf7daddd6400a899fd4cde3cf5487a186c72e96601b6b8a75948d1f6",
    "lasca-embedding": "d9d656f01e58943e81e670d88c9b9eb9cda83546dd8cc7720b99624fd791ab83",
    "lasca-text": "39db19f1dedc72b35017de57b7ae70ccd9c548cc0eb0182e2317e8d1122d8b4f",
    "lasca-windows": "7013d0ed5762312982f8d9cf8ccfb3c9181aefcd1463d6d3dbcc448cfc48fc4c",
    "mfcc": "a47622c11cbf96088e22f1cdc579761a68686c8f25630ce66c939ae9b1a68bb5",
    "text-embedding": "43bd7b7678cd57b72cf592d2ff4af6aee298c97ad1232dd78d4eb8dd60e76f15",
    "transcript-whisper": "2032014335c9715dfccad02df1c70f0bd9b064ec0be78b2917bb5a84404aaf8f",
    "wav2vec2-emotion": "06f13c6520de76779e3215a176670954256e2e331d6dae098cc7d87963ca8715",
    "wavlm": "788e75523248f269d4d0d2703a394d0cb501ebf7c258b23cd33824ada31f9b85",
    "wavlm-frames": "2d6b376d6c5220d3c2032eb0b3ab444383070923abf085eefa6c0478693df1fc",
}


def test_every_builtin_extractor_is_pinned() -> None:
    builtins = {name for name in available_extractors()
                if get_extractor_cls(name).__module__.startswith("affectcache.")}
    assert builtins == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_config_fingerprint_is_unchanged(name: str) -> None:
    assert get_extractor_cls(name).config_type().fingerprint() == PINNED[name]
