"""MCDM: parameter counts at the authors' dims, ablation switches, outputs and parameter ownership."""

from __future__ import annotations

import pytest
import torch

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.mcdm.model import MCDM, MCDMConfig, count_parameters, mcdm1, mcdm2

# Breakdown of the default model (SCD-MMPSR MultiModalFusionModel_v2, methods.md §3.3).
DEFAULT_TOTAL = 9_753_998
CROSS_ATTENTION = 3_151_872
GRAPH_LAYERS = 1_050_624           # modality graph + 3 task graphs, 262,656 each
PREDICTORS = 7_296
PREDICTION_PROJECTORS = 800_512
GUIDE_BANKS = 7_168


def tiny(**changes: object) -> MCDMConfig:
    return MCDMConfig(input_dims=(6, 8, 10, 4), hidden_dim=16, out_dim=12, num_heads=4).replace(**changes)


def batch(config: MCDMConfig, size: int = 3) -> dict[str, torch.Tensor]:
    return {m: torch.randn(size, d) for m, d in zip(config.modalities, config.input_dims, strict=True)}


@pytest.fixture(scope="module")
def default_model() -> MCDM:
    torch.manual_seed(0)
    return MCDM()


def test_default_parameter_count_matches_the_authors(default_model: MCDM) -> None:
    assert count_parameters(default_model) == DEFAULT_TOTAL
    assert sum(p.numel() for p in default_model.shared_parameters()) == 3_941_376 + 262_656


@pytest.mark.parametrize(("changes", "expected"), [
    ({"emotion_classes": 8}, 9_756_074),                 # the paper's 9.756 M (one more output)
    ({"hidden_dim": 256, "out_dim": 256}, 3_173_134),
    ({"hidden_dim": 128, "out_dim": 128}, 1_160_654),
    ({"graph": "attention"}, DEFAULT_TOTAL + 4 * 512),   # MCDM-1: W plus a (2H) instead of W plus a bias (H)
    ({"use_attention": False}, DEFAULT_TOTAL - CROSS_ATTENTION),
    ({"use_graph": False}, DEFAULT_TOTAL - GRAPH_LAYERS),
    ({"use_guidebank": False}, DEFAULT_TOTAL - GUIDE_BANKS),
    ({"use_task_projectors": False},
     DEFAULT_TOTAL - PREDICTORS - PREDICTION_PROJECTORS - 3 * GRAPH_LAYERS // 4),
    ({"disabled_modalities": ("audio",)},
     DEFAULT_TOTAL - (1536 * 512 + 512) - (512 * 256 + 256) - (256 * 512 + 512) - 2 * 512),
])
def test_parameter_counts_of_variants(changes: dict[str, object], expected: int) -> None:
    assert count_parameters(MCDM(mcdm2(**changes))) == expected


def test_presets() -> None:
    assert mcdm2() == MCDMConfig()
    assert mcdm1().graph == "attention"
    assert mcdm1(dropout=0.1).dropout == 0.1


def test_outputs_and_their_ranges() -> None:
    torch.manual_seed(0)
    config = tiny()
    model = MCDM(config).eval()
    out = model(batch(config, 5))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"emotion": (5, 7), "personality": (5, 5), "ah": (5, 2)}
    assert out["personality"].min() >= 0
    assert out["personality"].max() <= 1


def test_guide_bank_averages_head_and_cosine_similarity() -> None:
    torch.manual_seed(0)
    config = tiny()
    model = MCDM(config).eval()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for task, branch in model.tasks.items():
        branch.head.register_forward_hook(
            lambda _m, inputs, output, task=task: seen.__setitem__(task, (inputs[0], output)))
    with torch.no_grad():
        out = model(batch(config))
    for task, (task_repr, head) in seen.items():
        guides = model.tasks[task].guides
        sim = torch.nn.functional.cosine_similarity(task_repr[:, None], guides[None], dim=-1)
        want = ((torch.sigmoid(head) + torch.sigmoid(sim)) / 2 if task == "personality" else (head + sim) / 2)
        torch.testing.assert_close(out[task], want)


def test_without_attention_the_task_repr_is_the_node_mean() -> None:
    torch.manual_seed(0)
    config = tiny(use_attention=False, use_guidebank=False, use_graph=False)
    model = MCDM(config).eval()
    x = batch(config)
    with torch.no_grad():
        nodes = torch.stack([model.modality_projectors[m](x[m]) for m in config.modalities], 1)
        branch = model.tasks["ah"]
        ctx_preds = branch.prediction_projector(branch.predictor(nodes))
        torch.testing.assert_close(model(x)["ah"], branch.head(ctx_preds.mean(1)))


def test_missing_and_disabled_modalities() -> None:
    torch.manual_seed(0)
    config = tiny(disabled_modalities=("text",))
    model = MCDM(config).eval()
    x = batch(config)
    with torch.no_grad():
        full = model(x)
        without_text = model({k: v for k, v in x.items() if k != "text"})
        without_audio = model({k: v for k, v in x.items() if k != "audio"})
    torch.testing.assert_close(full["emotion"], without_text["emotion"])   # text is ignored
    assert not torch.allclose(full["emotion"], without_audio["emotion"])  # 2 nodes instead of 3
    with pytest.raises(ValueError, match="no enabled modality"):
        model({"text": x["text"]})


def test_active_tasks_limit_the_outputs() -> None:
    model = MCDM(tiny(active_tasks=("personality",)))
    assert set(model(batch(model.config))) == {"personality"}


def test_shared_and_task_parameters_partition_the_model() -> None:
    model = MCDM(tiny())
    ids = [id(p) for p in model.shared_parameters()]
    for task in model.config.active_tasks:
        ids += [id(p) for p in model.task_parameters(task)]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        MCDMConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError, match="disabled_modalities"):
        MCDMConfig.from_dict({"disabled_modalities": ["smell"]})
    with pytest.raises(ConfigError, match="active_tasks"):
        MCDMConfig.from_dict({"active_tasks": ["valence"]})
    with pytest.raises(ConfigError, match="num_heads"):
        MCDMConfig.from_dict({"num_heads": 7})
    config = MCDMConfig.from_dict({"disabled_modalities": ["audio"], "graph": "attention"})
    assert MCDMConfig.from_dict(config.to_dict()) == config
