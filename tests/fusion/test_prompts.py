"""Kookmin prompts are encoded by the text tower of the CLIP model that made the image embeddings."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import pytest
import torch

from affectcache.extractors.common.pretrained import model_identity
from affectcache.trainers.models.kookmin import KookminConfig, KookminModel, encode_region_prompts

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random CLIP stand-in plus a character-level CLIP tokenizer (ids inside its vocabulary)."""
    from transformers import CLIPTokenizer

    from affectcache.extractors.testing.visual_standins import tiny_clip

    folder = tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + ",-":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def _provenance(folder: Path, extractor: str = "clip-face") -> dict[str, object]:
    return {"extractor": extractor, "config": {"model": str(folder), "revision": None},
            "model": model_identity(str(folder), None)}


def test_prompts_are_the_image_models_projected_text_features(clip_folder: Path) -> None:
    from transformers import AutoTokenizer, CLIPModel

    config = KookminConfig(text_dim=16)
    got = encode_region_prompts(config, _provenance(clip_folder))
    assert got.shape == (9, 16)
    model = CLIPModel.from_pretrained(clip_folder, local_files_only=True).eval()
    tokens = AutoTokenizer.from_pretrained(clip_folder, local_files_only=True)(
        list(config.prompts), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**tokens)
    expected = out.pooler_output if hasattr(out, "pooler_output") else out
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.linalg.matrix_rank(got) > 1                      # the nine prompts differ
    KookminModel(KookminConfig(text_dim=16, visual_dim=16), got)  # accepted as the model's prompt bank


def test_prompts_refuse_a_non_clip_image_modality(clip_folder: Path) -> None:
    with pytest.raises(ValueError, match="made by 'grada-face'"):
        encode_region_prompts(KookminConfig(text_dim=16), _provenance(clip_folder, "grada-face"))


def test_prompts_refuse_a_changed_clip_folder(clip_folder: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "clip"
    shutil.copytree(clip_folder, copy)
    provenance = _provenance(copy)
    (copy / "extra.txt").write_text("changed\n")
    with pytest.raises(ValueError, match="changed since the image embeddings were made"):
        encode_region_prompts(KookminConfig(text_dim=16), provenance)


def test_prompts_name_the_text_width(clip_folder: Path) -> None:
    with pytest.raises(ValueError, match="gives 16-d prompts; set text_dim=16"):
        encode_region_prompts(KookminConfig(), _provenance(clip_folder))
