"""The offline demo: corpus → manifest → labels → every demo modality, idempotent, signal intact."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affectcache.store.pipelines.demo import demo_plan, run_demo
from affectcache.store.status import store_status

if TYPE_CHECKING:
    from pathlib import Path

    from affectcache.store.pipelines.demo import DemoResult

SMALL = {"n_clips": 3, "min_duration_s": 4.0, "max_duration_s": 6.0, "size": (96, 72)}


def test_demo_builds_everything_once_and_keeps_the_planted_signal(tmp_path: Path) -> None:
    result = run_demo(tmp_path, workers=0, extractors=["mfcc"], corpus=SMALL)
    fs = result.store
    assert result.manifest.ids() == ["demo_000", "demo_001", "demo_002"]
    assert fs.label_tracks() == ["arousal", "valence"]
    assert fs.videos("mfcc") == result.manifest.ids()
    rows = {r.name: r for r in store_status(fs, result.manifest)}
    assert rows["mfcc"].missing == 0
    assert rows["labels/arousal"].complete == 3
    assert not any(r.stale for r in rows.values())

    # The planted arousal drives loudness: per-second MFCC c0 (log energy) must follow it.
    c0, arousal = [], []
    for vid in result.manifest.ids():
        mfcc = fs.read("mfcc", vid)
        label = fs.read("labels/arousal", vid)
        assert mfcc.time_s is not None
        assert label.time_s is not None
        for second in range(int(label.time_s[-1])):
            in_mfcc = (mfcc.time_s >= second) & (mfcc.time_s < second + 1)
            in_label = (label.time_s >= second) & (label.time_s < second + 1)
            c0.append(float(mfcc.values[in_mfcc, 0].mean()))
            arousal.append(float(label.values[in_label].mean()))
    assert np.corrcoef(c0, arousal)[0, 1] > 0.6

    again = run_demo(tmp_path, workers=0, extractors=["mfcc"], corpus=SMALL)
    assert [len(r.written) for r in again.reports] == [0]
    assert [len(r.skipped) for r in again.reports] == [3]


def test_demo_plan_orders_requirements_first(tmp_path: Path) -> None:
    plan = demo_plan(tmp_path)
    names = [name for name, _ in plan]
    assert "mfcc" in names
    from affectcache.extractors import get_extractor_cls

    for i, (name, config) in enumerate(plan):
        for required in get_extractor_cls(name)(config).upstream_modalities():
            assert required in names[:i]


def test_demo_chain_runs_its_steps_in_order_after_the_build(tmp_path: Path) -> None:
    from affectcache.store.pipelines.demo import DemoStep, run_demo_chain

    seen: list[tuple[str, list[str]]] = []

    def step(name: str) -> DemoStep:
        def run(result: DemoResult) -> str:
            seen.append((name, result.store.videos("mfcc")))
            return f"{name} done"
        return DemoStep(name=name, run=run, next_command=f"affectcache {name} {{out}}")

    chain = run_demo_chain(tmp_path, [step("first"), step("second")], workers=0, extractors=["mfcc"],
                           corpus=SMALL)
    ids = chain.result.manifest.ids()
    assert seen == [("first", ids), ("second", ids)]  # each step sees the complete build
    assert chain.steps == (("first", "first done"), ("second", "second done"))
    assert chain.next_commands[1:] == (f"affectcache first {tmp_path.resolve()}",
                                       f"affectcache second {tmp_path.resolve()}")
    assert chain.next_commands[0].startswith("affectcache status -s ")
