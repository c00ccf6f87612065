"""What every stage flow shares: params, the task runner, fan-out with failure capture, summaries.

A stage module looks like::

    from flows._common import stage_flow, run_units, main_entry

    @stage_flow("fuse")
    def fuse_flow(params):
        report = run_units("fuse", fuse_one, items, params)   # one Prefect task per unit
        report.raise_if_failed()

    if __name__ == "__main__":
        main_entry(fuse_flow)

* ``run_units`` maps a plain library function over work items as Prefect tasks (retries for
  transient failures), on the configured task runner (``orchestration.task_runner``: ``thread``
  or ``dask``), waits for all of them and records per-unit status and duration. One failing unit
  does not hide the others: every failure is listed with its error.
* The flow-run summary (durations per task, failures) is written to
  ``results/flow_runs/<stage>.json`` by :func:`write_summary` (called by ``stage_flow``).
"""
from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pipeline  # noqa: F401
from pipeline.config import load_params
from pipeline.errors import FuseBenchError
from pipeline.results import write_json

PARAMS_FILE = os.environ.get("FUSEBENCH_PARAMS", "params.yaml")
SUMMARY_DIR = Path("results") / "flow_runs"


@dataclass
class UnitRecord:
    stage: str
    unit: str
    status: str
    seconds: float
    error: str | None = None


@dataclass
class StageReport:
    """Outcome of one fan-out: values of the successful units and the failures."""

    stage: str
    records: list[UnitRecord] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[UnitRecord]:
        return [r for r in self.records if r.status != "completed"]

    def raise_if_failed(self) -> None:
        if self.failures:
            lines = "; ".join(f"{r.unit}: {r.error}" for r in self.failures)
            raise RuntimeError(f"{self.stage}: {len(self.failures)} of {len(self.records)} units failed: {lines}")


_SUMMARY: list[UnitRecord] = []


def make_task_runner(params: dict):
    """Task runner from ``params.orchestration``: ``thread`` (default; ``max_workers``) or ``dask``
    (prefect-dask; ``dask_address`` of an existing scheduler, else a local cluster with
    ``dask_workers`` single-threaded worker processes)."""
    config = params.get("orchestration") or {}
    kind = config.get("task_runner", "thread")
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=int(config.get("max_workers") or os.cpu_count() or 1))
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        address = config.get("dask_address")
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": int(config.get("dask_workers", 2)),
                                              "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    raise FuseBenchError(f"unknown orchestration.task_runner {kind!r}; use 'thread' or 'dask'")


