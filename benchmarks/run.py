"""affectcache benchmarks: ratios against a baseline measured in the same process.

These machines are noisy, so every number that matters is a ratio of two timings taken back to back
(best of ``--repeat`` runs each), never an absolute threshold. Results print as a table and are written to
``bench_out/results.json``.

Measured:
  1. mfcc through the full runner (decode + extract + store write, in-process and on a local Dask cluster)
     vs the bare MFCC function over the same already-decoded audio;
  2. store write vs ``np.save`` of the same arrays; the store at corpus scale (``store_scale.py``: writes,
     inodes and bytes, whole-modality load, single reads, status/plan, open_dataset, failure records,
     fsspec requests, peak RSS, growth; ``--scale`` for full sizes);
  3. epoch-style read of a whole modality from the store vs the same arrays held in memory
     (and vs ``np.load`` of the ``.npy`` files);
  4. peak RSS of mfcc extraction on a 10-minute vs a 1-minute clip (separate processes);
  5. ``affectcache --help`` wall time vs a bare ``python -c pass``;
  6. audio-model extractors (wavlm, clap-audio, wav2vec2-emotion, ast): decode + bare HF forward on the
     windows (baseline) vs the extractor's forward+pooling and the whole audio pass through ``build``,
     with windows/s; tiny models on CPU, or real-size random-weight architectures on CUDA with ``--gpu``.
  7. visual extractors (face, clip-face, grada-face): bare decode / MediaPipe detection / model forward on
     the same frames and crops vs the passes through ``build``, with frames/s and crops/s per stage.
  8. several modalities built together (``build_many``: one decode per item for all of them, optionally
     side by side in threads) vs the same modalities built one after another, for the audio models
     (wavlm 16 kHz + clap-audio 48 kHz + ast) and the visual ones (face, clip-face, grada-face, clip-scene);
     and one audio decode resampled to 16 and 48 kHz vs a decode per rate.
  9. trainers (``benchmarks/bench_trainers.py``): a ras-face epoch through the loop vs a bare PyTorch loop,
     and the ras-face views of Aff-Wild2-like inputs vs ``FeatureStore.load`` of them.
 10. hyperparameter search (``benchmarks/bench_search.py``): a 16-trial ras-face grid on a 2-worker local
     Dask cluster vs the same trials one after another in one process (``--gpu``: trials on CUDA,
     trials/hour).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bench_search import bench_search  # benchmarks/ is on sys.path when run as a script
from bench_trainers import bench_gpu_heads, bench_trainers
from store_scale import bench_store_scale
from timing import best_of

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("affectcache.benchmarks")
SECTIONS = ("cli", "mfcc", "store", "store-scale", "audio", "language", "visual", "trainers", "search", "rss",
            "gpu-heads")



def bench_mfcc_runner(out: Path, repeat: int) -> list[dict[str, Any]]:
    from affectcache.extractors.audio.mfcc import MFCCConfig, MFCCExtractor
    from affectcache.extractors.core.records import MediaItem
    from affectcache.extractors.media.audio import decode_audio
    from affectcache.extractors.testing.synthetic import generate_demo_corpus
    from affectcache.store.manifest import Manifest
    from affectcache.store.runner import build

    clips = generate_demo_corpus(out / "media")
    items = [MediaItem(video_id=c.video_id, path=str(c.path)) for c in clips]
    audio_s = sum(c.duration_s for c in clips)
    cfg = MFCCConfig()
    extractor = MFCCExtractor(cfg)
    waves = [decode_audio(it.path, sample_rate=cfg.sample_rate) for it in items]
    extractor.compute(waves)  # warm: load filters, first-call torch overheads
    bare = best_of(lambda: extractor.compute(waves), repeat)
    decode = best_of(lambda: [decode_audio(it.path, sample_rate=cfg.sample_rate) for it in items], repeat)

    def runner(workers: int) -> None:
        target = out / f"runner_{workers}.zarr"
        shutil.rmtree(target, ignore_errors=True)
        build("mfcc", Manifest(items=tuple(items)), target, config=cfg, workers=workers)

    in_process = best_of(lambda: runner(0), repeat)
    dask = best_of(lambda: runner(2), max(1, repeat - 1))
    return [
        {"benchmark": "mfcc bare compute (baseline)", "seconds": bare, "ratio": 1.0,
         "note": f"{len(items)} clips, {audio_s:.0f} s audio; {audio_s / bare:.0f}x real time"},
        {"benchmark": "mfcc audio decode+resample", "seconds": decode, "ratio": decode / bare, "note": ""},
        {"benchmark": "mfcc full runner, in-process", "seconds": in_process, "ratio": in_process / bare,
         "note": f"decode+extract+write; {audio_s / in_process:.0f}x real time"},
        {"benchmark": "mfcc full runner, local Dask (2 workers)", "seconds": dask, "ratio": dask / bare,
         "note": "includes cluster start-up and worker imports"},
    ]


def _bench_arrays(n_videos: int, rows: int, dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"v{i:03d}": rng.standard_normal((rows + 37 * i, dim)).astype(np.float16)
            for i in range(n_videos)}


def bench_store_io(out: Path, repeat: int) -> list[dict[str, Any]]:
    from affectcache.extractors.core.records import FeatureArray
    from affectcache.store.zarr_store import FeatureStore

    arrays = _bench_arrays(32, 1500, 768)
    total_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    feats = [FeatureArray(video_id=vid, kind="frame", values=a, frame=np.arange(a.shape[0]),
                          time_s=np.arange(a.shape[0]) / 25.0) for vid, a in arrays.items()]
    prov = {"extractor": "bench", "version": "1", "modality_kind": "frame", "config": {},
            "config_fingerprint": "0" * 64, "upstream": {}, "model": {"id": None}, "libraries": {},
            "created": "now"}
    npy_dir = out / "npy"

    def write_npy() -> None:
        shutil.rmtree(npy_dir, ignore_errors=True)
        npy_dir.mkdir(parents=True)
        for f in feats:
            np.save(npy_dir / f"{f.video_id}.values.npy", f.values)
            np.save(npy_dir / f"{f.video_id}.frame.npy", f.frame)
            np.save(npy_dir / f"{f.video_id}.time_s.npy", f.time_s)

    store_path = out / "io.zarr"

    def write_store() -> None:
        shutil.rmtree(store_path, ignore_errors=True)
        fs = FeatureStore(store_path)
        fs.init_modality("bench", prov)
        for f in feats:
            fs.write("bench", f)

    t_npy = best_of(write_npy, repeat)
    t_store = best_of(write_store, repeat)
    fs = FeatureStore(store_path, read_only=True)

    def epoch(load: Callable[[str], np.ndarray]) -> float:
        # A training-style pass: every video's rows, reduced so the data is really touched.
        return float(sum(float(load(vid).astype(np.float32).mean()) for vid in arrays))

    t_mem = best_of(lambda: epoch(arrays.__getitem__), repeat)
    t_read = best_of(lambda: epoch(lambda vid: fs.read("bench", vid).values), repeat)
    t_many = best_of(lambda: [f.values.astype(np.float32).mean() for f in fs.read_many("bench")], repeat)
    t_load = best_of(lambda: epoch(lambda vid: np.load(npy_dir / f"{vid}.values.npy")), repeat)
    ds = fs.open_dataset("bench")
    t_lazy = best_of(lambda: float(ds["values"].astype(np.float32).mean().compute()), repeat)
    return [
        {"benchmark": "np.save of the arrays (baseline)", "seconds": t_npy, "ratio": 1.0,
         "note": f"32 videos, {total_mb:.1f} MB float16"},
        {"benchmark": "store write (FeatureStore.write)", "seconds": t_store, "ratio": t_store / t_npy,
         "note": f"{total_mb / t_store:.0f} MB/s"},
        {"benchmark": "epoch over arrays in memory (baseline)", "seconds": t_mem, "ratio": 1.0, "note": ""},
        {"benchmark": "epoch reading the store per video", "seconds": t_read, "ratio": t_read / t_mem,
         "note": f"{total_mb / t_read:.0f} MB/s"},
        {"benchmark": "epoch via read_many", "seconds": t_many, "ratio": t_many / t_mem, "note": ""},
        {"benchmark": "epoch via open_dataset (dask)", "seconds": t_lazy, "ratio": t_lazy / t_mem,
         "note": "whole modality as one lazy array"},
        {"benchmark": "epoch via np.load of .npy files", "seconds": t_load, "ratio": t_load / t_mem,
         "note": "for scale"},
    ]


RSS_SCRIPT = """
import resource, sys
from affectcache.extractors.audio.mfcc import MFCCExtractor
from affectcache.extractors.core.records import MediaItem
feats = MFCCExtractor().extract(MediaItem(video_id="x", path=sys.argv[1]))
print(feats.n_rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_rss(out: Path) -> list[dict[str, Any]]:
    from affectcache.extractors.testing.synthetic import write_clip

    rows = []
    peaks = {}
    for minutes in (1, 10):
        path = out / f"long_{minutes}min.mp4"
        if not path.exists():
            write_clip(path, duration_s=60.0 * minutes, fps=5.0, size=(64, 48),
                       frame_fn=lambda i, t: np.full((48, 64, 3), int(t * 10) % 255, np.uint8),
                       audio_fn=lambda t: 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate=16000)
        proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], capture_output=True, text=True,
                              check=True)
        n_rows, kb = proc.stdout.split()
        peaks[minutes] = int(kb) / 1024
        rows.append({"benchmark": f"mfcc peak RSS, {minutes}-min clip", "seconds": float("nan"),
                     "ratio": peaks[minutes] / peaks[1], "note": f"{peaks[minutes]:.0f} MiB, {n_rows} rows"})
    return rows


