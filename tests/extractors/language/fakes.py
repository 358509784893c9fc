"""A fake vLLM engine recording what the ``vllm`` backend submits (vllm itself cannot run here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeSamplingParams:
    """Stands in for ``vllm.SamplingParams``: keeps the keyword arguments."""

    kwargs: dict[str, Any]

    @classmethod
    def make(cls, **kwargs: Any) -> FakeSamplingParams:
        return cls(kwargs=kwargs)


@dataclass
class _Completion:
    text: str
    finish_reason: str
    token_ids: list[int]


@dataclass
class _RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[_Completion]


@dataclass
class FakeLLM:
    """Answers each request with ``answer(request)``; raises ValueError (as vLLM does for a prompt over
    ``max_model_len``) when any request in a call has more than ``max_frames`` frames."""

    answers: dict[int, str] = field(default_factory=dict)
    """Index of a request within a call -> answer text override (to plant empty answers)."""
    max_frames: int = 1000
    calls: list[tuple[list[dict[str, Any]], Any]] = field(default_factory=list)

    def generate(self, inputs: list[dict[str, Any]], params: Any,
                 use_tqdm: bool = True) -> list[_RequestOutput]:
        self.calls.append((inputs, params))
        if any(len(i["multi_modal_data"]["video"][0]) > self.max_frames for i in inputs):
            raise ValueError("The decoder prompt is longer than the maximum model length")
        outs = []
        for index, request in enumerate(inputs):
            frames, _meta = request["multi_modal_data"]["video"]
            text = self.answers.get(index, f"  a person,\n {len(frames)} frames  ")
            limit = params.kwargs["max_tokens"]
            words = text.split()
            reason = "length" if len(words) > limit else "stop"
            outs.append(_RequestOutput(prompt_token_ids=list(range(10 + len(frames))),
                                       outputs=[_Completion(text=" ".join(words[:limit]) if reason == "length"
                                                            else text, finish_reason=reason,
                                                            token_ids=list(range(min(len(words), limit))))]))
        return outs
