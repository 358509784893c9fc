"""The registered models: exact parameter counts at the authors' defaults, shapes, masks, the registry."""

from __future__ import annotations

import pytest
import torch

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.models import (
    ModelSpec,
    available_models,
    describe_config,
    get_model_spec,
    register_model,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "width", "expected"), [
    ("ras-face", 256, 2_112_002),
    ("ras-behaviour", 2560, 3_348_738),
    ("ras-audio", 1024, 131_328 + 529_154),
])
def test_parameter_counts_at_the_authors_defaults(name: str, width: int, expected: int) -> None:
    spec = get_model_spec(name)
    assert _count(spec.build(spec.config_type(), {"input": width})) == expected


def test_ras_audio_pool_and_head_counts() -> None:
    spec = get_model_spec("ras-audio")
    model = spec.build(spec.config_type(), {"input": 1024})
    assert _count(model.pool) == 131_328
    assert _count(model.body) + _count(model.out) == 529_154


def test_face_shapes_embedding_and_padding_does_not_leak() -> None:
    spec = get_model_spec("ras-face")
    config = spec.config_type(hidden=32, n_heads=4, n_layers=2, input_columns=None)
    torch.manual_seed(0)
    model = spec.build(config, {"input": 12}).eval()
    x = torch.randn(2, 30, 12)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    out = model(x, mask)
    emb, pred = model.embed(x, mask)
    assert out.shape == (2, 30, 2)
    assert emb.shape == (2, 30, 32)
    torch.testing.assert_close(pred, out)
    # Keys at padded steps are ignored: changing them leaves the real steps' outputs unchanged.
    x2 = x.clone()
    x2[1, 20:] = 100.0
    torch.testing.assert_close(model(x2, mask)[1, :20], out[1, :20])


def test_behaviour_block_is_causal_and_zeroes_padding() -> None:
    spec = get_model_spec("ras-behaviour")
    config = spec.config_type(d_model=32, n_layers=2, head_hidden=16)
    torch.manual_seed(0)
    model = spec.build(config, {"input": 10}).eval()
    x = torch.randn(1, 12, 10)
    out = model(x, torch.ones(1, 12, dtype=torch.bool))
    x2 = x.clone()
    x2[0, 8:] += 5.0  # the scan and the causal convolution only look back
    torch.testing.assert_close(model(x2, torch.ones(1, 12, dtype=torch.bool))[0, :8], out[0, :8])
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 10:] = False
    hidden = model.backbone(x, mask)
    assert float(hidden[0, 10:].detach().abs().max()) == 0.0


def test_behaviour_scan_uses_ras_discretisation() -> None:
    from affectcache.trainers.models.ras_behaviour import MambaBlock

    torch.manual_seed(0)
    block = MambaBlock(4, d_state=2, kernel_size=3, d_discr=2, dropout=0.0)
    a = torch.randn(1, 3, 4)
    delta = torch.nn.functional.softplus(block.D + block.s_D(a))
    h = torch.zeros(4, 2)
    ys = []
    for t in range(3):
        # Ā = exp(−A)·Δ (RAS), not exp(−A·Δ).
        d = delta[0, t, :, None]
        h = torch.exp(-block.A) * d * h + block.s_B(a)[0, t] * d * a[0, t, :, None]
        ys.append((h * block.s_C(a)[0, t]).sum(-1))
    torch.testing.assert_close(block.scan(a)[0], torch.stack(ys))


def test_audio_chunks_and_empty_chunk_guard() -> None:
    spec = get_model_spec("ras-audio")
    config = spec.config_type(attn_hidden=8, head_hidden=16)
    torch.manual_seed(0)
    model = spec.build(config, {"input": 6}).eval()
    x = torch.randn(3, 200, 6)
    mask = torch.ones(3, 200, dtype=torch.bool)
    mask[2, 90:] = False  # chunks 3 and 4 of the last window are empty
    emb, pred = model.embed(x, mask)
    assert emb.shape == (3, 4, 16)
    assert pred.shape == (3, 4, 2)
    assert torch.isfinite(pred).all()
    # Chunk i pools rows [50 i, 50 (i+1)): changing rows of chunk 2 changes only chunk 2's output.
    x2 = x.clone()
    x2[0, 100:150] += 1.0
    changed = (model(x2, mask)[0] - pred[0]).abs().sum(-1) > 0
    assert changed.tolist() == [False, False, True, False]


def test_registry_refuses_unknown_and_duplicate_names() -> None:
    assert {"ras-face", "ras-behaviour", "ras-audio"} <= set(available_models())
    with pytest.raises(ConfigError, match="available"):
        get_model_spec("no-such-model")
    spec = get_model_spec("ras-face")
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec(name="ras-face", config_type=spec.config_type, build=spec.build))
    with pytest.raises(ValueError, match="must match"):
        register_model(ModelSpec(name="Bad Name", config_type=spec.config_type, build=spec.build))


def test_show_config_documents_every_field() -> None:
    config = get_model_spec("ras-face").config_type()
    text = describe_config(config)
    assert "window: 400" in text
    assert "# Frames per training window." in text
    for key in config.to_dict():
        assert f"\n{key}:" in f"\n{text}"
    # Every field is documented (the docstring under the field).
    from affectcache.extractors.core.config import field_docs

    for name in ("ras-face", "ras-behaviour", "ras-audio"):
        cls = get_model_spec(name).config_type
        assert set(cls().to_dict()) <= set(field_docs(cls)), name


def test_configs_parse_strictly_and_round_trip() -> None:
    cls = get_model_spec("ras-behaviour").config_type
    config = cls.from_dict({"window": 8, "input_columns": [5120, 7680]})
    assert config.input_columns == (5120, 7680)
    assert cls.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="window"):
        cls.from_dict({"window": "16"})
    with pytest.raises(ConfigError, match="loss_weights"):
        get_model_spec("ras-face").config_type.from_dict({"loss_weights": [1.0]})
