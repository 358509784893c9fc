"""``grada-face``: EfficientNet-B1 layout (torchvision keys, parameter counts), preprocessing, outputs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import ConfigError, MediaItem
from affectcache.extractors.visual.grada_face import (
    EMOTIONS,
    GradaConfig,
    GradaFaceExtractor,
    build_grada,
    grada_input,
    grada_letterbox,
    grada_normalise,
    load_grada_weights,
)
from tests.extractors.visual.factories import fake_face_upstream

if TYPE_CHECKING:
    from pathlib import Path


def _expected_b1_trunk() -> dict[str, tuple[int, ...]]:
    """torchvision ``efficientnet_b1`` trunk keys and shapes, written out from the architecture table
    (B0 stages, width 1.0, depth 1.1 -> layers ceil(n * 1.1)) independently of the implementation."""
    stages = [(1, 3, 32, 16, 1), (6, 3, 16, 24, 2), (6, 5, 24, 40, 2), (6, 3, 40, 80, 3), (6, 5, 80, 112, 3),
              (6, 5, 112, 192, 4), (6, 3, 192, 320, 1)]
    keys: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, cout: int, weight: tuple[int, ...]) -> None:
        keys[f"{prefix}.0.weight"] = weight
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.1.{name}"] = (cout,)
        keys[f"{prefix}.1.num_batches_tracked"] = ()

    conv_bn("features.0", 32, (32, 3, 3, 3))
    for s, (expand, k, cin0, cout, layers) in enumerate(stages, start=1):
        for i in range(math.ceil(layers * 1.1)):
            cin = cin0 if i == 0 else cout
            hidden = cin * expand
            p, j = f"features.{s}.{i}.block", 0
            if expand != 1:
                conv_bn(f"{p}.0", hidden, (hidden, cin, 1, 1))
                j = 1
            conv_bn(f"{p}.{j}", hidden, (hidden, 1, k, k))
            sq = max(1, cin // 4)
            keys.update({f"{p}.{j + 1}.fc1.weight": (sq, hidden, 1, 1), f"{p}.{j + 1}.fc1.bias": (sq,),
                         f"{p}.{j + 1}.fc2.weight": (hidden, sq, 1, 1), f"{p}.{j + 1}.fc2.bias": (hidden,)})
            conv_bn(f"{p}.{j + 2}", cout, (cout, hidden, 1, 1))
    conv_bn("features.8", 1280, (1280, 320, 1, 1))
    return keys


def test_b1_trunk_has_torchvision_keys_shapes_and_parameter_counts() -> None:
    from affectcache.extractors.common.efficientnet import build_efficientnet

    trunk = build_efficientnet(1.0, 1.1)
    got = {k: tuple(v.shape) for k, v in trunk.state_dict().items()}
    assert got == _expected_b1_trunk()
    assert list(got) == list(_expected_b1_trunk())  # same order too
    assert sum(p.numel() for p in trunk.parameters()) == 6_513_184
    full = build_efficientnet(1.0, 1.1, num_classes=1000)
    assert sum(p.numel() for p in full.parameters()) == 7_794_184
    assert {"classifier.1.weight", "classifier.1.bias"} <= set(full.state_dict())


def test_grada_head_layout_and_torchvision_trunk_checkpoint(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    model = build_grada(0.25, 0.1)
    head = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("model.")}
    assert head["embeddings_layer.weight"] == (256, model.model.out_features)
    assert head["classifier.weight"] == (8, 256)
    assert head["regression.weight"] == (2, 256)
    assert "batchnorm.running_var" in head
    # A checkpoint with a "module." prefix loads; a bare trunk is refused with a clear message.
    path = tmp_path / "ck.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = build_grada(0.25, 0.1)
    load_grada_weights(other, str(path), "module.")
    assert torch.equal(other.state_dict()["regression.weight"], model.state_dict()["regression.weight"])
    trunk_only = tmp_path / "trunk.safetensors"
    save_file({k[len("model."):]: v.contiguous() for k, v in model.state_dict().items()
               if k.startswith("model.")}, str(trunk_only))
    with pytest.raises(ConfigError, match="head"):
        load_grada_weights(build_grada(0.25, 0.1), str(trunk_only))


def test_preprocessing_is_aspect_preserving_on_a_black_canvas() -> None:
    crop = np.full((60, 120, 3), 255, dtype=np.uint8)  # wide white crop
    x = grada_input(crop, 240)
    assert x.shape == (3, 240, 240)
    assert x.dtype == np.float32
    white = (1.0 - 0.485) / 0.229
    black = (0.0 - 0.485) / 0.229
    assert np.isclose(x[0, 120, 120], white, atol=1e-3)
    assert np.isclose(x[0, 10, 120], black, atol=1e-3)  # top band: padding, normalised black
    assert np.isclose(x[0, 60, 120], white, atol=1e-3)
    assert np.isclose(x[0, 59, 120], black, atol=1e-3)


def test_device_side_normalisation_gives_the_same_numbers() -> None:
    """prepare() ships uint8 letterboxed crops and forward() normalises them on the model's device: the
    numbers must be the float canvas arithmetic of the RAS preprocessing, bit for bit."""
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((60, 120), (241, 37), (240, 240))]
    mean, std = np.asarray((0.485, 0.456, 0.406), np.float32), np.asarray((0.229, 0.224, 0.225), np.float32)
    reference = []
    for crop in crops:  # the reference: resize, float canvas (black padding), normalise, channels first
        h, w = crop.shape[:2]
        nw, nh = max(1, round(w * 240 / max(h, w))), max(1, round(h * 240 / max(h, w)))
        resized = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.BILINEAR))
        canvas = np.zeros((240, 240, 3), dtype=np.float32)
        top, left = (240 - nh) // 2, (240 - nw) // 2
        canvas[top: top + nh, left: left + nw] = resized.astype(np.float32) / 255.0
        reference.append(((canvas - mean) / std).transpose(2, 0, 1))
    np.testing.assert_array_equal(np.stack([grada_input(c, 240) for c in crops]), np.stack(reference))
    device_side = grada_normalise(torch.from_numpy(np.stack([grada_letterbox(c, 240) for c in crops])))
    np.testing.assert_array_equal(device_side.numpy(), np.stack(reference))


def test_grada_face_outputs_and_batch_grouping(tiny_grada: Path, media_dir: Path) -> None:
    items = [MediaItem(video_id=n, path=str(media_dir / f"{n}.mp4")) for n in ("a", "b")]
    up = fake_face_upstream(items)
    ups = [up[it.video_id] for it in items]

    def run(batch: int) -> list:
        cfg = GradaConfig(weights=str(tiny_grada), trunk_width=0.25, trunk_depth=0.1, image_size=64,
                          batch_size=batch, max_side=160)
        return GradaFaceExtractor(cfg).extract_batch(items, ups)

    one, many = run(1), run(16)
    for a, b in zip(one, many, strict=True):
        assert a.allclose(b, rtol=1e-4, atol=1e-5)
    feats = many[1]
    assert feats.values.shape == (ups[1]["face"].n_rows, 266)
    assert feats.values.dtype == np.float32
    rows = feats.values[feats.mask]
    cols = feats.attrs["columns"]
    assert cols == {"embedding": [0, 256], "va_pred": [256, 258], "emo_probs": [258, 266]}
    assert feats.attrs["emotions"] == list(EMOTIONS)
    assert np.abs(rows[:, :256]).max() <= 1.0  # tanh embedding
    np.testing.assert_allclose(rows[:, 258:].sum(axis=1), 1.0, rtol=1e-5)
    assert (feats.values[~feats.mask] == 0).all()


def test_missing_weights_is_a_clear_config_error(media_dir: Path) -> None:
    item = MediaItem(video_id="a", path=str(media_dir / "a.mp4"))
    with pytest.raises(ConfigError, match="user-provided"):
        GradaFaceExtractor(GradaConfig()).extract(item, fake_face_upstream([item])["a"])
