"""Tiny random stand-ins of the visual models, for the offline demo and the tests.

:func:`tiny_clip` saves a toy ``CLIPModel`` (hidden width 32, 2 layers, projection 16) with its image
processor and a byte-level tokenizer (so one folder serves the image and the text tower, as a real CLIP);
:func:`tiny_grada_checkpoint` saves a GRADA checkpoint of a scaled-down EfficientNet trunk.
Seeds are fixed and a folder that already holds the model is reused. Their features carry no meaning;
they only exercise the real loading and extraction code paths without downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectcache.extractors.core.atomic import atomic_path
from affectcache.extractors.testing.standins import build_standin, byte_vocab


def tiny_clip_config(*, patch_size: int = 32, image_size: int = 224, vocab_size: int = 300,
                     bos_token_id: int = 0, eos_token_id: int = 1, pad_token_id: int = 1) -> Any:
    """A toy ``CLIPConfig`` (vision and text towers of width 32, 2 layers, projection 16)."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=16)


def tiny_clip(path: str | Path, *, patch_size: int = 32) -> Path:
    """Save a tiny random CLIP with its tokenizer and image processor at ``path``; returns ``path``."""

    def make(tmp: Path) -> None:
        from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

        tok = CLIPTokenizer(vocab=byte_vocab(("<|startoftext|>", "<|endoftext|>"), suffix="</w>"), merges=[])
        config = tiny_clip_config(patch_size=patch_size, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        CLIPModel(config).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
                              ).save_pretrained(tmp)

    return build_standin(path, make)


def tiny_grada_checkpoint(path: str | Path, *, width: float = 0.25, depth: float = 0.1,
                          seed: int = 0) -> Path:
    """Save a GRADA checkpoint with a scaled-down EfficientNet trunk (``trunk_width``/``trunk_depth`` of
    the config must match) at ``path`` (a ``.safetensors`` file, ``model.*``/head keys); returns ``path``."""

    out = Path(path)
    if out.exists():
        return out
    import torch
    from safetensors.torch import save_file

    from affectcache.extractors.visual.grada_face import build_grada

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_grada(width, depth)
        # Non-trivial BatchNorm statistics, so the eval-mode path is exercised as with trained weights.
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return out
