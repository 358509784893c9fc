"""Vision-language engines for Qwen-VL video prompts: transformers (CPU/GPU) and vLLM (GPU hosts).

The text-only :class:`~affectcache.extractors.engines.textgen.TextGenerator` takes prompt strings;
video prompts also carry frames, their rate and the model's pixel geometry, and captions need the
finish reason and token counts, so vision-language generation has its own small Protocol here,
:class:`VideoTextGenerator`: ``generate(requests, max_new_tokens) -> [Generation]``, one result per
request in request order. A request that cannot run (too long for the context) comes back as a
:class:`Generation` with ``error`` set; the others still run. Backends are looked up by name in
:data:`VLM_BACKENDS` (tests register fakes there).

Frames reach the engines already sampled and resized (see :meth:`VisionGeometry.frame_size`): both
backends get ``(T, H, W, 3)`` uint8 arrays whose sides are multiples of ``patch_size * merge_size``, so
neither the HF video processor (which needs torchvision) nor vLLM's resizes again.

* ``transformers``: builds ``pixel_values_videos`` / ``video_grid_thw`` by hand (normalise, then the
  Qwen2-VL patchify permutation), expands the prompt's single video placeholder to one pad token per
  merged patch (Qwen3-VL: one ``<t seconds>`` block per temporal patch, as its processor does), and runs
  greedy ``generate`` one request at a time. :meth:`TransformersVideoLM.last_hidden_states` runs the same
  input through one forward pass for RAS-style embeddings.
* ``vllm``: offline ``vllm.LLM`` with every request of the call submitted at once (continuous batching);
  Qwen-VL video goes in as a ``(frames, metadata)`` tuple with ``do_sample_frames=False``. ``vllm`` is
  imported on first use only, so this module imports on machines without it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from affectcache.extractors.common.pretrained import (
    DtypeName,
    from_pretrained_kwargs,
    is_local,
    resolve_dtype,
)
from affectcache.extractors.core.config import choose_backend
from affectcache.extractors.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

VIDEO_PLACEHOLDER: Final = "<|vision_start|><|video_pad|><|vision_end|>"
"""Where the video goes in a prompt (once); engines expand it to the model's visual tokens."""
VIDEO_PAD: Final = "<|video_pad|>"

FinishReason = Literal["stop", "length", "error"]

_VIDEO_TOKEN_TYPE: Final = 2
"""``mm_token_type_ids`` value of video tokens (0 text, 1 image, 2 video) in transformers' processors."""

