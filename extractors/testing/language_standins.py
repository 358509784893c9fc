"""Tiny random stand-ins of the language models, for the offline demo and the tests.

Each builder makes a model of the real architecture family at toy size (hidden width 32-64, 2 layers) from a
config with a fixed seed, with an offline byte-level tokenizer (256 byte symbols plus the family's special
tokens, no merges), saves it into a folder and returns the folder; a folder that already holds the model is
reused. Their outputs have no meaning: they exercise the real loading, prompting, decoding and pooling code
without downloads.

* :func:`tiny_qwen2_5_vl` / :func:`tiny_qwen3_vl`: Qwen-VL video models (no processor is saved: without
  torchvision transformers cannot build one, and the engine builds the vision inputs itself).
* :func:`tiny_hf_whisper` (transformers layout) and :func:`tiny_openai_whisper` (one ``.pt`` file that
  ``whisper.load_model`` reads; multilingual vocabulary so the package's tokenizer fits).
* :func:`tiny_emotion_roberta` (7 emotion labels, as ``michellejieli/emotion_text_classifier``).

The tiny CLIP (text and vision towers, tokenizer and image processor in one folder) is
:func:`affectcache.extractors.testing.visual_standins.tiny_clip`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from affectcache.extractors.testing.standins import build_standin as build_once
from affectcache.extractors.testing.standins import byte_vocab

if TYPE_CHECKING:
    from pathlib import Path

QWEN_SPECIALS: Final = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                        "<|image_pad|>", "<|video_pad|>")
"""Special tokens the Qwen-VL prompts use (ids 0..6 of the tiny vocabularies)."""

EMOTION_LABELS: Final = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
"""The 7 classes of ``michellejieli/emotion_text_classifier``, in its label order."""


def _qwen_tokenizer() -> Any:
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(vocab=byte_vocab(QWEN_SPECIALS), merges=[], eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    # Without this the ChatML and vision markers would be split into bytes.
    tok.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIALS
                                                          if t not in tok.all_special_tokens]})
    return tok


def _qwen_ids(tok: Any) -> dict[str, int]:
    ids = {name: int(tok.convert_tokens_to_ids(t)) for name, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    return ids


def tiny_qwen2_5_vl(path: str | Path) -> Path:
    """Save a tiny random ``Qwen2_5_VLForConditionalGeneration`` and its tokenizer at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        tok = _qwen_tokenizer()
        eos, pad = int(tok.convert_tokens_to_ids("<|im_end|>")), int(tok.pad_token_id)
        config = Qwen2_5_VLConfig(
            text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                             bos_token_id=pad, eos_token_id=eos, pad_token_id=pad,
                             rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                              "rope_theta": 1e6}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                               fullatt_block_indexes=[1]),
            **_qwen_ids(tok))
        model = Qwen2_5_VLForConditionalGeneration(config)
        model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=pad)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _write_preprocessor(tmp, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258,
                                                                                0.27577711))

    return build_once(path, make)


def tiny_qwen3_vl(path: str | Path) -> Path:
    """Save a tiny random ``Qwen3VLForConditionalGeneration`` and its tokenizer at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

        tok = _qwen_tokenizer()
        eos, pad = int(tok.convert_tokens_to_ids("<|im_end|>")), int(tok.pad_token_id)
        config = Qwen3VLConfig(
            text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                             max_position_embeddings=4096, bos_token_id=pad, eos_token_id=eos,
                             pad_token_id=pad,
                             rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                              "rope_theta": 1e6, "mrope_interleaved": True}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=64, deepstack_visual_indexes=[0]),
            **_qwen_ids(tok))
        model = Qwen3VLForConditionalGeneration(config)
        model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=pad)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _write_preprocessor(tmp, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    return build_once(path, make)


def _write_preprocessor(folder: Path, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    # Only the normalisation constants are read from it (as from a real checkpoint's file).
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": list(mean),
                                                                 "image_std": list(std)}))


def tiny_hf_whisper(path: str | Path) -> Path:
    """Save a tiny random ``WhisperForConditionalGeneration`` with its processor at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import (
            AddedToken,
            GenerationConfig,
            WhisperConfig,
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
            WhisperProcessor,
            WhisperTokenizer,
        )

        tok = WhisperTokenizer(vocab=byte_vocab(("<|endoftext|>",)), merges=[], bos_token="<|endoftext|>",
                               eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                               pad_token="<|endoftext|>")
        tok.add_special_tokens({"additional_special_tokens": [
            "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]})
        # Timestamp tokens must follow the last special token directly (the decoder finds them by offset).
        tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False)
                        for i in range(1501)])
        ids = {t: int(tok.convert_tokens_to_ids(t)) for t in (
            "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
            "<|notimestamps|>", "<|nospeech|>")}
        eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
        config = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=2, decoder_layers=2,
                               d_model=32, encoder_attention_heads=2, decoder_attention_heads=2,
                               encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=eot, bos_token_id=eot,
                               eos_token_id=eot, decoder_start_token_id=sot, max_target_positions=448)
        model = WhisperForConditionalGeneration(config)
        model.generation_config = GenerationConfig(
            decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
            no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True,
            lang_to_id={"<|en|>": ids["<|en|>"]},
            task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
            max_length=448, begin_suppress_tokens=[eot])
        model.save_pretrained(tmp)
        WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok
                         ).save_pretrained(tmp)

    return build_once(path, make)


def tiny_openai_whisper(path: str | Path) -> Path:
    """Save a tiny random openai-whisper checkpoint (``{"dims", "model_state_dict"}``) as ``path/tiny.pt``
    and return the file's path. Needs the ``openai-whisper`` package."""

    def make(tmp: Path) -> None:
        import torch
        from whisper.model import ModelDimensions, Whisper  # type: ignore[import-untyped,unused-ignore]

        # n_vocab must match the package's multilingual tokenizer (51865) or decoding indexes past it.
        dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=2,
                               n_vocab=51865, n_text_ctx=448, n_text_state=32, n_text_head=2, n_text_layer=2)
        model = Whisper(dims).eval()
        torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, tmp / "tiny.pt")
        (tmp / "config.json").write_text(json.dumps(dims.__dict__))  # completion marker of build_once

    return build_once(path, make) / "tiny.pt"


def tiny_emotion_roberta(path: str | Path) -> Path:
    """Save a tiny random ``RobertaForSequenceClassification`` with the 7 emotion labels at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizer

        tok = RobertaTokenizer(vocab=byte_vocab(("<s>", "<pad>", "</s>", "<unk>", "<mask>")), merges=[])
        config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                               pad_token_id=1, bos_token_id=0,
                               eos_token_id=2, num_labels=len(EMOTION_LABELS),
                               id2label=dict(enumerate(EMOTION_LABELS)),
                               label2id={n: i for i, n in enumerate(EMOTION_LABELS)})
        RobertaForSequenceClassification(config).save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return build_once(path, make)
