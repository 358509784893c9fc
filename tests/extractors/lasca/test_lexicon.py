"""Lexicons: the shipped files, answer validation, and generation through fake and real backends."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from affectcache.cli.main import app
from affectcache.extractors.engines.textgen import TransformersTextGenerator
from affectcache.extractors.lasca.lexicon import (
    LEXICON_INSTRUCTION,
    LexiconError,
    LexiconValidationError,
    available_lexicons,
    feature_name_label,
    generate_lexicon,
    lasca_feature_names,
    load_lexicon,
    parse_lexicon_answer,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

FEATURES = lasca_feature_names()


def test_paper_lexicon_has_the_published_labels_and_flags_the_filled_ones() -> None:
    lex = load_lexicon("lasca-paper")
    assert lex.ref == "lasca-paper@1"
    assert lex.missing(FEATURES) == []
    assert len(FEATURES) == 67
    # Spot checks against the paper's Tables 8 and 9.
    assert lex.label("Face_mouthSmileRight") == "right smile genuine positivity"
    assert lex.label("Face_browInnerUp") == "inner brows up sad vulnerability"
    assert lex.label("mfcc_0") == "high arousal energy"
    assert lex.label("mfcc_12") == "piercing tension"
    expected_filled = {"Face__neutral", "Face_eyeLookInLeft", "Face_eyeLookInRight", "Face_eyeLookOutLeft",
                       "Face_eyeLookOutRight", "Face_eyeLookUpLeft", "Face_eyeLookUpRight", "Face_mouthLeft",
                       "Face_mouthRight", "mfcc_13", "mfcc_14"}
    assert set(lex.filled) == expected_filled
    assert len([f for f in FEATURES if f.startswith("Face_") and f not in lex.filled]) == 43
    assert len([f for f in FEATURES if f.startswith("mfcc_") and f not in lex.filled]) == 13
    assert "fill" in lex.fill_rule.lower() or "label" in lex.fill_rule.lower()
    # The filled labels obey the generation rules (3-6 words, no punctuation).
    for feature in lex.filled:
        assert re.fullmatch(r"[a-z ]+", lex.label(feature))
        assert 3 <= len(lex.label(feature).split()) <= 6


def test_feature_name_lexicon_follows_its_rule() -> None:
    lex = load_lexicon("feature-name")
    assert {f: lex.label(f) for f in FEATURES} == {f: feature_name_label(f) for f in FEATURES}
    assert lex.label("Face_browDownLeft") == "brow down left"
    assert lex.label("mfcc_14") == "mfcc 14"
    assert lex.sha256 != load_lexicon("lasca-paper").sha256


def test_unknown_lexicon_or_version_lists_the_choices() -> None:
    with pytest.raises(LexiconError, match="available"):
        load_lexicon("nope")
    with pytest.raises(LexiconError, match=r"available versions: \[1\]"):
        load_lexicon("lasca-paper", 7)


def _good_answer(features: Sequence[str]) -> dict[str, str]:
    return {f: f"{feature_name_label(f)} calm interest".replace("mfcc", "tone band") for f in features}


def test_good_answers_are_accepted_as_python_or_json_in_a_fence() -> None:
    labels = _good_answer(FEATURES)
    assert parse_lexicon_answer(repr(labels), FEATURES) == labels
    assert parse_lexicon_answer("```json\n" + json.dumps(labels) + "\n```", FEATURES) == labels


def test_bad_answers_are_rejected_with_every_reason() -> None:
    labels: dict[str, Any] = _good_answer(FEATURES)
    del labels["mfcc_3"]
    labels["Face_jawOpen"] = "jaw open, surprise!"
    labels["Face_jawLeft"] = "jaw"
    labels["Face_jawRight"] = "one two three four five six seven"
    labels["Face_cheekPuff"] = 3
    labels["made_up"] = "a b c"
    with pytest.raises(LexiconValidationError) as info:
        parse_lexicon_answer(repr(labels), FEATURES)
    reasons = info.value.reasons
    assert any("not covered" in r and "mfcc_3" in r for r in reasons)
    assert any("unknown features" in r and "made_up" in r for r in reasons)
    assert any(r.startswith("Face_jawOpen: punctuation") for r in reasons)
    assert any(r.startswith("Face_jawLeft: 1 words") for r in reasons)
    assert any(r.startswith("Face_jawRight: 7 words") for r in reasons)
    assert any(r.startswith("Face_cheekPuff: value must be a string") for r in reasons)
    for bad in ("I cannot help with that.", "{'a': ", "['not', 'a', 'dict']", "{1, 2}"):
        with pytest.raises(LexiconValidationError):
            parse_lexicon_answer(bad, FEATURES)


class _FakeGenerator:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int) -> list[str]:
        self.prompts.extend(prompts)
        return [self.answer for _ in prompts]

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake"}


def test_generation_saves_new_versions_and_rejects_bad_answers(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFECTCACHE_HOME", str(tmp_path))
    features = FEATURES[:5]
    good = _FakeGenerator(repr(_good_answer(features)))
    first = generate_lexicon(good, name="my-llm", features=features)
    assert good.prompts[0].startswith(LEXICON_INSTRUCTION)
    assert all(f in good.prompts[0] for f in features)
    assert first.ref == "my-llm@1"
    assert first.path == tmp_path / "lexicons" / "my-llm.v1.json"
    assert first.source["backend"] == "fake"
    assert "prompt_sha256" in first.source
    second = generate_lexicon(good, name="my-llm", features=features)
    assert second.version == 2
    assert available_lexicons()["my-llm"] == [1, 2]
    assert load_lexicon("my-llm").version == 2
    assert load_lexicon("my-llm", 1).labels == first.labels
    with pytest.raises(LexiconValidationError):
        generate_lexicon(_FakeGenerator("{'Face__neutral': 'ok'}"), name="my-llm", features=features)
    assert available_lexicons()["my-llm"] == [1, 2]  # nothing saved
    with pytest.raises(LexiconError, match="shipped"):
        generate_lexicon(good, name="lasca-paper", features=features)


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Qwen2 causal LM with an in-memory byte-level vocabulary, saved locally."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|endoftext|>": 0}
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    config = Qwen2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    path = tmp_path_factory.mktemp("tiny-lm")
    import torch

    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_transformers_backend_runs_and_its_garbage_is_rejected(tiny_causal_lm: Path, tmp_path: Path) -> None:
    generator = TransformersTextGenerator(str(tiny_causal_lm))
    answer = generator.generate(["Label these features: Face_jawOpen"], max_new_tokens=12)[0]
    assert isinstance(answer, str)
    assert answer
    with pytest.raises(LexiconValidationError):
        generate_lexicon(generator, name="tiny", features=FEATURES[:3], max_new_tokens=12, directory=tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_cli_generate_refuses_a_bad_answer_with_exit_2(tiny_causal_lm: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["lexicon", "generate", "--model", str(tiny_causal_lm), "--name", "tiny",
                                 "--max-new-tokens", "8", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "lexicon answer rejected" in result.output
    listed = runner.invoke(app, ["lexicon", "list"])
    assert listed.exit_code == 0
    assert "lasca-paper" in listed.output
    assert "feature-name" in listed.output
    shown = runner.invoke(app, ["lexicon", "show", "lasca-paper"])
    assert json.loads(shown.output)["labels"]["mfcc_0"] == "high arousal energy"