_CLIP_MEAN: Final = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD: Final = (0.26862954, 0.26130258, 0.27577711)
_DEFAULT_NORM: Final = {"qwen2_5_vl": (_CLIP_MEAN, _CLIP_STD), "qwen2_vl": (_CLIP_MEAN, _CLIP_STD),
                        "qwen3_vl": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
"""Pixel normalisation of each family's image processor, used when the checkpoint has no
``preprocessor_config.json``."""


def chat_prompt(instruction: str, *, system: str | None = None, with_video: bool = True) -> str:
    """A ChatML prompt (the Qwen-VL chat format) with the video before the instruction, ending where the
    assistant's answer starts."""
    parts = [f"<|im_start|>system\n{system}<|im_end|>\n"] if system else []
    video = VIDEO_PLACEHOLDER if with_video else ""
    parts.append(f"<|im_start|>user\n{video}{instruction}<|im_end|>\n<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(frozen=True, kw_only=True)
class VideoPrompt:
    """One request: a chat prompt holding :data:`VIDEO_PLACEHOLDER` once, and the frames it refers to."""

    key: str
    """Identifies the request in logs and errors (``video_id#segment``)."""
    prompt: str
    """The full chat-formatted prompt (see :func:`chat_prompt`)."""
    frames: npt.NDArray[np.uint8]
    """``(T, H, W, 3)`` RGB frames, already resized to the engine's geometry."""
    fps: float
    """Rate the frames were sampled at (frames per second of video)."""


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What the model answered to one request."""

    text: str
    """The generated text (new tokens only, special tokens removed); empty on error."""
    finish_reason: FinishReason
    """``stop`` (end of answer), ``length`` (cut at ``max_new_tokens``: truncated) or ``error``."""
    n_prompt_tokens: int
    """Tokens of the expanded prompt (text + visual); 0 when unknown."""
    n_new_tokens: int
    """Tokens generated."""
    error: str | None = None
    """Why the request could not run (e.g. longer than the context); None otherwise."""


@dataclass(frozen=True, kw_only=True)
class VisionGeometry:
    """Pixel geometry of a Qwen-VL vision tower."""

    model_type: str
    """``qwen2_5_vl``, ``qwen3_vl``, ..."""
    patch_size: int
    """Side of a vision patch in pixels (14 for Qwen2.5-VL, 16 for Qwen3-VL)."""
    merge_size: int
    """Patches merged per side into one LLM token (2)."""
    temporal_patch_size: int
    """Frames per temporal patch (2)."""
    mean: tuple[float, float, float]
    """Per-channel normalisation mean."""
    std: tuple[float, float, float]
    """Per-channel normalisation std."""

    @property
    def factor(self) -> int:
        """Pixels per LLM token side: frame sides are multiples of it."""
        return self.patch_size * self.merge_size

    def frame_size(self, height: int, width: int, *, min_pixels: int, max_pixels: int) -> tuple[int, int]:
        """``(height, width)`` a frame is resized to: multiples of :attr:`factor`, aspect kept, area within
        ``[min_pixels, max_pixels]`` (Qwen's ``smart_resize``)."""
        factor = self.factor
        h_bar = max(factor, round(height / factor) * factor)
        w_bar = max(factor, round(width / factor) * factor)
        if h_bar * w_bar > max_pixels:
            beta = math.sqrt(height * width / max_pixels)
            h_bar = max(factor, math.floor(height / beta / factor) * factor)
            w_bar = max(factor, math.floor(width / beta / factor) * factor)
        elif h_bar * w_bar < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return h_bar, w_bar

    def tokens_per_frame_group(self, height: int, width: int) -> int:
        """LLM tokens one temporal patch (``temporal_patch_size`` frames) of this size becomes."""
        return (height // self.factor) * (width // self.factor)

    def visual_tokens(self, n_frames: int, height: int, width: int) -> int:
        """LLM tokens of ``n_frames`` frames (padded to whole temporal patches)."""
        groups = math.ceil(n_frames / self.temporal_patch_size)
        return groups * self.tokens_per_frame_group(height, width)

    def visual_tokens_per_second(self, fps: float, height: int, width: int) -> float:
        """Visual tokens per second of video at ``fps`` (perf.md: fps/2 × (H/28)(W/28) for Qwen2.5-VL)."""
        return fps / self.temporal_patch_size * self.tokens_per_frame_group(height, width)


def read_geometry(model: str, revision: str | None = None) -> VisionGeometry:
    """The vision geometry of a Qwen-VL checkpoint, from its ``config.json`` (and the normalisation from
    ``preprocessor_config.json`` when present). Reads JSON only: no weights, no torch."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, **from_pretrained_kwargs(model, revision))
    vision = getattr(config, "vision_config", None)
    if vision is None:
        raise ConfigError(f"{model} is not a vision-language model (its config has no vision_config)")
    model_type = str(config.model_type)
    mean, std = _DEFAULT_NORM.get(model_type, (_CLIP_MEAN, _CLIP_STD))
    pre = _preprocessor_json(model, revision)
    if pre is not None and "image_mean" in pre and "image_std" in pre:
        mean, std = tuple(pre["image_mean"]), tuple(pre["image_std"])
    return VisionGeometry(model_type=model_type, patch_size=int(vision.patch_size),
                          merge_size=int(vision.spatial_merge_size),
                          temporal_patch_size=int(vision.temporal_patch_size),
                          mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                          std=(float(std[0]), float(std[1]), float(std[2])))


def _preprocessor_json(model: str, revision: str | None) -> dict[str, Any] | None:
    from transformers.utils import cached_file

    found = cached_file(model, "preprocessor_config.json", revision=revision,
                        _raise_exceptions_for_missing_entries=False,
                        **({"local_files_only": True} if is_local(model) else {}))
    if found is None:
        return None
    with open(found, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def patchify(frames: npt.NDArray[np.uint8], geometry: VisionGeometry) -> tuple[npt.NDArray[np.float32],
                                                                               tuple[int, int, int]]:
    """Qwen-VL ``pixel_values_videos`` of one clip and its ``(grid_t, grid_h, grid_w)``.

    Rescales to [0, 1], normalises, pads the frame count to whole temporal patches by repeating the last
    frame, and flattens patches in the order of the HF video processors' ``patchify``.
    """
    t, h, w, c = frames.shape
    p, m, tp = geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size
    if h % (p * m) or w % (p * m):
        raise ValueError(f"frames of {h}x{w} px are not multiples of {p * m}; resize with frame_size() first")
    scaled = frames.astype(np.float32) / 255.0
    normed = (scaled - np.asarray(geometry.mean, np.float32)) / np.asarray(geometry.std, np.float32)
    x: npt.NDArray[np.float32] = normed.transpose(0, 3, 1, 2).astype(np.float32)  # (T, C, H, W)
    if pad := -t % tp:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    gt, gh, gw = x.shape[0] // tp, h // p, w // p
    x = x.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * tp * p * p)), (gt, gh, gw)


class VideoTextGenerator(Protocol):
    """Generates one answer per video prompt, greedily."""

    geometry: VisionGeometry

    def generate(self, requests: Sequence[VideoPrompt], *, max_new_tokens: int) -> list[Generation]:
        """Answers in request order; a request that cannot run gets ``finish_reason="error"``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend, model and decoding settings, for provenance."""
        ...


@dataclass(frozen=True, kw_only=True)
class VLMSettings:
    """What every backend needs to build its engine."""

    model: str
    """Hub id or local folder of a Qwen-VL checkpoint."""
    revision: str | None = None
    """Hub revision (ignored for local folders)."""
    device: str = "cpu"
    """Torch device (transformers); vLLM always uses the GPU(s) it is given."""
    dtype: DtypeName = "auto"
    """Compute dtype."""
    max_model_len: int | None = None
    """Context length limit in tokens (prompt + answer); None = the model's own."""
    seed: int = 0
    """Seed of the engine (greedy decoding does not sample, but vLLM wants one)."""
    load_format: str = "auto"
    """vLLM weight loading: ``auto``, or ``dummy`` (random weights, for throughput runs)."""
    max_num_seqs: int | None = None
    """vLLM: most sequences decoded at once; None = its default."""


def _finish(new_ids: Sequence[int], eos_ids: set[int], max_new_tokens: int) -> FinishReason:
    if new_ids and new_ids[-1] in eos_ids:
        return "stop"
    return "length" if len(new_ids) >= max_new_tokens else "stop"


class TransformersVideoLM:
    """A Qwen-VL model through transformers (``AutoModelForImageTextToText``), greedy, one request at a
    time (batched decoding would pad prompts of different lengths and is left to vLLM)."""

    def __init__(self, settings: VLMSettings) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoTokenizer

        self.settings = settings
        kwargs = from_pretrained_kwargs(settings.model, settings.revision)
        self.geometry = read_geometry(settings.model, settings.revision)
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model, **kwargs)
        self.dtype = resolve_dtype(settings.dtype, settings.device)
        self.model = AutoModelForImageTextToText.from_pretrained(settings.model, dtype=self.dtype, **kwargs)
        self.model.to(torch.device(settings.device))
        self.model.eval()
        text_config = self.model.config.get_text_config()
        self.context = settings.max_model_len or int(text_config.max_position_embeddings)
        self.video_token_id = int(self.model.config.video_token_id)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.settings.model, "decoding": "greedy",
                "dtype": str(self.dtype).removeprefix("torch.")}

    def expand_prompt(self, prompt: str, grid: tuple[int, int, int], fps: float) -> str:
        """The prompt with its video placeholder expanded to the model's visual tokens."""
        if prompt.count(VIDEO_PLACEHOLDER) != 1:
            raise ValueError(f"a video prompt must hold {VIDEO_PLACEHOLDER!r} exactly once")
        gt, gh, gw = grid
        per_group = gh * gw // self.geometry.merge_size ** 2
        if self.geometry.model_type.startswith("qwen3"):
            # Qwen3-VL separates temporal patches with their time (the mean of the patch's frame times).
            tp = self.geometry.temporal_patch_size
            video = "".join(f"<{(g * tp + (tp - 1) / 2) / fps:.1f} seconds><|vision_start|>"
                            f"{VIDEO_PAD * per_group}<|vision_end|>" for g in range(gt))
        else:
            video = f"<|vision_start|>{VIDEO_PAD * (gt * per_group)}<|vision_end|>"
        return prompt.replace(VIDEO_PLACEHOLDER, video)

    def inputs(self, request: VideoPrompt | None, prompt: str | None = None) -> dict[str, Any]:
        """Model inputs of a video request (or of a text-only ``prompt``), on the model's device."""
        import torch

        device = torch.device(self.settings.device)
        if request is None:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
            return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
        pixels, grid = patchify(request.frames, self.geometry)
        text = self.expand_prompt(request.prompt, grid, request.fps)
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        out: dict[str, Any] = {
            "input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values_videos": torch.from_numpy(pixels).to(device, self.dtype),
            "video_grid_thw": torch.tensor([grid], dtype=torch.long, device=device),
            # Modality of every token (2 = video), what the processors return: without it transformers
            # silently falls back to 1-D positions instead of the multimodal (M-RoPE) ones.
            "mm_token_type_ids": ((ids == self.video_token_id).long() * _VIDEO_TOKEN_TYPE).to(device)}
        if self.geometry.model_type == "qwen2_5_vl":
            # Qwen2.5-VL's time positions count seconds per temporal patch.
            out["second_per_grid_ts"] = torch.tensor([self.geometry.temporal_patch_size / request.fps],
                                                     device=device)
        return out

    def generate(self, requests: Sequence[VideoPrompt], *, max_new_tokens: int) -> list[Generation]:
        import torch

        results = []
        for request in requests:
            inputs = self.inputs(request)
            n_prompt = int(inputs["input_ids"].shape[1])
            if n_prompt + max_new_tokens > self.context:
                results.append(Generation(text="", finish_reason="error", n_prompt_tokens=n_prompt,
                                          n_new_tokens=0, error=(
                                              f"{request.key}: prompt of {n_prompt} tokens + "
                                              f"{max_new_tokens} "
                                              f"new tokens exceeds the context of {self.context}; lower fps, "
                                              "max_frames or max_pixels")))
                continue
            with torch.inference_mode():
                out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.pad_id)
            new = [int(t) for t in out[0, n_prompt:].tolist()]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            results.append(Generation(text=text, finish_reason=_finish(new, self.eos_ids, max_new_tokens),
                                      n_prompt_tokens=n_prompt, n_new_tokens=len(new)))
        return results

    def last_hidden_states(self, request: VideoPrompt, *, text_only_prompt: str | None = None
                           ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """Last-layer hidden states ``(tokens, dim)`` of one forward pass over the request (or over
        ``text_only_prompt`` without video), and which tokens are visual."""
        import torch

        inputs = self.inputs(None, text_only_prompt) if text_only_prompt is not None else self.inputs(request)
        n = int(inputs["input_ids"].shape[1])
        if n > self.context:
            raise ContextOverflowError(f"{request.key}: input of {n} tokens exceeds the context of "
                                       f"{self.context}; lower fps, max_frames or max_pixels")
        with torch.inference_mode():
            out = self.model(**inputs, output_hidden_states=True, use_cache=False)
        states = out.hidden_states[-1][0].float().cpu().numpy()
        visual = (inputs["input_ids"][0] == self.video_token_id).cpu().numpy()
        return states, visual


class ContextOverflowError(ValueError):
    """An input is longer than the model's context."""


class VLLMVideoLM:
    """vLLM offline inference for Qwen-VL video prompts (GPU hosts only).

    ``llm`` and ``sampling_params`` let tests inject a fake engine; by default ``vllm.LLM`` and
    ``vllm.SamplingParams`` are imported and built on the first call.
    """

    def __init__(self, settings: VLMSettings, *, llm: Any = None,
                 sampling_params: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.geometry = read_geometry(settings.model, settings.revision)
        self._llm = llm
        self._sampling_params = sampling_params

    def _engine(self) -> tuple[Any, Callable[..., Any]]:
        if self._llm is not None and self._sampling_params is not None:
            return self._llm, self._sampling_params
        try:
            from vllm import LLM, SamplingParams  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError("backend 'vllm' needs the `vlm` extra on a GPU host (pip install "
                              "'affectcache[vlm]'); use backend 'transformers' on CPU") from exc
        if self._llm is None:
            s = self.settings
            kwargs: dict[str, Any] = {
                "model": s.model, "revision": s.revision, "dtype": "auto" if s.dtype == "auto" else s.dtype,
                "seed": s.seed, "load_format": s.load_format, "limit_mm_per_prompt": {"video": 1, "image": 0},
                # Frames arrive already resized to multiples of 28/32 within max_pixels: the processor's
                # own resize must leave them as they are.
                "mm_processor_kwargs": {"max_pixels": 1 << 30, "min_pixels": 1}}
            if s.max_model_len is not None:
                kwargs["max_model_len"] = s.max_model_len
            if s.max_num_seqs is not None:
                kwargs["max_num_seqs"] = s.max_num_seqs
            self._llm = LLM(**kwargs)
        if self._sampling_params is None:
            self._sampling_params = SamplingParams
        return self._llm, self._sampling_params

    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.settings.model, "decoding": "greedy (temperature 0)",
                "load_format": self.settings.load_format}

    @staticmethod
    def request(prompt: VideoPrompt) -> dict[str, Any]:
        """The vLLM input of one request: the prompt and the ``(frames, metadata)`` video tuple."""
        t = int(prompt.frames.shape[0])
        metadata = {"total_num_frames": t, "fps": float(prompt.fps), "duration": t / float(prompt.fps),
                    "frames_indices": list(range(t)), "video_backend": "pyav", "do_sample_frames": False}
        return {"prompt": prompt.prompt, "multi_modal_data": {"video": (prompt.frames, metadata)}}

    def generate(self, requests: Sequence[VideoPrompt], *, max_new_tokens: int) -> list[Generation]:
        if not requests:
            return []
        llm, sampling_params = self._engine()
        params = sampling_params(temperature=0.0, max_tokens=max_new_tokens, seed=self.settings.seed)
        inputs = [self.request(r) for r in requests]
        try:
            outputs = list(llm.generate(inputs, params, use_tqdm=False))
        except ValueError as exc:
            # vLLM validates the whole batch first (e.g. a prompt longer than max_model_len) and refuses it
            # all: resubmit one by one so only the offending requests fail.
            logger.warning("vllm refused a batch of %d requests (%s); retrying one by one", len(inputs), exc)
            return [self._one(llm, params, r, i) for r, i in zip(requests, inputs, strict=True)]
        return [self._result(o) for o in outputs]

    def _one(self, llm: Any, params: Any, request: VideoPrompt, vllm_input: dict[str, Any]) -> Generation:
        try:
            (output,) = llm.generate([vllm_input], params, use_tqdm=False)
        except ValueError as exc:
            return Generation(text="", finish_reason="error", n_prompt_tokens=0, n_new_tokens=0,
                              error=f"{request.key}: {exc}")
        return self._result(output)

    @staticmethod
    def _result(output: Any) -> Generation:
        first = output.outputs[0]
        reason: FinishReason = "length" if first.finish_reason == "length" else "stop"
        return Generation(text=str(first.text), finish_reason=reason,
                          n_prompt_tokens=len(output.prompt_token_ids or ()),
                          n_new_tokens=len(first.token_ids or ()))


VLM_BACKENDS: dict[str, Callable[[VLMSettings], VideoTextGenerator]] = {
    "transformers": TransformersVideoLM,
    "vllm": VLLMVideoLM,
}
"""Backend name -> engine constructor. Tests add fakes; configs name a key of this mapping."""


def make_video_lm(backend: str, settings: VLMSettings) -> VideoTextGenerator:
    """A video-text engine by backend name; :class:`ConfigError` listing the backends otherwise."""
    return choose_backend(VLM_BACKENDS, backend, "vision-language")(settings)