def _real_size_audio_models(root: Path) -> dict[str, Path]:
    """Real-size WavLM-large / wav2vec2-large-robust-12 / CLAP-HTSAT-fused / AST-AudioSet architectures
    with random weights, built from configs (no download) and saved once under ``root``."""
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        Wav2Vec2Config,
        WavLMConfig,
        WavLMModel,
    )

    from affectcache.extractors.audio.wav2vec2_emotion import emotion_model_class

    large = dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, feat_extract_norm="layer",
                 do_stable_layer_norm=True, conv_bias=True)
    builders = {
        "wavlm": lambda: WavLMModel(WavLMConfig(num_hidden_layers=24, **large)),
        "wav2vec2-emotion": lambda: emotion_model_class()(Wav2Vec2Config(
            num_hidden_layers=12, num_labels=3, **large)),
        "clap-audio": lambda: ClapModel(ClapConfig(audio_config={"enable_fusion": True})),
        "ast": lambda: ASTModel(ASTConfig()),
    }
    extras = {"clap-audio": lambda: ClapFeatureExtractor(truncation="fusion", padding="repeatpad"),
              "ast": lambda: ASTFeatureExtractor()}
    paths = {}
    for name, make in builders.items():
        path = root / name
        if not (path / "config.json").exists():
            make().save_pretrained(path)
            if name in extras:
                extras[name]().save_pretrained(path)
        paths[name] = path
    return paths


