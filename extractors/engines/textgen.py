"""Text generation backends behind one Protocol (LLM lexicon generation, later captioning).

``transformers`` runs any local causal LM on CPU or GPU (greedy decoding, so answers are reproducible
on one machine); ``vllm`` is for GPU hosts only and is imported lazily (it cannot be installed on the CPU
machines). Backends are looked up by name in :data:`TEXT_GENERATORS`; tests pass their own fakes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from affectcache.extractors.core.config import choose_backend
from affectcache.extractors.core.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)


class TextGenerator(Protocol):
    """Generates one completion per prompt."""

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int) -> list[str]:
        """Greedy completions (only the new text) of each prompt."""
        ...

    def describe(self) -> dict[str, Any]:
        """Backend, model and decoding settings, for the provenance of what was generated."""
        ...


class TransformersTextGenerator:
    """A local Hugging Face causal LM (``AutoModelForCausalLM``), greedy decoding.

    The prompt goes through the tokenizer's chat template when it has one (instruction-tuned models),
    else it is used as plain text.
    """

    def __init__(self, model_path: str, *, device: str = "cpu") -> None:
        self.model_path = model_path
        self.device = device
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True)
            model.to(self.device)
            model.eval()
            self._loaded = (tokenizer, model)
        return self._loaded

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int) -> list[str]:
        import torch

        tokenizer, model = self._load()
        answers = []
        for prompt in prompts:
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                     add_generation_prompt=True)
            else:
                text = prompt
            inputs = tokenizer(text, return_tensors="pt").to(self.device)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=pad)
            answers.append(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
        return answers

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.model_path, "decoding": "greedy"}


class VLLMTextGenerator:
    """vLLM offline inference (GPU hosts only; vllm is imported on first use)."""

    def __init__(self, model_path: str, *, device: str = "cuda") -> None:
        self.model_path = model_path
        self.device = device
        self._llm: Any = None

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int) -> list[str]:
        try:
            from vllm import LLM, SamplingParams  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError("the vllm backend needs the `vlm` extra on a GPU host (pip install "
                              "'affectcache[vlm]'); use --backend transformers on CPU") from exc
        if self._llm is None:
            self._llm = LLM(model=self.model_path)
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        messages = [[{"role": "user", "content": p}] for p in prompts]
        outputs = self._llm.chat(messages, params)
        return [str(o.outputs[0].text) for o in outputs]

    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model_path, "decoding": "greedy (temperature 0)"}


TEXT_GENERATORS: dict[str, Callable[..., TextGenerator]] = {
    "transformers": TransformersTextGenerator,
    "vllm": VLLMTextGenerator,
}
"""Backend name -> constructor ``(model_path, *, device)``."""


def make_text_generator(backend: str, model_path: str, *, device: str = "cpu") -> TextGenerator:
    """A text generator by backend name; :class:`ConfigError` listing the backends otherwise."""
    return choose_backend(TEXT_GENERATORS, backend, "text-generation")(model_path, device=device)
