"""MCDM: SCD-MMPSR's multimodal fusion model for emotion, personality and ambivalence/hesitancy.

One clip-level vector per modality (mean‖std of its rows) goes through, as in the authors'
``MultiModalFusionModel_v2`` (``src/models/models.py``):

1. a modality projector ``Linear → ReLU → Dropout`` then AdapterFusion ``LN(x + up(Dropout(ReLU(down x))))``;
   the projected modalities are the nodes ``X [B, N, H]``;
2. a graph layer over the modality nodes ⇒ ``ctx_mods`` (MCDM-2: unitary GCN; MCDM-1: graph attention);
3. per task ``t`` with ``C_t`` outputs: a predictor ``Projector(H→C_t) + AdapterFusion(C_t)`` on ``X``
   (per-modality task logits), a prediction projector back to ``H`` and a task graph layer ⇒ ``ctx_preds``;
4. query cross-attention (``Q = ctx_preds``, ``K = V = ctx_mods``), mean over nodes ⇒ ``task_repr``;
5. a head ``Projector(H→O) → Linear(O→C_t)`` (sigmoid for personality);
6. a guide bank: cosine of ``task_repr`` to ``C_t`` learnable prototypes, averaged with the head
   (personality: ``(sigmoid head + sigmoid(sim)) / 2``).

Outputs: ``emotion`` logits ``[B, 7]`` (Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise),
``personality`` scores ``[B, 5]`` in ``[0, 1]`` (openness, conscientiousness, extraversion, agreeableness,
non-neuroticism), ``ah`` logits ``[B, 2]`` (no A/H, A/H). 9,753,998 parameters at the default dims.

The ablation switches are config fields and follow the authors' code, including its choices: without
the graph both graph layers are identities; without task projectors there are no predictors, no
prediction projectors and no task graph (``ctx_preds = ctx_mods``); without attention ``task_repr`` is the
node mean of ``ctx_preds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from affectcache.extractors.core.config import Config
from affectcache.trainers.mcdm.graph import AttentionGraphLayer, UnitaryGraphLayer

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

Task = Literal["emotion", "personality", "ah"]
TASKS: tuple[Task, ...] = ("emotion", "personality", "ah")
"""The three tasks, in the authors' order."""
EMOTION_CLASSES: tuple[str, ...] = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
"""MOSEI emotion outputs in the authors' column order (``dataset_multimodal.py``)."""
PERSONALITY_TRAITS: tuple[str, ...] = ("openness", "conscientiousness", "extraversion", "agreeableness",
                                       "non-neuroticism")
"""FIv2 personality outputs in the authors' column order."""
AH_CLASSES: tuple[str, ...] = ("no A-H", "A-H")
"""BAH outputs: index 1 = ambivalence/hesitancy present."""
MODALITIES: tuple[str, ...] = ("face", "audio", "text", "behaviour")
"""Default input modalities (the paper's Exp-6): CLIP B/32 face crops, CLAP seq, emotion-DistilRoBERTa
token states of the transcript and of the behaviour caption."""