def _bare_audio_forward(name: str, ext: Any, waves: list[np.ndarray], batch_size: int) -> int:
    """The HF model called directly on the windows (model's own preprocessing, fixed batches, no pooling,
    rows or store): the baseline of the audio pass. Returns the number of windows."""
    import torch

    from affectcache.extractors.common.audio_windows import pad_batch, zero_mean_unit_var

    loaded, cfg = ext.model, ext.config
    with torch.inference_mode():
        for i in range(0, len(waves), batch_size):
            batch = waves[i: i + batch_size]
            if name in ("wavlm", "wav2vec2-emotion"):
                length = round(cfg.window_s * cfg.sample_rate)
                x, mask = pad_batch([zero_mean_unit_var(w) for w in batch], length)
                encoder = loaded.model if name == "wavlm" else loaded.model.wav2vec2
                encoder(torch.from_numpy(x).to(loaded.device, loaded.dtype),
                        attention_mask=torch.from_numpy(mask).to(loaded.device))
            elif name == "clap-audio":
                inputs = loaded.features(batch, sampling_rate=cfg.sample_rate, truncation=loaded.truncation,
                                         return_tensors="pt")
                loaded.model.get_audio_features(
                    input_features=inputs["input_features"].to(loaded.device, loaded.dtype),
                    is_longer=torch.zeros((len(batch), 1), dtype=torch.bool, device=loaded.device))
            else:
                inputs = loaded.features(batch, sampling_rate=cfg.sample_rate, return_tensors="pt")
                loaded.model(inputs["input_values"].to(loaded.device, loaded.dtype))
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
    return len(waves)


def _bench_one_audio_model(name: str, ext: Any, items: list[Any], out: Path, repeat: int,
                           label: str) -> list[dict[str, Any]]:
    from affectcache.extractors.common.audio_windows import plan_windows

    cfg = ext.config

    def waves_now() -> list[np.ndarray]:
        if not items:  # no PyAV on this machine: a minute of noise per item instead
            rng = np.random.default_rng(0)
            return [(0.1 * rng.standard_normal(60 * cfg.sample_rate)).astype(np.float32) for _ in range(4)]
        from affectcache.extractors.media.audio import decode_audio

        return [decode_audio(it.path, sample_rate=cfg.sample_rate) for it in items]

    def windows_of(waves: list[np.ndarray]) -> list[np.ndarray]:
        return [w[win.start: win.stop] for w in waves for win in plan_windows(
            len(w), cfg.sample_rate, window_s=cfg.window_s, hop_s=cfg.hop_s, min_window_s=cfg.min_window_s)]

    n = len(windows_of(waves_now()))
    _bare_audio_forward(name, ext, windows_of(waves_now())[: cfg.batch_size], cfg.batch_size)  # warm-up
    bare = best_of(lambda: _bare_audio_forward(name, ext, windows_of(waves_now()), cfg.batch_size), repeat)
    ours = best_of(lambda: ext._forward(windows_of(waves_now())), repeat)
    rows = [{"benchmark": f"{label}: decode + bare HF forward (baseline)", "seconds": bare, "ratio": 1.0,
             "note": f"{n} windows, {n / bare:.1f} windows/s"},
            {"benchmark": f"{label}: decode + extractor forward+pooling", "seconds": ours,
             "ratio": ours / bare, "note": f"{n / ours:.1f} windows/s"}]
    if items:
        from affectcache.store.manifest import Manifest
        from affectcache.store.runner import build

        def run_build() -> None:
            target = out / f"audio_{name}.zarr"
            shutil.rmtree(target, ignore_errors=True)
            build(name, Manifest(items=tuple(items)), target, config=cfg, workers=0)

        full = best_of(run_build, repeat)
        rows.append({"benchmark": f"{label}: audio pass through build (in-process)", "seconds": full,
                     "ratio": full / bare, "note": f"{n / full:.1f} windows/s incl. store write"})
    return rows


