"""Hyperparameter search: grid expansion, greedy order and choice on a planted objective, failed trials
recorded, resume (also after kill -9), refusal of another grid, a bug stops the search, the command line
on a 2-worker local cluster."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from typer.testing import CliRunner

from affectcache.extractors.core.errors import ConfigError
from affectcache.store.manifest import load_manifest
from affectcache.trainers.search import run as search_run
from affectcache.trainers.search.run import run_search
from affectcache.trainers.search.spec import SearchSpec, check_base, plan_trial
from affectcache.trainers.search.strategies import STRATEGIES
from affectcache.trainers.search.trials import TrialRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

FACE = {"input_modality": "face-emb", "input_columns": None, "hidden": 16, "n_heads": 2, "n_layers": 1,
        "window": 100, "hop": 50, "epochs": 2, "lr": 3e-3, "train_on_filled": True, "bootstrap_resamples": 10}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_grid_expands_every_combination_in_order_and_bad_specs_are_refused() -> None:
    spec = SearchSpec.from_dict({"params": {"window": [100, 200], "hop": [25, 50, 75], "lr": [1e-3]}})
    combos = spec.combinations()
    assert spec.grid_size() == len(combos) == 6
    assert combos[:4] == [{"window": 100, "hop": 25, "lr": 1e-3}, {"window": 100, "hop": 50, "lr": 1e-3},
                          {"window": 100, "hop": 75, "lr": 1e-3}, {"window": 200, "hop": 25, "lr": 1e-3}]
    seen: list[list[dict[str, Any]]] = []
    STRATEGIES.get("grid").run(spec, lambda batch: seen.append(list(batch)) or [], Path("."), 2)
    assert seen == [combos]  # one batch: every trial can run at once
    for bad, message in (({"params": {}}, "params must map"), ({"params": {"lr": []}}, "non-empty list"),
                         ({"params": {"lr": [1, 1]}}, "repeat"),
                         ({"strategy": "random", "params": {"lr": [1]}}, "strategy must be one of"),
                         ({"base": {"lr": 1}, "params": {"lr": [1, 2]}}, "both in base and params"),
                         ({"params": {"lr": [1]}, "sweep": 1}, "unknown keys")):
        with pytest.raises(ConfigError, match=message):
            SearchSpec.from_dict(bad)


def test_trial_ids_are_deterministic_and_follow_the_config() -> None:
    spec = SearchSpec.from_dict({"base": {k: v for k, v in FACE.items() if k != "lr"},
                                 "params": {"lr": [1e-3, 3e-3]}})
    a, b = plan_trial("ras-face", spec, {"lr": 1e-3}), plan_trial("ras-face", spec, {"lr": 3e-3})
    assert a.trial_id == plan_trial("ras-face", spec, {"lr": 1e-3}).trial_id
    assert a.trial_id != b.trial_id
    assert a.trial_id.startswith("ras-face-")
    assert a.config is not None
    assert a.config.lr == 1e-3
    with pytest.raises(ConfigError, match="not a valence/arousal model"):
        check_base("mcdm", spec)
    with pytest.raises(ConfigError, match="no preset 'large'"):
        check_base("ras-face", SearchSpec.from_dict({**spec.to_dict(), "preset": "large"}))
    bad = plan_trial("ras-face", spec, {"n_heads": 3})  # 16 hidden units are not divisible by 3 heads
    assert bad.config is None
    assert "divisible" in str(bad.error)


def test_greedy_sweeps_one_parameter_at_a_time_and_keeps_the_best() -> None:
    # Planted objective: best at a=2 whatever b is; given a=2, best at b=30; c only matters with a=2, b=30.
    def objective(p: dict[str, Any]) -> float:
        return -abs(p["a"] - 2) - 0.1 * abs(p["b"] - 30) + (0.5 if (p["a"], p["b"], p["c"]) == (2, 30, "y")
                                                              else 0.0)

    batches: list[list[dict[str, Any]]] = []

    def evaluate(batch: Sequence[dict[str, Any]]) -> list[TrialRecord]:
        batches.append(list(batch))
        return [TrialRecord(trial_id=str(p), params=dict(p), status="done",
                            scores={"val_ccc_mean": objective(p)}) for p in batch]

    spec = SearchSpec.from_dict({"strategy": "greedy",
                                 "params": {"a": [1, 2, 3], "b": [10, 30], "c": ["x", "y"]}})
    STRATEGIES.get("greedy").run(spec, evaluate, Path("."), 1)
    assert batches == [
        [{"a": 1, "b": 10, "c": "x"}, {"a": 2, "b": 10, "c": "x"}, {"a": 3, "b": 10, "c": "x"}],
        [{"a": 2, "b": 10, "c": "x"}, {"a": 2, "b": 30, "c": "x"}],
        [{"a": 2, "b": 30, "c": "x"}, {"a": 2, "b": 30, "c": "y"}],
    ]
    assert STRATEGIES.get("greedy").planned(spec) == 5  # repeated current points run once

    # Failed trials never win; ties keep the earlier value.
    batches.clear()

    def failing(batch: Sequence[dict[str, Any]]) -> list[TrialRecord]:
        batches.append(list(batch))
        return [TrialRecord(trial_id=str(p), params=dict(p), status="failed" if p["a"] == 3 else "done",
                            scores={"val_ccc_mean": 1.0 if p["a"] != 1 else 0.0}) for p in batch]

    two = SearchSpec.from_dict({"strategy": "greedy", "params": {"a": [1, 3, 2], "b": [0, 1]}})
    STRATEGIES.get("greedy").run(two, failing, Path("."), 1)
    assert batches[1] == [{"a": 2, "b": 0}, {"a": 2, "b": 1}]


def test_tpe_runs_n_trials_in_batches_and_continues_its_journal(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    evaluated: list[dict[str, Any]] = []

    def evaluate(batch: Sequence[dict[str, Any]]) -> list[TrialRecord]:
        assert len(batch) <= 2
        evaluated.extend(batch)
        return [TrialRecord(trial_id=json.dumps(p), params=dict(p), status="done",
                            scores={"val_ccc_mean": -abs(p["lr"] - 0.01) - 0.01 * p["w"][0]}) for p in batch]

    spec = SearchSpec.from_dict({"strategy": "tpe", "n_trials": 5, "seed": 3,
                                 "params": {"lr": [0.001, 0.01, 0.1], "w": [[1, 2], [3, 4]]}})
    tpe = STRATEGIES.get("tpe")
    tpe.run(spec, evaluate, tmp_path, 2)
    assert len(evaluated) == 5
    assert (tmp_path / "optuna.journal").exists()
    assert all(p["lr"] in (0.001, 0.01, 0.1) and p["w"] in ([1, 2], [3, 4]) for p in evaluated)
    tpe.run(spec, evaluate, tmp_path, 2)  # the study is complete: nothing more is asked
    assert len(evaluated) == 5
    # A trial asked by a search killed before telling it is evaluated first when the search resumes.
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="search", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "optuna.journal"))))
    orphan = study.ask()
    lr = json.loads(orphan.suggest_categorical("lr", [json.dumps(v) for v in (0.001, 0.01, 0.1)]))
    w = json.loads(orphan.suggest_categorical("w", [json.dumps(v) for v in ([1, 2], [3, 4])]))
    more = SearchSpec.from_dict({**spec.to_dict(), "n_trials": 6})
    tpe.run(more, evaluate, tmp_path, 2)
    assert evaluated[5:] == [{"lr": lr, "w": w}]


def test_tpe_without_optuna_is_refused_naming_the_extra(va_store: tuple[Path, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    spec = SearchSpec.from_dict({"strategy": "tpe", "base": {"input_modality": "face-emb"},
                                 "params": {"lr": [1e-3]}})
    with pytest.raises(ConfigError, match=r"affectcache\[optuna\]"):
        run_search("ras-face", spec, str(va_store[0]), load_manifest(va_store[1]), tmp_path / "s", workers=0)
    assert not (tmp_path / "s").exists()


def _search(tmp_path: Path, va_store: tuple[Path, Path], params: dict[str, Any], name: str = "search",
            **kwargs: Any) -> search_run.SearchReport:
    spec = SearchSpec.from_dict({"base": {k: v for k, v in FACE.items() if k not in params},
                                 "params": params})
    return run_search("ras-face", spec, str(va_store[0]), load_manifest(va_store[1]), tmp_path / name,
                      workers=0, **kwargs)


def test_search_records_failed_trials_resumes_and_refuses_another_grid(
        va_store: tuple[Path, Path], tmp_path: Path) -> None:
    # n_heads 3: an invalid config (never trained); input_columns [0, 256]: the store refuses it in training.
    params = {"lr": [3e-3, 1e-2], "n_heads": [2, 3], "input_columns": [None, [0, 256]]}
    lines: list[str] = []
    report = _search(tmp_path, va_store, params, on_trial=lines.append)
    out = tmp_path / "search"
    rows = _rows(out / "search_results.csv")
    assert len(rows) == len(report.records) == 8
    done = [r for r in rows if r["status"] == "done"]
    assert [(json.loads(r["n_heads"]), json.loads(r["input_columns"])) for r in done] == [(2, None)] * 2
    assert all("divisible" in r["error"] for r in rows if json.loads(r["n_heads"]) == 3)
    assert all("do not fit" in r["error"] for r in rows
               if json.loads(r["n_heads"]) == 2 and r["input_columns"] != "null")
    assert report.trained == 4  # two trained, two failed in training; the invalid configs never ran
    for row in done:
        assert -1 <= float(row["val_ccc_mean"]) <= 1
        assert math.isclose(float(row["val_ccc_mean"]),
                            (float(row["val_ccc_valence"]) + float(row["val_ccc_arousal"])) / 2)
        run = json.loads((out / "trials" / row["trial_id"] / "run.json").read_text())
        assert run["status"] == "done"
        assert run["model"] == "ras-face"
        assert run["config"]["lr"] == json.loads(row["lr"])
    best = json.loads((out / "best_trial.json").read_text())
    assert best["n_done"] == 2
    assert best["n_failed"] == 6
    assert best["best"]["trial_id"] == max(done, key=lambda r: float(r["val_ccc_mean"]))["trial_id"]
    assert (out / best["best"]["config_file"]).exists()
    assert len(lines) == 8
    assert lines[-1].endswith("0 trial(s) left)")

    # A rerun trains nothing and writes the same results.
    before = (out / "search_results.csv").read_text()
    again = _search(tmp_path, va_store, params)
    assert again.trained == 0
    assert (out / "search_results.csv").read_text() == before
    # Another grid in the same folder is refused, unless --overwrite.
    with pytest.raises(ConfigError, match="holds another search"):
        _search(tmp_path, va_store, {"lr": [3e-3]})
    replaced = _search(tmp_path, va_store, {"lr": [3e-3]}, overwrite=True)
    assert [r.status for r in replaced.records] == ["done"]
    assert replaced.trained == 1
    assert not any((out / "trials" / r["trial_id"]).exists() for r in rows if r["status"] == "failed")


def test_rerun_refuses_finished_trials_whose_store_inputs_changed(va_store: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    from affectcache.store.errors import ProvenanceMismatchError
    from affectcache.store.zarr_store import FeatureStore
    from tests.trainers.va_store import write_inputs

    params = {"lr": [3e-3], "epochs": [1]}
    assert _search(tmp_path, va_store, params).trained == 1
    write_inputs(FeatureStore(va_store[0]), list(load_manifest(va_store[1]).ids()), face_config="b")
    with pytest.raises(ProvenanceMismatchError, match=r"finished trial .* other store inputs.*face-emb"):
        _search(tmp_path, va_store, params)
    assert _search(tmp_path, va_store, params, overwrite=True).trained == 1


def test_a_bug_stops_the_search(va_store: tuple[Path, Path], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(task: Any) -> TrialRecord:
        raise RuntimeError("a bug in the trainer")

    monkeypatch.setattr(search_run, "run_trial", broken)
    with pytest.raises(RuntimeError, match="a bug in the trainer"):
        _search(tmp_path, va_store, {"lr": [3e-3, 1e-2]})
    assert not list((tmp_path / "search" / "trials").glob("*/trial.json"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "affectcache.cli.main", *args]


@pytest.mark.slow
def test_killed_search_resumes_without_retraining(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    params = {"lr": [3e-3, 1e-2]}
    base = {**{k: v for k, v in FACE.items() if k != "lr"}, "epochs": 5, "early_stop_patience": None}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"strategy": "grid", "base": base, "params": params}))
    store, manifest = map(str, va_store)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    def command_for(folder: Path) -> list[str]:
        return _cli("search", "ras-face", "--grid", str(grid), "-s", store, "-m", manifest, "--out",
                    str(folder), "--workers", "0", "--torch-threads", "1")

    command = command_for(out)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("trials/*/trial.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the next trial's training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p: p.read_text() for p in out.glob("trials/*/trial.json")}
    assert len(first) == 1, "the search should have been killed after its first trial"
    rows_before = _rows(out / "search_results.csv")
    assert len(rows_before) == 1

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert {p: p.read_text() for p in first} == first  # the finished trial was not trained again
    assert "1 trained now" in resumed.stdout

    # The same search uninterrupted, in this process (one torch thread like the subprocess).
    import torch

    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    try:
        run_search("ras-face", SearchSpec.from_dict({"strategy": "grid", "base": base, "params": params}),
                   store, load_manifest(manifest), reference, workers=0, torch_threads=1)
    finally:
        torch.set_num_threads(threads)
    scores = ["trial_id", "status", "lr", "val_ccc_valence", "val_ccc_arousal", "val_ccc_mean", "best_epoch",
              "epochs"]
    got = [{k: r[k] for k in scores} for r in _rows(out / "search_results.csv")]
    want = [{k: r[k] for k in scores} for r in _rows(reference / "search_results.csv")]
    assert got == want
    assert len(got) == 2


@pytest.mark.slow
def test_cli_search_on_a_two_worker_local_cluster(va_store: tuple[Path, Path], tmp_path: Path) -> None:
    from affectcache.cli.main import app

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"strategy": "greedy", "base": {k: v for k, v in FACE.items()
                                                                   if k not in ("lr", "hop")},
                                    "params": {"lr": [3e-3, 1e-2], "hop": [50]}}))
    store, manifest = map(str, va_store)
    out = tmp_path / "cli"
    runner = CliRunner()
    result = runner.invoke(app, ["search", "ras-face", "--grid", str(grid), "-s", store, "-m", manifest,
                                 "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "2 trial(s): 2 done, 0 failed, 2 trained now" in result.output
    assert result.output.count("trial ras-face-") == 2
    assert "best: ras-face-" in result.output
    rows = _rows(out / "search_results.csv")
    assert [json.loads(r["lr"]) for r in rows] == [3e-3, 1e-2]
    # The trials ran with one torch thread each on the workers (recorded nowhere else: check they ran).
    assert all((out / "trials" / r["trial_id"] / "best.pt").exists() for r in rows)

    refused = runner.invoke(app, ["search", "ras-face", "--grid", str(grid), "-s", store, "-m", manifest,
                                  "--out", str(out), "--workers", "1", "--scheduler", "tcp://nowhere:1"])
    assert refused.exit_code == 2
    assert "either --workers or --scheduler" in refused.output
    grid.write_text(yaml.safe_dump({"strategy": "greedy", "params": {"no_such_field": [1]}}))
    refused = runner.invoke(app, ["search", "ras-face", "--grid", str(grid), "-s", store, "-m", manifest,
                                  "--out", str(tmp_path / "other")])
    assert refused.exit_code == 2
    assert "no_such_field" in refused.output


def test_an_in_process_trial_leaves_the_callers_torch_threads(va_store: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    import torch

    from affectcache.trainers.search.trials import TrialTask, run_trial

    before = torch.get_num_threads()
    task = TrialTask(model="ras-face", trial_id="t", params={"n_heads": 3}, config={**FACE, "n_heads": 3},
                     store=str(va_store[0]), manifest=load_manifest(va_store[1]), run_dir=str(tmp_path / "t"),
                     torch_threads=before + 1)
    record = run_trial(task)
    assert record.status == "failed"  # 16 hidden units do not split into 3 heads
    assert "divisible" in str(record.error)
    assert torch.get_num_threads() == before