def _timed(fn: Callable, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def run_units(stage: str, fn: Callable, items: Iterable[tuple[str, tuple]], retries: int = 1,
              retry_delay_seconds: float = 1.0) -> StageReport:
    """Run ``fn(*args)`` for each ``(unit_name, args)`` as a Prefect task in the current flow's
    task runner; wait for all; return a :class:`StageReport`. Must be called inside a flow."""
    from prefect import task

    items = list(items)
    timed = task(_timed, name=stage, retries=retries, retry_delay_seconds=retry_delay_seconds)
    futures = [(unit, timed.with_options(task_run_name=f"{stage}:{unit}").submit(fn, *args))
               for unit, args in items]
    report = StageReport(stage)
    for unit, future in futures:
        future.wait()
        state = future.state
        if state.is_completed():
            value, seconds = state.result()
            report.values[unit] = value
            report.records.append(UnitRecord(stage, unit, "completed", round(seconds, 4)))
        else:
            err = state.result(raise_on_failure=False)
            text = f"{err.__class__.__name__}: {err}" if isinstance(err, BaseException) else str(state.message)
            report.records.append(UnitRecord(stage, unit, "failed", 0.0, text))
    _SUMMARY.extend(report.records)
    return report


def run_inline(stage: str, unit: str, fn: Callable, *args, **kwargs) -> Any:
    """Run one coarse unit directly in the flow (no task overhead), recording its duration."""
    try:
        value, seconds = _timed(fn, *args, **kwargs)
    except Exception as err:
        _SUMMARY.append(UnitRecord(stage, unit, "failed", 0.0, f"{err.__class__.__name__}: {err}"))
        raise
    _SUMMARY.append(UnitRecord(stage, unit, "completed", round(seconds, 4)))
    return value


def run_method_seeds(stage: str, method: str, prepare: Callable[[], Any], seeds_of: Callable[[Any], list],
                     run_seed: Callable, aggregate: Callable[[Any, list, list], Any],
                     seed_args: Callable[[int], tuple] = lambda k: (),
                     together: Callable[[Any], bool] = lambda prepared: False) -> tuple[list, Any]:
    """One method of a per-seed stage: ``<method>:prepare`` (inline, ``prepare()``), one Prefect task
    ``<method>:seed<s>`` per seed of ``seeds_of(prepared)`` running ``run_seed(prepared, seed,
    *seed_args(k))`` (k: position of the seed), then ``<method>:aggregate`` (inline,
    ``aggregate(prepared, seeds, seed_values)``). The seed tasks run one at a time (stopping at the
    first failure) unless ``together(prepared)``: then they are submitted together. Returns
    ``(seeds, aggregate value)``."""
    prepared = run_inline(stage, f"{method}:prepare", prepare)
    seeds = list(seeds_of(prepared))
    units = [(f"{method}:seed{seed}", (prepared, seed, *seed_args(k))) for k, seed in enumerate(seeds)]
    values = []
    for batch in ([units] if together(prepared) else [[unit] for unit in units]):
        report = run_units(stage, run_seed, batch, retries=0)
        report.raise_if_failed()
        values.extend(report.values[unit] for unit, _ in batch)
    return seeds, run_inline(stage, f"{method}:aggregate", aggregate, prepared, seeds, values)


def write_summary(stage: str, seconds: float, status: str, error: str | None = None,
                  name: str | None = None) -> Path:
    """Flow-run summary: total and per-unit durations and failures, in ``results/flow_runs/``."""
    path = SUMMARY_DIR / f"{name or stage}.json"
    units = [r.__dict__ for r in _SUMMARY]
    write_json(path, {"stage": stage, "status": status, "seconds": round(seconds, 3), "error": error,
                      "units": units, "failed_units": [u for u in units if u["status"] != "completed"]})
    _SUMMARY.clear()
    return path


def stage_flow(stage: str, **flow_kwargs) -> Callable:
    """Decorator: make ``fn(params, **kw)`` a Prefect flow named ``fusebench-<stage>`` that loads
    params, uses the configured task runner and writes the flow-run summary."""

    def decorate(fn: Callable) -> Callable:
        from prefect import flow

        @functools.wraps(fn)
        def run(params: dict | None = None, summary_name: str | None = None, **kwargs):
            params = params if params is not None else load_params(PARAMS_FILE)
            inner = flow(name=f"fusebench-{stage}", task_runner=make_task_runner(params),
                         log_prints=False, **flow_kwargs)(fn)  # prints reach the terminal (Prefect logs at WARNING)
            _SUMMARY.clear()  # records of units run outside a flow (e.g. a body called directly)
            start = time.perf_counter()
            try:
                value = inner(params, **kwargs)
            except BaseException as err:
                write_summary(stage, time.perf_counter() - start, "failed",
                              f"{err.__class__.__name__}: {err}", summary_name)
                raise
            write_summary(stage, time.perf_counter() - start, "completed", None, summary_name)
            return value

        run.stage = stage
        run.body = fn
        return run

    return decorate


def main_entry(flow_fn: Callable, argv: list[str] | None = None) -> None:
    """``python -m flows.<stage> [key=value ...]``: run the flow; user errors as one line, exit 2.
    Extra ``key=value`` arguments are passed to the flow as keyword strings (e.g. ``method=mlfuse``)."""
    argv = sys.argv[1:] if argv is None else argv
    kwargs = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    try:
        from pipeline.profiles import check_file

        check_file(PARAMS_FILE)  # DVC's stages match the active profile's fusion methods
        flow_fn(**kwargs)
    except FuseBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    except Exception as err:  # the flow already logged the traceback
        if os.environ.get("FUSEBENCH_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {flow_fn.stage} failed: {err}", file=sys.stderr)
        raise SystemExit(1)


def method_entry(flow_fn: Callable, argv: list[str] | None = None) -> None:
    """:func:`main_entry` for per-method stages (``python -m flows.<stage> method=<name>``): the
    flow-run summary is ``results/flow_runs/<stage>_<method>.json`` (``<stage>.json`` without one),
    so the DVC ``foreach`` stages of one stage do not overwrite each other's summaries."""
    argv = list(sys.argv[1:] if argv is None else argv)
    method = dict(a.split("=", 1) for a in argv if "=" in a).get("method")
    if not any(a.startswith("summary_name=") for a in argv):
        argv.append(f"summary_name={flow_fn.stage}_{method}" if method else f"summary_name={flow_fn.stage}")
    main_entry(flow_fn, argv)