def bench_together(label: str, configs: dict[str, Any], items: list[Any], out: Path,
                   repeat: int) -> list[dict[str, Any]]:
    """``configs``' modalities built one after another (baseline) vs in one ``build_many`` (each item
    decoded once for all), sequentially and side by side (3 modality threads)."""
    from affectcache.store.manifest import Manifest
    from affectcache.store.runner import build, build_many

    manifest = Manifest(items=tuple(items))
    target = out / "together.zarr"

    def apart() -> None:
        shutil.rmtree(target, ignore_errors=True)
        for name, config in configs.items():
            build(name, manifest, target, config=config, workers=0)

    def together(threads: int) -> None:
        shutil.rmtree(target, ignore_errors=True)
        build_many(list(configs), manifest, target, configs=configs, workers=0, modality_threads=threads)

    t_apart = best_of(apart, repeat)
    t_one = best_of(lambda: together(1), repeat)
    t_three = best_of(lambda: together(3), repeat)
    names = "+".join(configs)
    return [{"benchmark": f"{label}: {names} built one after another (baseline)", "seconds": t_apart,
             "ratio": 1.0, "note": f"{len(items)} items; each modality decodes every item itself"},
            {"benchmark": f"{label}: built together (one decode per item)", "seconds": t_one,
             "ratio": t_one / t_apart, "note": "build_many, modalities in turn"},
            {"benchmark": f"{label}: built together, 3 modality threads", "seconds": t_three,
             "ratio": t_three / t_apart, "note": "independent modalities side by side"}]


def bench_audio_decode_rates(items: list[Any], repeat: int) -> list[dict[str, Any]]:
    """One decode resampled to 16 and 48 kHz (shared decoding) vs one decode per rate."""
    from affectcache.extractors.media.audio import decode_audio
    from affectcache.extractors.media.decode_memo import MediaNeeds, shared_decoding

    rates = (16000, 48000)

    def per_rate() -> None:
        for it in items:
            for rate in rates:
                decode_audio(it.path, sample_rate=rate)

    def shared() -> None:
        with shared_decoding(MediaNeeds(audio_rates=frozenset(rates))):
            per_rate()

    t_apart, t_shared = best_of(per_rate, repeat), best_of(shared, repeat)
    return [{"benchmark": "audio decode at 16 + 48 kHz: a decode per rate (baseline)", "seconds": t_apart,
             "ratio": 1.0, "note": f"{len(items)} items"},
            {"benchmark": "audio decode at 16 + 48 kHz: one decode, resampled per rate", "seconds": t_shared,
             "ratio": t_shared / t_apart, "note": "what a task building wavlm + clap-audio does"}]


def bench_audio(out: Path, repeat: int, gpu: bool = False) -> list[dict[str, Any]]:
    """Audio-model extractors: the audio pass through ``build`` (in-process: decode, resample, windows,
    batched forward, pooling, store write) vs decode+resample plus the bare HF forward on the same windows.

    CPU: tiny random models on the demo clips. ``gpu``: real-size architectures with random weights on
    CUDA (needs a GPU; without PyAV/zarr only the model stages run, on synthetic audio).
    """
    import importlib.util

    import torch

    from affectcache.extractors.testing.audio_standins import (
        tiny_ast,
        tiny_clap,
        tiny_wav2vec2_emotion,
        tiny_wavlm,
    )
    from affectcache.store.runner import make_extractor

    on_gpu = gpu and torch.cuda.is_available()
    if gpu and not on_gpu:
        logger.warning("--gpu: no CUDA device; benchmarking tiny models on CPU")
    device = "cuda" if on_gpu else "cpu"
    where = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    if on_gpu:
        models = _real_size_audio_models(out / "audio_real_arch")
        batch_size = 32
    else:
        root = out / "audio_tiny"
        models = {"wavlm": tiny_wavlm(root / "wavlm"), "clap-audio": tiny_clap(root / "clap", fusion=True),
                  "wav2vec2-emotion": tiny_wav2vec2_emotion(root / "emo"), "ast": tiny_ast(root / "ast")}
        batch_size = 16
    scale = "real-size random" if on_gpu else "tiny"
    items: list[Any] = []
    if all(importlib.util.find_spec(m) for m in ("av", "zarr")):
        from affectcache.extractors.core.records import MediaItem
        from affectcache.extractors.testing.synthetic import generate_demo_corpus

        clips = generate_demo_corpus(out / "media")[: (12 if on_gpu else 4)]
        items = [MediaItem(video_id=c.video_id, path=str(c.path)) for c in clips]
    rows = []
    for name, path in models.items():
        ext = make_extractor(name, {"model": str(path), "device": device, "batch_size": batch_size})
        rows += _bench_one_audio_model(name, ext, items, out, repeat, f"{name} ({scale}, {where})")
    if items:
        rows += bench_audio_decode_rates(items, repeat)
        configs = {name: make_extractor(name, {"model": str(models[name]), "device": device,
                                               "batch_size": batch_size}).config
                   for name in ("wavlm", "clap-audio", "ast")}
        rows += bench_together(f"audio ({scale}, {where})", configs, items, out, repeat)
    return rows


