"""``affectcache ablate mcdm``: the paper's Table 1 ablations as a plain loop over configs.

A grid is a list of (row label, config overrides) applied to one base config; each row is a full
:func:`~affectcache.trainers.mcdm.run.train_mcdm` run in its own folder (``<out>/<row slug>``, resumable),
and the whole table (every row's test figures in percent and its average rank) goes to
``<out>/results.md`` and ``results.csv``. :func:`table1_grid` is the paper's grid over the base config's
inputs (Exp-1/2 change the encoders, which is a different store, so they are not rows here):
MCDM-1, MCDM-2, and MCDM-2 without task projectors, graph layers, attention, the guide bank, each input,
each task. A YAML grid file (a mapping of row label → overrides) replaces it.

Rank: per figure column the rows are ranked (1 = best, ties averaged) and a row's rank is the mean over
the columns it has, as the paper's Friedman-style "Rank" column.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.extractors.core.errors import ConfigError
from affectcache.trainers.mcdm.model import TASKS
from affectcache.trainers.mcdm.run import TABLE_COLUMNS, table_row, train_mcdm, write_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from affectcache.trainers.mcdm.config import MCDMTrainConfig
    from affectcache.trainers.mcdm.run import Corpus

logger = logging.getLogger(__name__)

Grid = list[tuple[str, dict[str, Any]]]
TASK_NAMES = {"emotion": "ER", "personality": "PTR", "ah": "AHR"}
"""The paper's names of the tasks."""


def table1_grid(config: MCDMTrainConfig) -> Grid:
    """The paper's ablation rows over ``config``'s inputs and tasks."""
    grid: Grid = [("MCDM-1", {"graph": "attention"}), ("MCDM-2", {"graph": "unitary"}),
                  ("w/o task projectors", {"use_task_projectors": False}),
                  ("w/o graph", {"use_graph": False}), ("w/o attention", {"use_attention": False}),
                  ("w/o guide bank", {"use_guidebank": False})]
    for modality in config.enabled_modalities:
        if len(config.enabled_modalities) > 1:
            grid.append((f"w/o {modality}", {"disabled_modalities": [*config.disabled_modalities, modality]}))
    for task in TASKS:
        if task in config.active_tasks and len(config.active_tasks) > 1:
            grid.append((f"w/o {TASK_NAMES[task]} task",
                         {"active_tasks": [t for t in config.active_tasks if t != task]}))
    return grid


def read_grid(data: Any) -> Grid:
    """A grid from a YAML mapping of row label → overrides (refused with the reason otherwise)."""
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError("an ablation grid is a mapping of row label -> mapping of config overrides")
    return [(str(label), dict(overrides)) for label, overrides in data.items()]


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "row"


def average_ranks(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per row, its mean rank over the figure columns it has (1 = best; ties share the mean rank)."""
    from scipy.stats import rankdata

    ranks: list[list[float]] = [[] for _ in rows]
    for column, _ in TABLE_COLUMNS:
        present = [i for i, r in enumerate(rows) if r.get(column) is not None]
        if len(present) < 2:
            continue
        values = np.array([-float(rows[i][column]) for i in present])   # higher is better
        for i, rank in zip(present, rankdata(values), strict=True):
            ranks[i].append(float(rank))
    return [float(np.mean(r)) if r else float("nan") for r in ranks]


def run_ablation(name: str, corpora: Sequence[Corpus], out: Path, config: MCDMTrainConfig, *,
                 grid: Grid | None = None, meld: Corpus | None = None, overwrite: bool = False,
                 ) -> list[dict[str, Any]]:
    """Train every grid row (resuming finished ones) and write the whole table under ``out``."""
    rows: list[dict[str, Any]] = []
    slugs: set[str] = set()
    for label, overrides in grid if grid is not None else table1_grid(config):
        slug = _slug(label)
        if slug in slugs:
            raise ConfigError(f"two grid rows share the folder name {slug!r}; rename {label!r}")
        slugs.add(slug)
        row_config = config.replace(**overrides)
        logger.info("ablation row %r: %s", label, overrides)
        run = train_mcdm(name, corpora, out / slug, config=row_config, overwrite=overwrite,
                         meld=meld if "emotion" in row_config.active_tasks else None)
        rows.append(table_row(name, row_config, run.record["results"], label=label))
    for row, rank in zip(rows, average_ranks(rows), strict=True):
        row["rank"] = round(rank, 2)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out)
    return rows
