"""Tiny random stand-ins of the visual models, for the offline demo and the tests.

:func:`tiny_clip` saves a toy ``CLIPModel`` (hidden width 32, 2 layers, projection 16) with its image
processor; :func:`tiny_grada_checkpoint` saves a GRADA checkpoint of a scaled-down EfficientNet trunk.
Seeds are fixed and a folder that already holds the model is reused. Their features carry no meaning;
they only exercise the real loading and extraction code paths without downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectcache.extractors.standins import build_standin


def tiny_clip_config(*, patch_size: int = 32, image_size: int = 224) -> Any:
    """A toy ``CLIPConfig`` (vision and text towers of width 32, 2 layers, projection 16)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=16)


def tiny_clip(path: str | Path, *, patch_size: int = 32) -> Path:
    """Save a tiny random CLIP and its image processor at ``path``; returns ``path``."""

    def make(tmp: Path) -> None:
        from transformers import CLIPImageProcessorPil, CLIPModel

        CLIPModel(tiny_clip_config(patch_size=patch_size)).save_pretrained(tmp)
        CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
                              ).save_pretrained(tmp)

    return build_standin(path, make)


def tiny_grada_checkpoint(path: str | Path, *, width: float = 0.25, depth: float = 0.1,
                          seed: int = 0) -> Path:
    """Save a GRADA checkpoint with a scaled-down EfficientNet trunk (``trunk_width``/``trunk_depth`` of
    the config must match) at ``path`` (a ``.safetensors`` file, ``model.*``/head keys); returns ``path``."""
    import os
    import tempfile

    out = Path(path)
    if out.exists():
        return out
    import torch
    from safetensors.torch import save_file

    from affectcache.extractors.grada import build_grada

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_grada(width, depth)
        # Non-trivial BatchNorm statistics, so the eval-mode path is exercised as with trained weights.
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