def _build_device() -> Any:
    """Where real-size random models are initialised: the GPU when there is one (seconds instead of
    minutes of CPU initialisation for billions of parameters)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _real_size_language_models(root: Path) -> dict[str, Path]:
    """Qwen2.5-VL-3B-Instruct and whisper-large-v3-turbo architectures with random weights (configs as
    published; byte-level tokenizers, so only throughput is meaningful), saved once under ``root``."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, WhisperConfig

    from affectcache.extractors.testing import language_standins as ls

    paths = {"qwen2.5-vl-3b": root / "qwen2.5-vl-3b", "whisper-large-v3-turbo": root / "whisper-turbo"}
    qwen, whisper = paths["qwen2.5-vl-3b"], paths["whisper-large-v3-turbo"]
    if not (qwen / "config.json").exists():
        tiny = ls.tiny_qwen2_5_vl(root / "qwen-tokenizer-source")
        tiny_cfg = Qwen2_5_VLConfig.from_pretrained(tiny)
        ids = {k: getattr(tiny_cfg, k) for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                                  "vision_end_token_id")}
        config = Qwen2_5_VLConfig(
            text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                             num_hidden_layers=36,
                             num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                             rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24],
                                              "rope_theta": 1e6}, tie_word_embeddings=True,
                             eos_token_id=tiny_cfg.text_config.eos_token_id,
                             pad_token_id=tiny_cfg.text_config.pad_token_id),
            vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                               out_hidden_size=2048, patch_size=14, spatial_merge_size=2,
                               temporal_patch_size=2,
                               window_size=112, fullatt_block_indexes=[7, 15, 23, 31]), **ids)
        with _build_device():  # 3.8 B parameters: initialise on the GPU, save in bf16 (half the bytes)
            Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(qwen)
        for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json",
                     "generation_config.json"):
            shutil.copy(tiny / name, qwen / name)
    if not (whisper / "config.json").exists():
        tiny_w = ls.tiny_hf_whisper(root / "whisper-tokenizer-source")
        from transformers import AutoProcessor, GenerationConfig, WhisperForConditionalGeneration

        small = WhisperConfig.from_pretrained(tiny_w)
        config = WhisperConfig(vocab_size=small.vocab_size, num_mel_bins=80, d_model=1280, encoder_layers=32,
                               decoder_layers=4, encoder_attention_heads=20, decoder_attention_heads=20,
                               encoder_ffn_dim=5120, decoder_ffn_dim=5120, pad_token_id=small.pad_token_id,
                               bos_token_id=small.bos_token_id, eos_token_id=small.eos_token_id,
                               decoder_start_token_id=small.decoder_start_token_id, max_target_positions=448)
        with _build_device():
            model = WhisperForConditionalGeneration(config).to(torch.bfloat16)
        model.generation_config = GenerationConfig.from_pretrained(tiny_w)
        model.save_pretrained(whisper)
        AutoProcessor.from_pretrained(tiny_w).save_pretrained(whisper)
    return paths


def bench_language(out: Path, repeat: int, gpu: bool = False) -> list[dict[str, Any]]:
    """Language stages: the behaviour-caption pass through ``build`` (in-process: decode, resize, prompt,
    generate, store write) and the extractor's engine call vs bare ``model.generate`` on the same
    prepared inputs (tokens/s, visual tokens per video-second); the transformers Whisper backend vs the bare
    encoder+generate on the same 30 s chunks.

    CPU: tiny random Qwen2.5-VL / Whisper on the demo clips. ``gpu``: Qwen2.5-VL-3B and
    whisper-large-v3-turbo architectures with random weights on CUDA (without PyAV/zarr: random frames and
    noise, model stages only).
    """
    import importlib.util

    import torch

    from affectcache.extractors.engines.vlm import TransformersVideoLM, VideoPrompt
    from affectcache.extractors.language.behaviour_caption import ras
    from affectcache.extractors.testing import language_standins as ls

    on_gpu = gpu and torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    where = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    if on_gpu:
        models = _real_size_language_models(out / "language_real_arch")
        qwen, whisper_path = str(models["qwen2.5-vl-3b"]), str(models["whisper-large-v3-turbo"])
        video = {"fps": 2.0, "max_frames": 16, "min_pixels": 128 * 28 * 28, "max_pixels": 360 * 420,
                 "max_new_tokens": 64, "batch_size": 1}
    else:
        qwen = str(ls.tiny_qwen2_5_vl(out / "language_tiny" / "qwen2.5-vl"))
        whisper_path = str(ls.tiny_hf_whisper(out / "language_tiny" / "whisper"))
        video = {"fps": 2.0, "max_frames": 8, "min_pixels": 56 * 56, "max_pixels": 112 * 112,
                 "max_new_tokens": 16, "batch_size": 8}
    scale = "real-size random" if on_gpu else "tiny"
    cfg = ras(model=qwen, device=device, window_s=4.0, hop_s=4.0, **video)
    have_media = all(importlib.util.find_spec(m) for m in ("av", "zarr"))
    items: list[Any] = []
    requests: list[VideoPrompt] = []
    engine = TransformersVideoLM(cfg.vlm_settings())
    if have_media:
        from affectcache.extractors.core.records import MediaItem
        from affectcache.extractors.engines.video_prompting import item_segments
        from affectcache.extractors.testing.synthetic import generate_demo_corpus

        clips = generate_demo_corpus(out / "media")[: (8 if on_gpu else 3)]
        items = [MediaItem(video_id=c.video_id, path=str(c.path)) for c in clips]
        for it in items:
            segments, _ = item_segments(it, cfg, engine.geometry)
            requests += [VideoPrompt(key=f"{it.video_id}#{s.index}", prompt=cfg.chat(), frames=s.frames,
                                     fps=cfg.fps) for s in segments if len(s.frames)]
    else:
        h, w = engine.geometry.frame_size(480, 640, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        rng = np.random.default_rng(0)
        requests = [VideoPrompt(key=f"r{i}", prompt=cfg.chat(), fps=cfg.fps,
                                frames=rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8)) for i in range(16)]
    prepared = [engine.inputs(r) for r in requests]
    height, width = requests[0].frames.shape[1:3]
    vtps = engine.geometry.visual_tokens_per_second(cfg.fps, height, width)

    def bare() -> int:
        n_new = 0
        with torch.inference_mode():
            for inputs in prepared:
                ids = engine.model.generate(**inputs, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                            pad_token_id=engine.pad_id)
                n_new += int(ids.shape[1] - inputs["input_ids"].shape[1])
        if on_gpu:
            torch.cuda.synchronize()
        return n_new

    n_tokens = bare()  # warm-up; greedy, so every run makes the same tokens
    t_bare = best_of(bare, repeat)
    t_engine = best_of(lambda: engine.generate(requests, max_new_tokens=cfg.max_new_tokens), repeat)
    label = f"behaviour-caption ({scale} Qwen2.5-VL, {where})"
    rows = [{"benchmark": f"{label}: bare model.generate (baseline)", "seconds": t_bare, "ratio": 1.0,
             "note": f"{len(requests)} segments, {n_tokens / t_bare:.1f} new tok/s, "
                     f"{vtps:.0f} visual tok per video-s at {height}x{width} px, {cfg.fps:g} fps"},
            {"benchmark": f"{label}: engine generate (inputs built per call)", "seconds": t_engine,
             "ratio": t_engine / t_bare, "note": f"{n_tokens / t_engine:.1f} new tok/s"}]
    if items:
        from affectcache.store.manifest import Manifest
        from affectcache.store.runner import build

        def run_build() -> None:
            target = out / "language_caption.zarr"
            shutil.rmtree(target, ignore_errors=True)
            build("behaviour-caption", Manifest(items=tuple(items)), target, config=cfg, workers=0)

        t_build = best_of(run_build, repeat)
        rows.append({"benchmark": f"{label}: caption pass through build (in-process)", "seconds": t_build,
                     "ratio": t_build / t_bare,
                     "note": f"{n_tokens / t_build:.1f} new tok/s incl. decode+write"})
    rows += _bench_whisper(whisper_path, device, items, repeat, f"transcript-whisper ({scale}, {where})")
    return rows


