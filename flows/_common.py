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
  transient failures only: a :class:`~pipeline.errors.FuseBenchError` — bad input or params, the
  same on every attempt — fails its unit at once, see :func:`retry_transient`), on the configured
  task runner (``orchestration.task_runner``: ``thread`` or ``dask``), waits for all of them and
  records per-unit status and duration. One failing unit does not hide the others: every failure
  is listed with its error.
* The flow-run summary (durations per task, failures) is written to
  ``results/flow_runs/<stage>.json`` by :func:`write_summary` (called by ``stage_flow``), with the
  stage process's own clock (:func:`process_timing`): wall and CPU seconds of the start-up (process
  start, or the stage client's start under the fork server, to the flow's start), of the flow and
  of the whole process until exit (rewritten by an exit hook), for ``python -m pipeline bench demo``.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

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


def _process_start() -> float:
    """Unix time at which this stage started: ``FUSEBENCH_STAGE_T0`` (set by the fork server's
    client, :mod:`flows._fork`) or this process's creation time (``/proc``), else now."""
    given = os.environ.get("FUSEBENCH_STAGE_T0")
    if given:
        return float(given)
    try:
        with open("/proc/self/stat") as handle:
            ticks = float(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_STAGE_T0 = _process_start()
_CPU_T0 = float(os.environ.get("FUSEBENCH_STAGE_CPU0", "0") or 0)  # the client's CPU before the fork


def process_timing(flow_start: float, flow_cpu: float, flow_end: float | None = None) -> dict:
    """Wall (``time.time()`` values) and CPU clock of this stage: start-up = process start -> flow
    start, flow = the flow body, process = start -> now (or ``flow_end``)."""
    now = time.time() if flow_end is None else flow_end
    cpu = _cpu_seconds() + _CPU_T0
    return {"startup_seconds": round(flow_start - _STAGE_T0, 3), "startup_cpu_seconds": round(flow_cpu + _CPU_T0, 3),
            "flow_seconds": round(now - flow_start, 3), "cpu_seconds": round(cpu, 3),
            "process_seconds": round(now - _STAGE_T0, 3), "pid": os.getpid(),
            "forked": bool(os.environ.get("FUSEBENCH_STAGE_T0")), "load_1min": round(os.getloadavg()[0], 2)}


_LAST_SUMMARY: list[Path] = []


@atexit.register  # registered before Prefect is imported, so it runs after Prefect's own exit hooks
def _final_timing() -> None:
    """Exit hook: add the whole process's wall/CPU (teardown included) to the last summary written."""
    if not _LAST_SUMMARY:
        return
    path = _LAST_SUMMARY[-1]
    try:
        record = json.loads(path.read_text())
        process = record.get("process") or {}
        process["exit_seconds"] = round(time.time() - _STAGE_T0, 3)
        process["exit_cpu_seconds"] = round(_cpu_seconds() + _CPU_T0, 3)
        record["process"] = process
        write_json(path, record)
    except (OSError, ValueError):
        pass


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


def retry_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed unit unless it failed on a
    :class:`FuseBenchError` (a missing or corrupt weights file, a bad image, a bad setting), which
    a second attempt would only repeat after the retry delay."""
    err = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return not isinstance(err, FuseBenchError)


def run_units(stage: str, fn: Callable, items: Iterable[tuple[str, tuple]], retries: int = 1,
              retry_delay_seconds: float = 1.0) -> StageReport:
    """Run ``fn(*args)`` for each ``(unit_name, args)`` as a Prefect task in the current flow's
    task runner; wait for all; return a :class:`StageReport`. Must be called inside a flow."""
    from prefect import task

    items = list(items)
    timed = task(_timed, name=stage, retries=retries, retry_delay_seconds=retry_delay_seconds,
                 retry_condition_fn=retry_transient)
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
                     together: Callable[[Any], bool] = lambda prepared: False,
                     pool: Callable[[Any, list], list] | None = None) -> tuple[list, Any]:
    """One method of a per-seed stage: ``<method>:prepare`` (inline, ``prepare()``), one Prefect task
    ``<method>:seed<s>`` per seed of ``seeds_of(prepared)`` running ``run_seed(prepared, seed,
    *seed_args(k))`` (k: position of the seed), then ``<method>:aggregate`` (inline,
    ``aggregate(prepared, seeds, seed_values)``). The seed tasks run one at a time (stopping at the
    first failure) unless ``together(prepared)``: then they are submitted together. With ``pool``
    and ``prepared.workers`` > 1 one task ``<method>:seeds`` runs ``pool(prepared, seeds)`` instead
    (forked seed workers, :mod:`pipeline.seedpool`). Returns ``(seeds, aggregate value)``."""
    prepared = run_inline(stage, f"{method}:prepare", prepare)
    seeds = list(seeds_of(prepared))
    units = [(f"{method}:seed{seed}", (prepared, seed, *seed_args(k))) for k, seed in enumerate(seeds)]
    if pool is not None and getattr(prepared, "workers", 1) > 1:
        run_seed, units = pool, [(f"{method}:seeds", (prepared, seeds))]
    values = []
    for batch in ([units] if together(prepared) else [[unit] for unit in units]):
        report = run_units(stage, run_seed, batch, retries=0)
        report.raise_if_failed()
        values.extend(report.values[unit] for unit, _ in batch)
    if len(values) == 1 and len(seeds) > 1:   # the pool's list of seed values
        values = list(values[0])
    return seeds, run_inline(stage, f"{method}:aggregate", aggregate, prepared, seeds, values)


def write_summary(stage: str, seconds: float, status: str, error: str | None = None,
                  name: str | None = None, process: dict | None = None) -> Path:
    """Flow-run summary: total and per-unit durations and failures, in ``results/flow_runs/``;
    ``process`` is the stage process's clock (:func:`process_timing`)."""
    path = SUMMARY_DIR / f"{name or stage}.json"
    units = [r.__dict__ for r in _SUMMARY]
    record = {"stage": stage, "status": status, "seconds": round(seconds, 3), "error": error,
              "units": units, "failed_units": [u for u in units if u["status"] != "completed"]}
    if process is not None:
        record["process"] = process
    write_json(path, record)
    _SUMMARY.clear()
    return path


def stage_flow(stage: str, prefect: bool = True, **flow_kwargs) -> Callable:
    """Decorator: make ``fn(params, **kw)`` a Prefect flow named ``fusebench-<stage>`` that loads
    params, uses the configured task runner and writes the flow-run summary. ``prefect=False``: a
    plain function with the same summary, for a cheap stage that runs only inline units
    (:func:`run_inline`) and must not need a Prefect server (``flows.server`` starts none for it,
    :data:`flows.server.NO_SERVER_STAGES`)."""

    def decorate(fn: Callable) -> Callable:
        if prefect:
            from prefect import flow

        @functools.wraps(fn)
        def run(params: dict | None = None, summary_name: str | None = None, **kwargs):
            params = params if params is not None else load_params(PARAMS_FILE)
            inner = (flow(name=f"fusebench-{stage}", task_runner=make_task_runner(params),
                          log_prints=False, **flow_kwargs)(fn)  # prints reach the terminal (Prefect logs at WARNING)
                     if prefect else fn)
            _SUMMARY.clear()  # records of units run outside a flow (e.g. a body called directly)
            start, wall0, cpu0 = time.perf_counter(), time.time(), _cpu_seconds()
            try:
                value = inner(params, **kwargs)
            except BaseException as err:
                path = write_summary(stage, time.perf_counter() - start, "failed",
                                     f"{err.__class__.__name__}: {err}", summary_name, process_timing(wall0, cpu0))
                _LAST_SUMMARY[:] = [path.resolve()]
                raise
            path = write_summary(stage, time.perf_counter() - start, "completed", None, summary_name,
                                 process_timing(wall0, cpu0))
            _LAST_SUMMARY[:] = [path.resolve()]
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