@dataclass(frozen=True, kw_only=True)
class MCDMConfig(Config):
    """MCDM architecture and ablation switches (defaults: MCDM-2 as in the authors' config.toml)."""

    modalities: tuple[str, ...] = MODALITIES
    """Input modality names, one graph node each, in node order."""

    input_dims: tuple[int, ...] = (1024, 1536, 1536, 1536)
    """Width of each modality's clip vector (mean‖std: twice the row width), parallel to ``modalities``."""

    hidden_dim: int = 512
    """``H``: width of the modality nodes, graph layers, attention and task representations."""

    out_dim: int = 512
    """``O``: width of each head's hidden projector."""

    num_heads: int = 8
    """Heads of the query cross-attention (must divide ``hidden_dim``)."""

    dropout: float = 0.15
    """Dropout of projectors, adapters, attention and (MCDM-1) graph attention."""

    graph: Literal["unitary", "attention"] = "unitary"
    """Graph layer kind: ``unitary`` (MCDM-2, the authors' ``GraphAttentionLayer_V2``) or ``attention``
    (MCDM-1, vanilla graph attention)."""

    graph_dropout: float = 0.2
    """Dropout after the unitary graph layer's ReLU (the authors' layer ignores the model dropout and
    uses 0.2)."""

    taylor_terms: int = 10
    """Terms of the unitary layer's Taylor series of ``exp(i Â)`` after the identity."""

    emotion_classes: int = 7
    """Emotion outputs (the authors hard-code 7; 8 with MOSEI's "Other" gives the paper's 9.756 M)."""

    personality_traits: int = 5
    """Personality outputs."""

    ah_classes: int = 2
    """Ambivalence/hesitancy outputs."""

    use_graph: bool = True
    """Ablation: graph layers on (else identities)."""

    use_attention: bool = True
    """Ablation: query cross-attention on (else the node mean of ``ctx_preds``)."""

    use_guidebank: bool = True
    """Ablation: average the heads with the guide-bank similarities."""

    use_task_projectors: bool = True
    """Ablation: per-task predictors, prediction projectors and task graphs (else
    ``ctx_preds = ctx_mods``)."""

    disabled_modalities: tuple[str, ...] = ()
    """Ablation: modalities left out (no projector; ignored when present in a batch)."""

    active_tasks: tuple[str, ...] = TASKS
    """Ablation: tasks with a branch and an output."""

    def validate(self) -> list[str]:
        """Every cross-field problem."""
        problems: list[str] = []
        if len(self.modalities) != len(self.input_dims):
            problems.append(f"modalities ({len(self.modalities)}) and input_dims ({len(self.input_dims)}) "
                            "must have the same length")
        if len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities must be distinct, got {list(self.modalities)}")
        if any(d < 1 for d in self.input_dims):
            problems.append(f"input_dims must be >= 1, got {list(self.input_dims)}")
        unknown = sorted(set(self.disabled_modalities) - set(self.modalities))
        if unknown:
            problems.append(f"disabled_modalities {unknown} are not among modalities {list(self.modalities)}")
        if not set(self.modalities) - set(self.disabled_modalities):
            problems.append("every modality is disabled: nothing to fuse")
        bad_tasks = sorted(set(self.active_tasks) - set(TASKS))
        if bad_tasks:
            problems.append(f"active_tasks {bad_tasks} unknown; tasks: {list(TASKS)}")
        if not self.active_tasks or len(set(self.active_tasks)) != len(self.active_tasks):
            problems.append(f"active_tasks must be distinct and non-empty, got {list(self.active_tasks)}")
        if self.hidden_dim < 2 or self.out_dim < 1:
            problems.append("need hidden_dim >= 2 and out_dim >= 1")
        if self.graph == "unitary" and self.hidden_dim % 2:
            problems.append(f"the unitary graph needs an even hidden_dim, got {self.hidden_dim}")
        if self.num_heads < 1 or self.hidden_dim % self.num_heads:
            problems.append(f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})")
        if not (0 <= self.dropout < 1 and 0 <= self.graph_dropout < 1):
            problems.append("dropouts must be in [0, 1)")
        if self.taylor_terms < 1:
            problems.append(f"taylor_terms must be >= 1, got {self.taylor_terms}")
        if min(self.emotion_classes, self.personality_traits, self.ah_classes) < 1:
            problems.append("every task needs at least one output")
        return problems

    def task_outputs(self, task: str) -> int:
        """``C_t``: outputs of one task."""
        return {"emotion": self.emotion_classes, "personality": self.personality_traits,
                "ah": self.ah_classes}[task]

    @property
    def enabled_modalities(self) -> tuple[str, ...]:
        """Modalities with a projector, in node order."""
        return tuple(m for m in self.modalities if m not in self.disabled_modalities)


def mcdm2(**changes: object) -> MCDMConfig:
    """MCDM-2 (the default): unitary graph layers + multi-head cross-attention."""
    return MCDMConfig().replace(**changes)


def mcdm1(**changes: object) -> MCDMConfig:
    """MCDM-1: vanilla graph attention + multi-head cross-attention (the authors' ``_v1``)."""
    return MCDMConfig(graph="attention").replace(**changes)


PRESETS = {"mcdm-2": mcdm2, "mcdm-1": mcdm1}
"""Named architecture presets."""