def _bench_whisper(model: str, device: str, items: list[Any], repeat: int,
                   label: str) -> list[dict[str, Any]]:
    import torch

    from affectcache.extractors.engines.speech import (
        SAMPLE_RATE,
        RecognizerSettings,
        TransformersWhisperRecognizer,
    )

    rec = TransformersWhisperRecognizer(RecognizerSettings(model=model, device=device, language="en",
                                                           max_new_tokens=32, batch_size=16))
    if items:
        from affectcache.extractors.media.audio import decode_audio

        waves = [decode_audio(it.path, sample_rate=SAMPLE_RATE) for it in items]
    else:
        rng = np.random.default_rng(0)
        waves = [(0.1 * rng.standard_normal(30 * SAMPLE_RATE)).astype(np.float32) for _ in range(16)]
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE

    def bare() -> None:
        feats = rec.processor.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            rec.model.generate(feats["input_features"].to(rec.device, rec.dtype), language="en",
                               return_timestamps=True, max_new_tokens=32, do_sample=False)
        if device == "cuda":
            torch.cuda.synchronize()

    bare()
    t_bare = best_of(bare, repeat)
    t_rec = best_of(lambda: rec.transcribe(waves), repeat)
    return [{"benchmark": f"{label}: bare feature extraction + generate (baseline)", "seconds": t_bare,
             "ratio": 1.0, "note": f"{len(waves)} items, {audio_s / t_bare:.0f}x real time"},
            {"benchmark": f"{label}: recogniser (no-speech, logprobs, segments)", "seconds": t_rec,
             "ratio": t_rec / t_bare, "note": f"{audio_s / t_rec:.0f}x real time"}]


def _face_bench_clips(root: Path, n: int, duration_s: float) -> list[Any]:
    """``n`` clips (384x288, 25 fps) with scikit-image's astronaut face sliding across a grey background."""
    from skimage import data

    from affectcache.extractors.core.records import MediaItem
    from affectcache.extractors.testing.synthetic import write_clip

    patch = np.ascontiguousarray(data.astronaut()[30:230, 120:330])
    items = []
    for k in range(n):
        def frame(i: int, t: float, k: int = k) -> np.ndarray:
            img = np.full((288, 384, 3), 100 + 10 * k, dtype=np.uint8)
            x = 10 + int(20 * t) % 150
            img[40:240, x: x + 210] = patch
            return img

        path = root / f"face{k}.mp4"
        if not path.exists():
            write_clip(path, duration_s=duration_s, fps=25.0, size=(384, 288), frame_fn=frame)
        items.append(MediaItem(video_id=f"face{k}", path=str(path)))
    return items


