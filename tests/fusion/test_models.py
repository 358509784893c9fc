"""Fusion models: the authors' parameter counts, gating arithmetic, masking and padding behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.models.dcmmoe import (
    DCMMOEConfig,
    DCMMOEModel,
    dcmmoe_config,
    dcmmoe_released_config,
    masked_softmax,
)
from affectcache.trainers.models.fusion_batch import FusionBatch
from affectcache.trainers.models.kookmin import (
    DEFAULT_CENTRES,
    KookminConfig,
    KookminModel,
    build_kookmin,
    kookmin_config,
)
from affectcache.trainers.models.raav import RAAVConfig, RAAVModel, raav_config, reliability_weights
from tests.fusion.helpers import ccc, make_batch


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- parameter counts of the authors' code ------------------------------------------------------------


def test_dcmmoe_released_has_the_authors_parameter_count() -> None:
    model = DCMMOEModel(dcmmoe_released_config())
    assert n_params(model) == 2_179_330
    assert model.gate is None
    layers = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(layers) == 5
    assert {m.num_heads for m in layers} == {8}


def test_raav_has_the_authors_parameter_count() -> None:
    assert n_params(RAAVModel(raav_config())) == 1_716_484


def test_dcmmoe_default_is_the_poster_design() -> None:
    cfg = dcmmoe_config()
    model = DCMMOEModel(cfg)
    attn = [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(attn) == 6 * 5
    assert {m.num_heads for m in attn} == {16}
    assert (cfg.window, cfg.hop, cfg.layers, cfg.gate) == (400, 150, 5, "softmax")
    # one expert stack = the released layer stack; the rest is projections, gate and head
    per_layer = 4 * 256 * 256 + 4 * 256 + 2 * (256 * 256 + 256) + 4 * 256
    gate = 6 * 256 * 256 + 256 + 256 * 6 + 6
    head = 256 * 256 + 256 + 512 + 256 * 2 + 2
    assert n_params(model) == 3 * (258 * 256 + 256 + 512) + 6 * 5 * per_layer + gate + head


# ---- configs -----------------------------------------------------------------------------------------


def test_configs_round_trip_and_refuse_unknown_keys() -> None:
    for cfg in (dcmmoe_config(), dcmmoe_released_config(), raav_config(), kookmin_config()):
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        with pytest.raises(ConfigError, match=r"unknown keys \['hiden'\]; valid keys"):
            type(cfg).from_dict({"hiden": 3})


def test_config_cross_field_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        DCMMOEConfig.from_dict({"experts": ["face>behaviour", "face>voice"], "gate": "none", "heads": 7})
    msg = str(info.value)
    for reason in ("'face>voice'", "exactly one expert", "multiple of heads"):
        assert reason in msg
    with pytest.raises(ConfigError, match="one non-negative value per frame modality"):
        RAAVConfig.from_dict({"priors": [1.0]})
    with pytest.raises(ConfigError, match="one prompt each"):
        KookminConfig.from_dict({"prompts": ["a", "b"]})
    for cfg in (dcmmoe_config(), dcmmoe_released_config(), raav_config(), kookmin_config()):
        with pytest.raises(ConfigError, match="labels must name 2 tracks"):
            type(cfg).from_dict({**cfg.to_dict(), "labels": ["valence"]})


# ---- RAAV gating arithmetic --------------------------------------------------------------------------


def test_raav_log_priors_match_the_authors() -> None:
    lp = raav_config().log_priors()
    assert lp == pytest.approx([-0.1625, -1.8971], abs=5e-5)
    assert lp == pytest.approx([math.log(0.85), math.log(0.15)])
    # priors are normalised first and floored at 1e-6
    assert RAAVConfig(priors=(1.7, 0.3)).log_priors() == pytest.approx(lp)
    assert RAAVConfig(priors=(1.0, 0.0)).log_priors()[1] == pytest.approx(math.log(1e-6 / (1 + 1e-6)))


def test_reliability_weights_renormalise_over_valid_modalities() -> None:
    lp = torch.tensor(raav_config().log_priors())
    logits = torch.zeros(1, 4, 2)
    logits[0, 3] = torch.tensor([0.5, 1.5])
    valid = torch.tensor([[[True, True], [True, False], [False, False], [True, True]]])
    w = reliability_weights(logits, valid, lp)
    # equal gate logits: the weights are the priors themselves
    assert w[0, 0].tolist() == pytest.approx([0.85, 0.15], abs=1e-6)
    # one modality valid: it takes the whole weight; none valid: nothing
    assert w[0, 1].tolist() == pytest.approx([1.0, 0.0])
    assert w[0, 2].tolist() == [0.0, 0.0]
    # by hand: softmax(0.5 + log .85, 1.5 + log .15)
    a, b = 0.85 * math.exp(0.5), 0.15 * math.exp(1.5)
    assert w[0, 3].tolist() == pytest.approx([a / (a + b), b / (a + b)], abs=1e-6)


def test_masked_softmax_rows_sum_to_one_or_zero() -> None:
    logits = torch.randn(3, 5, 4)
    avail = torch.rand(3, 5, 4) > 0.4
    w = masked_softmax(logits, avail)
    sums = w.sum(-1)
    assert torch.allclose(sums[avail.any(-1)], torch.ones(()))
    assert torch.all(sums[~avail.any(-1)] == 0)
    assert torch.all(w[~avail] == 0)


def test_raav_forward_weights_follow_modality_validity() -> None:
    cfg = RAAVConfig(hidden=32, heads=4, frame_input_dims=(6, 5), audio_input_dim=7)
    model = RAAVModel(cfg).eval()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 7}, {"audio": 4}, frames=10,
                       frame_lengths=[10, 7])
    batch.valid["behaviour"][0, :3] = False
    batch.valid["face"][0, 5] = False
    out = model(batch)
    assert out.preds.shape == (2, 10, 2)
    assert out.embedding.shape == (2, 10, 32)
    face, beh = out.weights["face"], out.weights["behaviour"]
    assert torch.all(face[0, :3] == 1)
    assert torch.all(beh[0, :3] == 0)
    assert face[0, 5] == 0
    assert beh[0, 5] == 1
    assert torch.allclose((face + beh)[1, :7], torch.ones(7))
    assert torch.all(torch.isfinite(out.preds))


def test_raav_ignores_invalid_audio_and_uses_valid_audio() -> None:
    cfg = RAAVConfig(hidden=32, heads=4, frame_input_dims=(6, 5), audio_input_dim=7)
    model = RAAVModel(cfg).eval()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 7}, {"audio": 4}, frames=10)
    batch.valid["audio"][0] = False            # row 0: no valid audio at all
    batch.valid["audio"][1, 2:] = False        # row 1: two valid chunks
    ref = model(batch).preds
    noisy = make_batch({"face": 6, "behaviour": 5, "audio": 7}, {"audio": 4}, frames=10, seed=1)
    batch.inputs["audio"][0] = noisy.inputs["audio"][0]
    batch.inputs["audio"][1, 2:] = noisy.inputs["audio"][1, 2:]
    assert torch.allclose(model(batch).preds, ref, atol=1e-6)
    batch.inputs["audio"][1, :2] = noisy.inputs["audio"][1, :2]
    changed = model(batch).preds
    assert not torch.allclose(changed[1], ref[1], atol=1e-4)
    assert torch.allclose(changed[0], ref[0], atol=1e-6)


def test_raav_audio_masking_rule_is_a_training_quirk() -> None:
    cfg = raav_config()
    assert not cfg.audio_valid(0.5, 0.9, training=True)
    assert not cfg.audio_valid(2.0, 0.7, training=True)
    assert cfg.audio_valid(1.0, 0.8, training=True)
    assert cfg.audio_valid(0.0, 0.0, training=False)          # the authors never mask at evaluation
    strict = cfg.replace(mask_audio_at_evaluation=True)
    assert not strict.audio_valid(0.0, 0.0, training=False)
    assert cfg.replace(mask_audio_in_training=False).audio_valid(0.0, 0.0, training=True)


# ---- DCMMOE ------------------------------------------------------------------------------------------


def _tiny_dcmmoe(**changes: object) -> DCMMOEModel:
    cfg = DCMMOEConfig.from_dict({"input_dims": [6, 5, 4], "hidden": 16, "heads": 4, "layers": 2,
                                  "gate_hidden": 8, "max_len": 64, "window": 32, "hop": 16, **changes})
    torch.manual_seed(0)
    return DCMMOEModel(cfg).eval()


def test_dcmmoe_gate_drops_experts_of_a_missing_query_modality() -> None:
    model = _tiny_dcmmoe()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 4}, {}, frames=9, frame_lengths=[9, 6])
    batch.valid["face"][0, 2:4] = False
    out = model(batch)
    gate = out.extras["expert_gate"]                                          # (B, T, 6)
    face_queried = [i for i, e in enumerate(model.config.experts) if e.startswith("face>")]
    assert torch.all(gate[0, 2:4, face_queried] == 0)
    assert torch.all(gate[0, 4, face_queried] > 0)
    assert torch.allclose(gate[1, :6].sum(-1), torch.ones(6))
    assert torch.all(gate[1, 6:] == 0)                                        # padding: no expert
    total = sum(out.weights.values())
    assert torch.allclose(total[1, :6], torch.ones(6))
    # the face's share falls where only its "source" half remains
    assert torch.all(out.weights["face"][0, 2:4] < out.weights["face"][0, 0])


def test_dcmmoe_whole_modality_missing_stays_finite() -> None:
    model = _tiny_dcmmoe()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 4}, {}, frames=9)
    batch.valid["audio"][:] = False
    out = model(batch)
    assert torch.all(torch.isfinite(out.preds))
    assert torch.all(out.weights["audio"] == 0)


@pytest.mark.parametrize("preset", ["dcmmoe", "dcmmoe-released"])
def test_dcmmoe_valid_frames_ignore_padding_contents(preset: str) -> None:
    model = (_tiny_dcmmoe() if preset == "dcmmoe"
             else _tiny_dcmmoe(modalities=["face", "behaviour"], input_dims=[6, 5],
                               experts=["face>behaviour"],
                               gate="none"))
    dims = dict(zip(model.config.modalities, model.config.input_dims, strict=True))
    batch = make_batch(dims, {}, frames=9, frame_lengths=[9, 5])
    ref = model(batch).preds
    for m in dims:
        batch.inputs[m][1, 5:] = 100.0
    assert torch.allclose(model(batch).preds[1, :5], ref[1, :5], atol=1e-5)


def test_dcmmoe_embedding_is_the_head_before_its_last_layer() -> None:
    model = _tiny_dcmmoe()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 4}, {}, frames=5)
    out = model(batch)
    assert torch.allclose(model.head[4](out.embedding), out.preds)


def test_fusion_losses_train_every_part_of_the_models() -> None:
    model = _tiny_dcmmoe().train()
    batch = make_batch({"face": 6, "behaviour": 5, "audio": 4}, {}, frames=9)
    out = model(batch)
    model.loss(out, torch.randn(2, 9, 2), batch.mask).backward()
    assert model.gate is not None
    assert all(p.grad is not None for p in model.gate.parameters())
    assert all(p.grad is not None for p in model.experts.parameters())


# ---- Kookmin -----------------------------------------------------------------------------------------


def _tiny_kookmin(**changes: object) -> KookminModel:
    cfg = KookminConfig.from_dict({"visual_dim": 8, "audio_dim": 6, "text_dim": 8, "hidden": 16, "heads": 2,
                                   **changes})
    torch.manual_seed(0)
    return KookminModel(cfg, torch.randn(9, 8)).eval()


def test_kookmin_prompt_width_follows_the_image_width_unless_set() -> None:
    # One CLIP projects images and texts into one space: the prompt bank takes the store's image width.
    model = build_kookmin(KookminConfig(hidden=16, heads=2), {"visual": 12, "audio": 6})
    assert tuple(model.prompt_embeddings.shape) == (9, 12)
    assert model.to_text.out_features == 12
    explicit = build_kookmin(KookminConfig(hidden=16, heads=2, text_dim=8), {"visual": 12, "audio": 6})
    assert tuple(explicit.prompt_embeddings.shape) == (9, 8)
    with pytest.raises(ConfigError, match="text_dim"):
        KookminConfig.from_dict({"text_dim": 0})


def test_kookmin_forward_shapes_and_gate_shares() -> None:
    model = _tiny_kookmin()
    batch = make_batch({"visual": 8, "audio": 6}, {"audio": 3}, frames=7, frame_lengths=[7, 4])
    batch.valid["audio"][1] = False
    out = model(batch)
    assert out.preds.shape == (2, 7, 2)
    assert out.extras["region_logits"].shape == (2, 7, 9)
    assert torch.all(out.preds.abs() < 1)                                     # tanh output
    # no valid audio: the gated unit keeps the visual cue whole
    assert torch.all(out.weights["visual"][1, :4] == 1)
    assert torch.all(out.weights["audio"][1] == 0)
    share = out.weights["visual"][0]
    assert torch.all((share > 0) & (share < 1))
    assert torch.allclose(out.weights["visual"][0] + out.weights["audio"][0], torch.ones(7))
    # cosine / tau bounds the logits
    assert torch.all(out.extras["region_logits"].abs() <= 1 / model.config.tau + 1e-4)


def test_kookmin_padding_never_enters_the_gru() -> None:
    model = _tiny_kookmin()
    batch = make_batch({"visual": 8, "audio": 6}, {"audio": 3}, frames=7, frame_lengths=[7, 4])
    ref = model(batch).preds
    batch.inputs["visual"][1, 4:] = 50.0
    assert torch.allclose(model(batch).preds[1, :4], ref[1, :4], atol=1e-6)


def test_kookmin_needs_one_prompt_embedding_per_region() -> None:
    with pytest.raises(ValueError, match=r"prompt_embeddings must be \(9, 512\)"):
        KookminModel(kookmin_config(), torch.randn(8, 512))
    assert len(kookmin_config().prompts) == len(DEFAULT_CENTRES) == 9


def test_missing_modality_is_named() -> None:
    model = _tiny_kookmin()
    batch = make_batch({"visual": 8}, {}, frames=4)
    with pytest.raises(ValueError, match=r"kookmin: batch lacks modalities \['audio'\]"):
        model(batch)
    batch = make_batch({"visual": 9, "audio": 6}, {}, frames=4)
    with pytest.raises(ValueError, match="'visual' has 9 features per row, the config expects 8"):
        model(batch)


# ---- learning ----------------------------------------------------------------------------------------


def _planted_windows(kind: str, n: int, seed: int) -> tuple[FusionBatch, torch.Tensor]:
    """Valence in the face/visual stream per frame; arousal in the audio (per frame on the frame clock for
    DCMMOE, per window in the audio tokens for RAAV and Kookmin, which have no frame-to-token timing)."""
    g = torch.Generator().manual_seed(seed)
    frames = 16
    face = torch.randn(n, frames, 6, generator=g)
    valence = torch.tanh(face[..., 0])
    inputs = {"visual" if kind == "kookmin" else "face": face}
    if kind == "dcmmoe":
        audio = torch.randn(n, frames, 4, generator=g)
        arousal = torch.tanh(audio[..., 0])
    else:
        audio = torch.randn(n, 4, 4, generator=g)
        level = torch.rand(n, 1, generator=g) * 1.6 - 0.8
        audio[..., 0] = level
        arousal = level.expand(n, frames)
    inputs["audio"] = audio
    if kind != "kookmin":
        inputs["behaviour"] = torch.randn(n, frames, 5, generator=g)
    valid = {k: torch.ones(v.shape[:2], dtype=torch.bool) for k, v in inputs.items()}
    batch = FusionBatch(inputs=inputs, valid=valid, mask=torch.ones(n, frames, dtype=torch.bool))
    return batch, torch.stack([valence, arousal], -1)


@pytest.mark.parametrize("kind", ["dcmmoe", "raav", "kookmin"])
@pytest.mark.usefixtures("one_torch_thread")
def test_fusion_models_learn_a_planted_signal(kind: str) -> None:
    torch.manual_seed(0)
    model: DCMMOEModel | RAAVModel | KookminModel
    if kind == "dcmmoe":
        model = DCMMOEModel(DCMMOEConfig(input_dims=(6, 5, 4), hidden=16, heads=2, layers=1, gate_hidden=16,
                                         max_len=64, window=16, hop=8, dropout=0.0))
    elif kind == "raav":
        model = RAAVModel(RAAVConfig(frame_input_dims=(6, 5), audio_input_dim=4, hidden=16, heads=2,
                                     dropout=0.0))
    else:
        model = KookminModel(KookminConfig(visual_dim=6, audio_dim=4, text_dim=8, hidden=16, heads=2,
                                           dropout=0.0), torch.randn(9, 8))
    train, targets = _planted_windows(kind, 32, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        model.loss(model(train), targets, train.mask).backward()
        opt.step()
    test, expected = _planted_windows(kind, 16, seed=1)
    with torch.no_grad():
        preds = model.eval()(test).preds
    for d in range(2):
        assert ccc(preds[..., d].numpy(), expected[..., d].numpy()) > 0.9
