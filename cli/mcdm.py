"""``affectcache train mcdm|mcdm-1``, ``affectcache ablate mcdm`` and ``affectcache demo mcdm``:
SCD-MMPSR's multitask trainer.

Thin commands over :mod:`affectcache.trainers.mcdm.run`, ``.ablate`` and ``.demo``.
Corpora come as (store, manifest) pairs: ``-s S1 -m M1 -s S2 -m M2 ...`` (repeated options are paired
in order; Typer has no repeatable two-value option).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from affectcache.cli._app import ConfigOpt, SetOpt, app, cli_errors
from affectcache.cli.demo import EXTRA_DEMOS
from affectcache.cli.train import train_app
from affectcache.cli.va import OverwriteOpt, PresetOpt, _config

MCDM_MODELS: tuple[str, ...] = ("mcdm", "mcdm-1")
"""The multitask models with a train command here."""

StoresOpt = Annotated[list[str], typer.Option(
    "--store", "-s", help="Feature store of a corpus (repeatable; paired in order with --manifest).")]
ManifestsOpt = Annotated[list[Path], typer.Option(
    "--manifest", "-m", help="Manifest of a corpus (repeatable; paired in order with --store).")]
MeldOpt = Annotated[tuple[str, Path] | None, typer.Option(
    "--meld", help="MELD STORE MANIFEST: score its test split zero-shot through the emotion head.")]


def _pairs(stores: list[str], manifests: list[Path]):  # type: ignore[no-untyped-def]
    from affectcache.store.manifest import load_manifest
    from affectcache.store.zarr_store import FeatureStore

    if len(stores) != len(manifests):
        raise typer.BadParameter(f"got {len(stores)} --store and {len(manifests)} --manifest; give one "
                                 "manifest per store, in the same order")
    return [(FeatureStore(s, read_only=True), load_manifest(m))
            for s, m in zip(stores, manifests, strict=True)]


def _make_train_command(name: str) -> None:
    @train_app.command(name)
    @cli_errors
    def command(
        store: StoresOpt, manifest: ManifestsOpt, meld: MeldOpt = None,
        out: Annotated[Path | None, typer.Option(
            "--out", "-o", help="Run folder (default runs/NAME).")] = None,
        preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
        overwrite: OverwriteOpt = False,
    ) -> None:
        from affectcache.trainers.mcdm.run import train_mcdm

        corpora = _pairs(store, manifest)
        meld_pair = _pairs([meld[0]], [meld[1]])[0] if meld is not None else None
        run = train_mcdm(name, corpora, out or Path("runs") / name,
                         config=_config(name, preset, config, set_), meld=meld_pair, overwrite=overwrite,
                         progress=sys.stderr.isatty())
        _echo_results(run.record["results"])
        typer.echo(f"table: {run.run_dir / 'results.md'}")
        typer.echo(f"run: {run.run_dir}")

    command.__doc__ = (f"Train {name} multitask (with pseudo-labels and GradNorm) on the concatenated "
                       "corpora's train splits; select on val mean_all; score test with bootstrap CIs. "
                       f"Running it again resumes.\n\nExample:\n\n\b\naffectcache train {name} "
                       "-s a.zarr -m a.jsonl -s b.zarr -m b.jsonl")


def _echo_results(results: dict[str, dict[str, object]]) -> None:
    for split, figures in results.items():
        parts = []
        for key, value in figures.items():
            if isinstance(value, dict) and "value" in value:
                parts.append(f"{key} {value['value']:.3f}")
            elif isinstance(value, float):
                parts.append(f"{key} {value:.3f}")
        typer.echo(f"{split}: " + ", ".join(parts))


for _name in MCDM_MODELS:
    _make_train_command(_name)

ablate_app = typer.Typer(no_args_is_help=True, help="Run a model's ablation grid and write the whole table.")
app.add_typer(ablate_app, name="ablate")


@ablate_app.command("mcdm")
@cli_errors
def ablate_mcdm(
    store: StoresOpt, manifest: ManifestsOpt, meld: MeldOpt = None,
    grid: Annotated[str, typer.Option(
        help="table1 (the paper's rows over the config's inputs and tasks) or a YAML file mapping row "
             "label -> config overrides.")] = "table1",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the rows' runs and the table.")] = Path(
        "runs/mcdm-ablation"),
    preset: PresetOpt = None, config: ConfigOpt = None, set_: SetOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Train every row of an ablation grid (each a resumable run under --out) and write results.md/.csv in
    the shape of the paper's Table 1, with the average rank of each row.

    Example:

    \b
    affectcache ablate mcdm -s a.zarr -m a.jsonl -s b.zarr -m b.jsonl
    """
    from affectcache.trainers.mcdm.ablate import read_grid, run_ablation

    rows_grid = None
    if grid != "table1":
        import yaml

        rows_grid = read_grid(yaml.safe_load(Path(grid).read_text(encoding="utf-8")))
    corpora = _pairs(store, manifest)
    meld_pair = _pairs([meld[0]], [meld[1]])[0] if meld is not None else None
    run_ablation("mcdm", corpora, out, _config("mcdm", preset, config, set_), grid=rows_grid, meld=meld_pair,
                 overwrite=overwrite)
    typer.echo((out / "results.md").read_text(encoding="utf-8"))


def demo_mcdm(out: Path) -> None:
    """``affectcache demo mcdm``: planted corpora (emotion, trait scores, A/H, MELD), MCDM multitask with
    pseudo-labels vs single-task supervised baselines, each held-out figure beside its chance level."""
    from affectcache.trainers.mcdm.demo import run_demo

    report = run_demo(out)
    typer.echo(report.table)
    typer.echo(f"runs: {out}")


EXTRA_DEMOS["mcdm"] = demo_mcdm