def _real_size_visual_models(root: Path) -> tuple[Path, Path]:
    """CLIP ViT-B/16 and GRADA (EfficientNet-B1) at real size with random weights (no download)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from affectcache.extractors.testing.visual_standins import tiny_grada_checkpoint

    clip = root / "clip-b16"
    if not (clip / "config.json").exists():
        CLIPModel(CLIPConfig(vision_config={"patch_size": 16})).save_pretrained(clip)
        CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
                              ).save_pretrained(clip)
    return clip, tiny_grada_checkpoint(root / "grada-b1.safetensors", width=1.0, depth=1.1)


def bench_visual(out: Path, repeat: int, gpu: bool = False) -> list[dict[str, Any]]:
    """Visual extractors: ``face``/``clip-face``/``clip-scene``/``grada-face`` through ``build``
    (in-process) vs the bare stages on the same frames: decode, MediaPipe detection, model forward on the
    same crops/frames; crops (frames)/s per stage. CPU: tiny CLIP and scaled-down GRADA; ``gpu``: real-size
    CLIP ViT-B/16 and EfficientNet-B1 GRADA with random weights on CUDA (only the model stages run where
    PyAV, zarr or MediaPipe are missing)."""
    import importlib.util

    import torch

    from affectcache.extractors.testing.visual_standins import tiny_clip, tiny_grada_checkpoint
    from affectcache.store.runner import make_extractor

    on_gpu = gpu and torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    where = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    root = out / "visual"
    root.mkdir(parents=True, exist_ok=True)
    if on_gpu:
        clip_path, grada_path = _real_size_visual_models(root)
        grada_cfg: dict[str, Any] = {"weights": str(grada_path)}
        batch = 64
    else:
        clip_path = tiny_clip(root / "tiny-clip", patch_size=16)
        grada_cfg = {"weights": str(tiny_grada_checkpoint(root / "grada.safetensors")), "trunk_width": 0.25,
                     "trunk_depth": 0.1, "image_size": 64}
        batch = 32
    scale = "real-size random" if on_gpu else "tiny"
    clip_face = make_extractor("clip-face", {"model": str(clip_path), "device": device, "batch_size": batch})
    grada = make_extractor("grada-face", {**grada_cfg, "device": device, "batch_size": batch})
    rows: list[dict[str, Any]] = []
    have_media = all(importlib.util.find_spec(m) for m in ("av", "zarr", "mediapipe", "skimage"))
    rng = np.random.default_rng(0)
    if not have_media:  # GPU image: model stages only, on random crops
        crops = [rng.integers(0, 255, (160, 160, 3), dtype=np.uint8) for _ in range(8 * batch)]
        for label, ext in (("clip-face", clip_face), ("grada-face", grada)):
            rows += _bench_embedder(ext, crops, batch, repeat, f"{label} ({scale}, {where})")
        return rows

    from affectcache.extractors.common.assets import fetch_asset
    from affectcache.extractors.common.face_crops import face_row_frames, row_crops
    from affectcache.extractors.media.frame_sampling import sample_frames
    from affectcache.extractors.visual.face import FaceLayout
    from affectcache.store.manifest import Manifest
    from affectcache.store.runner import build
    from affectcache.store.zarr_store import FeatureStore

    items = _face_bench_clips(root / "media", 4, 8.0)
    face = make_extractor("face", {"fps": 5.0})
    fetch_asset(face.config.detector_asset)
    n_frames = sum(1 for it in items for _ in sample_frames(it, face.config))

    def bare_detect() -> None:
        with face.model.open() as faces_on:
            for it in items:
                for vf in sample_frames(it, face.config):
                    faces_on.detect(vf.rgb)

    t_decode = best_of(lambda: [None for it in items for _ in sample_frames(it, face.config)], repeat)
    t_detect = best_of(bare_detect, repeat)
    store = out / "visual.zarr"

    def build_face() -> None:
        shutil.rmtree(store, ignore_errors=True)
        build("face", Manifest(items=tuple(items)), store, config=face.config, workers=0)

    t_face = best_of(build_face, repeat)
    label = f"face (MediaPipe, CPU, {len(items)} clips, {n_frames} frames)"
    rows += [{"benchmark": f"{label}: bare decode (baseline)", "seconds": t_decode, "ratio": 1.0,
              "note": f"{n_frames / t_decode:.0f} frames/s"},
             {"benchmark": f"{label}: bare decode + detection", "seconds": t_detect,
              "ratio": t_detect / t_decode, "note": f"{n_frames / t_detect:.0f} frames/s"},
             {"benchmark": f"{label}: face pass through build", "seconds": t_face, "ratio": t_face / t_detect,
              "note": f"{n_frames / t_face:.0f} frames/s; ratio vs bare decode + detection"}]
    fs = FeatureStore(store)
    faces = {it.video_id: fs.read("face", it.video_id) for it in items}
    crops = []
    for it in items:
        layout = FaceLayout.from_attrs(dict(faces[it.video_id].attrs))
        values = faces[it.video_id].values
        crops += [row_crops(vf.rgb, values[r], layout, "largest", margin=0.1, square=True)[0]
                  for r, vf in face_row_frames(it, faces[it.video_id], 640)]
    for name, ext in (("clip-face", clip_face), ("grada-face", grada)):
        lab = f"{name} ({scale}, {where})"
        part = _bench_embedder(ext, crops, batch, repeat, lab)

        def build_it(name: str = name, ext: Any = ext) -> None:
            build(name, Manifest(items=tuple(items)), fs, config=ext.config, workers=0, overwrite=True)

        t_build = best_of(build_it, repeat)
        bare = part[0]["seconds"] + t_decode
        part.append({"benchmark": f"{lab}: pass through build (decode, crops, forward, write)",
                     "seconds": t_build, "ratio": t_build / bare,
                     "note": f"{len(crops) / t_build:.1f} crops/s; ratio vs bare decode + bare forward"})
        rows += part
    scene = make_extractor("clip-scene", {"model": str(clip_path), "device": device, "batch_size": batch,
                                          "fps": 2.0})
    rows += bench_together(f"visual ({scale}, {where})",
                           {"face": face.config, "clip-face": clip_face.config, "grada-face": grada.config,
                            "clip-scene": scene.config}, items, out, repeat)
    return rows


def _bench_embedder(ext: Any, crops: list[np.ndarray], batch: int, repeat: int,
                    label: str) -> list[dict[str, Any]]:
    """Bare model forward on preprocessed batches vs the extractor's embed path (preprocessing included)."""
    import torch

    loaded = ext.model
    if hasattr(loaded, "processor"):
        inputs = [loaded.processor(images=crops[i: i + batch], return_tensors="pt")["pixel_values"]
                  for i in range(0, len(crops), batch)]

        def forward(x: Any) -> Any:
            return loaded.model.get_image_features(pixel_values=x)
    else:
        from affectcache.extractors.visual.grada_face import grada_input

        inputs = [torch.from_numpy(np.stack([grada_input(c, loaded.size) for c in crops[i: i + batch]]))
                  for i in range(0, len(crops), batch)]

        def forward(x: Any) -> Any:
            return loaded.model(x)

    def bare() -> None:
        with torch.inference_mode():
            for x in inputs:
                forward(x.to(loaded.device, loaded.dtype))
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()

    def ours() -> None:
        for i in range(0, len(crops), batch):
            ext._embed(crops[i: i + batch])

    bare()  # warm-up
    t_bare, t_ours = best_of(bare, repeat), best_of(ours, repeat)
    n = len(crops)
    return [{"benchmark": f"{label}: bare model forward on preprocessed crops (baseline)", "seconds": t_bare,
             "ratio": 1.0, "note": f"{n} crops, {n / t_bare:.1f} crops/s"},
            {"benchmark": f"{label}: extractor embed (preprocess + forward)", "seconds": t_ours,
             "ratio": t_ours / t_bare, "note": f"{n / t_ours:.1f} crops/s"}]