class Projector(nn.Sequential):  # type: ignore[misc]
    """``Linear → ReLU → Dropout``."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))


class AdapterFusion(nn.Module):  # type: ignore[misc]
    """``LayerNorm(x + Linear(d/2→d)(Dropout(ReLU(Linear(d→d/2)(x)))))`` (``d/2`` rounded down)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.adapter = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(dim // 2, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.adapter(x))


def _graph_layer(config: MCDMConfig) -> nn.Module:
    if not config.use_graph:
        return nn.Identity()
    if config.graph == "unitary":
        return UnitaryGraphLayer(config.hidden_dim, taylor_terms=config.taylor_terms,
                                 dropout=config.graph_dropout)
    return AttentionGraphLayer(config.hidden_dim, dropout=config.dropout)


class TaskBranch(nn.Module):  # type: ignore[misc]
    """Everything MCDM owns for one task (the non-shared parameters GradNorm leaves out)."""

    def __init__(self, config: MCDMConfig, task: str) -> None:
        super().__init__()
        h, c, p = config.hidden_dim, config.task_outputs(task), config.dropout
        self.task = task
        self.sigmoid_output = task == "personality"
        self.predictor: nn.Module | None = None
        self.prediction_projector: nn.Module | None = None
        self.graph: nn.Module = nn.Identity()
        if config.use_task_projectors:
            self.predictor = nn.Sequential(Projector(h, c, p), AdapterFusion(c, p))
            self.prediction_projector = nn.Sequential(Projector(c, h, p), AdapterFusion(h, p))
            self.graph = _graph_layer(config)
        self.cross_attention = (nn.MultiheadAttention(h, config.num_heads, dropout=p, batch_first=True)
                                if config.use_attention else None)
        self.head = nn.Sequential(Projector(h, config.out_dim, p), nn.Linear(config.out_dim, c))
        self.guides = nn.Parameter(torch.randn(c, h)) if config.use_guidebank else None

    def forward(self, nodes: torch.Tensor, ctx_mods: torch.Tensor) -> torch.Tensor:
        if self.predictor is not None and self.prediction_projector is not None:
            per_modality = self.predictor(nodes)                          # [B, N, C]
            ctx_preds = self.graph(self.prediction_projector(per_modality))  # [B, N, H]
        else:
            ctx_preds = ctx_mods
        if self.cross_attention is not None:
            attended, _ = self.cross_attention(ctx_preds, ctx_mods, ctx_mods, need_weights=False)
            task_repr = attended.mean(dim=1)
        else:
            task_repr = ctx_preds.mean(dim=1)
        out = self.head(task_repr)
        if self.sigmoid_output:
            out = torch.sigmoid(out)
        if self.guides is not None:
            sim = F.cosine_similarity(task_repr.unsqueeze(1), self.guides.unsqueeze(0), dim=-1)
            out = (out + (torch.sigmoid(sim) if self.sigmoid_output else sim)) / 2.0
        return out


class MCDM(nn.Module):  # type: ignore[misc]
    """The fusion model; ``forward(features)`` maps modality name → ``[B, d_m]`` to task → output.

    Modalities the batch lacks (or that are disabled) are left out of the graph; at least one enabled
    modality must be present.
    """

    def __init__(self, config: MCDMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MCDMConfig()
        config.check()
        dims = dict(zip(config.modalities, config.input_dims, strict=True))
        self.modality_projectors = nn.ModuleDict({
            m: nn.Sequential(Projector(dims[m], config.hidden_dim, config.dropout),
                             AdapterFusion(config.hidden_dim, config.dropout))
            for m in config.enabled_modalities})
        self.modality_graph = _graph_layer(config)
        self.tasks = nn.ModuleDict({t: TaskBranch(config, t) for t in config.active_tasks})

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        present = [m for m in self.config.enabled_modalities if m in features]
        if not present:
            raise ValueError(f"no enabled modality in the batch: got {sorted(features)}, "
                             f"the model takes {list(self.config.enabled_modalities)}")
        nodes = torch.stack([self.modality_projectors[m](features[m]) for m in present], dim=1)
        ctx_mods = self.modality_graph(nodes)
        return {task: branch(nodes, ctx_mods) for task, branch in self.tasks.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters no task owns (modality projectors and graph): GradNorm's ``∇_shared``."""
        yield from self.modality_projectors.parameters()
        yield from self.modality_graph.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters of one task's branch."""
        yield from self.tasks[task].parameters()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
