"""The demo's training steps (added to :func:`affectcache.store.pipelines.demo.run_demo_chain` by the CLI).

Each returns a :class:`~affectcache.store.pipelines.demo.DemoStep`; a trainer joins the demo by adding
its step to :func:`demo_training_steps`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from affectcache.store.pipelines.demo import DemoStep

if TYPE_CHECKING:
    from affectcache.store.pipelines.demo import DemoResult


def preference_step(label: str = "arousal", thresholds: tuple[float, ...] = (0.1, 0.2),
                    folds: int = 12) -> DemoStep:
    """The LaScA preference learner on the demo's planted label (needs the LaScA step before it)."""

    def run(result: DemoResult) -> str:
        from affectcache.trainers.preference import PreferenceConfig
        from affectcache.trainers.runs import train_preference

        run_dir = result.out_dir / "runs" / f"lasca-{label}"
        trained = train_preference(result.store, result.manifest, run_dir, config=PreferenceConfig(
            n_folds=folds), labels=[label], thresholds=list(thresholds))
        return f"{trained.run_dir / 'results.md'}"

    return DemoStep(name=f"train preference ({label})", run=run,
                    next_command=f"affectcache evaluate --run {{out}}/runs/lasca-{label} "
                                 "-s {out}/features.zarr -m {out}/demo.jsonl --split test")


def demo_training_steps() -> list[DemoStep]:
    """Every trainer's demo step, in order."""
    from affectcache.trainers.demo import va_demo_steps
    from affectcache.trainers.fusion.kookmin_demo import kookmin_demo_step

    return [preference_step(), *va_demo_steps(), kookmin_demo_step()]