def bench_cli_help(repeat: int) -> list[dict[str, Any]]:
    exe = Path(sys.executable).parent / "affectcache"
    bare = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat)
    helped = best_of(lambda: subprocess.run([str(exe), "--help"], check=True, capture_output=True), repeat)
    return [{"benchmark": "python -c pass (baseline)", "seconds": bare, "ratio": 1.0, "note": ""},
            {"benchmark": "affectcache --help", "seconds": helped, "ratio": helped / bare, "note": ""}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true", help="skip the 10-minute clip")
    parser.add_argument("--gpu", action="store_true",
                        help="audio models at real size on CUDA (random weights)")
    parser.add_argument("--scale", action="store_true",
                        help="store-at-scale scenarios at full size (20k entries, 600 x 5k x 256)")
    parser.add_argument("--store-only", action="store_true", help="only the store benchmarks")
    parser.add_argument("--trainer-videos", type=int, default=600,
                        help="videos of the Aff-Wild2-like input of the trainer view benchmark")
    parser.add_argument("--only", default="",
                        help=f"comma-separated sections to run (default: all): {', '.join(SECTIONS)}")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown --only section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sections: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "cli": lambda: bench_cli_help(args.repeat),
        "mfcc": lambda: bench_mfcc_runner(args.out, args.repeat),
        "store": lambda: bench_store_io(args.out, args.repeat),
        "store-scale": lambda: bench_store_scale(args.out, args.repeat, scale=args.scale),
        "audio": lambda: bench_audio(args.out, args.repeat, gpu=args.gpu),
        "language": lambda: bench_language(args.out, args.repeat, gpu=args.gpu),
        "visual": lambda: bench_visual(args.out, args.repeat, gpu=args.gpu),
        "trainers": lambda: bench_trainers(args.repeat, gpu=args.gpu, n_videos=args.trainer_videos),
        "search": lambda: bench_search(args.out, gpu=args.gpu),
        "rss": lambda: bench_rss(args.out),
        "gpu-heads": lambda: bench_gpu_heads(args.repeat),  # also part of "trainers" with --gpu
    }
    assert tuple(sections) == SECTIONS
    if only:
        chosen = only
    elif args.store_only:
        chosen = ["store", "store-scale"]
    else:
        chosen = [s for s in SECTIONS if not ((s == "rss" and args.skip_rss) or s == "gpu-heads")]
    results: list[dict[str, Any]] = []
    for name in chosen:
        logger.warning("benchmark section %s ...", name)
        results += sections[name]()
        # Written after every section so a run stopped at a time limit keeps what it measured.
        (args.out / "results.json").write_text(json.dumps({"results": results, "partial": True}, indent=2))
    width = max(len(r["benchmark"]) for r in results)
    lines = [f"{'benchmark':<{width}}  {'seconds':>9}  {'ratio':>8}  note", "-" * (width + 40)]
    for r in results:
        secs = "" if r["seconds"] != r["seconds"] else f"{r['seconds']:.3f}"
        lines.append(f"{r['benchmark']:<{width}}  {secs:>9}  {r['ratio']:>8.2f}  {r['note']}")
    sys.stdout.write("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"results": results, "python": sys.version, "driver_peak_rss_kb_at_start": peak_self}, indent=2))


if __name__ == "__main__":
    main()
