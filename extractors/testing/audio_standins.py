"""Tiny random stand-ins of the audio models, for the offline demo and the tests.

Each builder makes a model of the real architecture family at toy size (hidden width 32, 2 layers;
well under 1 MB) from a config with a fixed seed, saves it with its feature extractor into a folder, and
returns the folder. A folder that already holds the model is reused. The features they produce have no
meaning; they only exercise the real loading and extraction code paths without downloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectcache.extractors.testing.standins import build_standin

if TYPE_CHECKING:
    from pathlib import Path


def tiny_wavlm_config(**overrides: Any) -> Any:
    """A toy ``WavLMConfig`` (layer-norm feature encoder, as WavLM-large; ``feat_extract_norm="group"``
    gives the base variant)."""
    from transformers import WavLMConfig

    params: dict[str, Any] = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=32, max_bucket_distance=80,
        feat_extract_norm="layer", do_stable_layer_norm=True)
    params.update(overrides)
    return WavLMConfig(**params)


def tiny_wavlm(path: str | Path, **overrides: Any) -> Path:
    """Save a tiny random WavLM (+ its feature extractor) at ``path``; returns ``path``."""

    def make(tmp: Path) -> None:
        from transformers import Wav2Vec2FeatureExtractor, WavLMModel

        WavLMModel(tiny_wavlm_config(**overrides)).save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(tmp)

    return build_standin(path, make)


def tiny_wav2vec2_config() -> Any:
    """A toy ``Wav2Vec2Config`` with the audeering emotion model's layout (layer norm, 3 labels)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True, num_labels=3, id2label={0: "arousal", 1: "dominance", 2: "valence"},
        label2id={"arousal": 0, "dominance": 1, "valence": 2},
        architectures=["Wav2Vec2ForSpeechClassification"])


def tiny_wav2vec2_emotion(path: str | Path) -> Path:
    """Save a tiny random Wav2Vec2 + regression head with the published state-dict names
    (``wav2vec2.*``, ``classifier.dense.*``, ``classifier.out_proj.*``) at ``path``."""

    def make(tmp: Path) -> None:
        import torch
        from safetensors.torch import save_file
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        config = tiny_wav2vec2_config()
        encoder = Wav2Vec2Model(config)
        h = config.hidden_size
        tensors = {f"wav2vec2.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
        tensors.update({
            "classifier.dense.weight": torch.randn(h, h) * 0.2, "classifier.dense.bias": torch.randn(h) * 0.1,
            "classifier.out_proj.weight": torch.randn(3, h) * 0.2,
            "classifier.out_proj.bias": torch.zeros(3)})
        save_file(tensors, str(tmp / "model.safetensors"))
        config.save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(tmp)

    return build_standin(path, make)


def tiny_clap(path: str | Path, *, fusion: bool = False) -> Path:
    """Save a tiny random CLAP (HTSAT audio tower + text tower) and its feature extractor at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

        config = ClapConfig(
            text_config=dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, projection_dim=16, pad_token_id=1, bos_token_id=0,
                             eos_token_id=2),
            audio_config=dict(patch_embeds_hidden_size=16, depths=(1, 1), num_attention_heads=(2, 2),
                              hidden_size=32, num_hidden_layers=2, projection_dim=16, enable_fusion=fusion),
            projection_dim=16)
        ClapModel(config).save_pretrained(tmp)
        ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc",
                             padding="repeatpad").save_pretrained(tmp)

    return build_standin(path, make)


def tiny_ast(path: str | Path) -> Path:
    """Save a tiny random AST (AudioSet input geometry: 1024 frames × 128 mel bins) at ``path``."""

    def make(tmp: Path) -> None:
        from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

        ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_length=1024, num_mel_bins=128)).save_pretrained(tmp)
        ASTFeatureExtractor(max_length=1024, num_mel_bins=128).save_pretrained(tmp)

    return build_standin(path, make)
