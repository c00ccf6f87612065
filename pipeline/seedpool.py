"""Run one method's seeds side by side in worker processes, one torch thread each.

On a small CPU machine two or three single-threaded trainings running at once get more work out of
the cores than one two-threaded training after the other (a 2-thread convolution scales ~1.3-1.5x,
two processes ~1.9x). Seeds of one method share everything their stage prepared once (the YOLO
scratch dataset on disk, decoded segmentation images). A process with one thread forks its
workers after that preparation, so each inherits it copy-on-write and imports nothing; a process
with other threads alive (a Prefect flow, a test session) takes them from a fork server instead
(:func:`start_method`: forking there can hang the child on a lock another thread held).

* ``workers`` (``detection.parallel_seeds`` / ``segmentation.parallel_seeds``): ``auto`` is one
  worker per seed, at most the number of CPU cores + 1, on the CPU, and 1 on CUDA (a process must
  never fork after CUDA was initialised); 1 runs the seeds one after the other in the calling
  process, as before;
* every worker sets ``torch.set_num_threads(threads)`` (and ``OMP_NUM_THREADS``, which
  :func:`pipeline.hermetic.restore_torch_threads` reads) before its seed and writes only its own
  persisted seed folder; the stages put the thread count in each seed's key and record, because
  a convolution's reduction order (and so the last bits of the weights) depends on it;
* a worker that fails or is killed loses only its own seed: the others run to the end, then
  :func:`run_seeds` raises naming every failed seed. Its persisted folder keeps what it saved, and a
  re-run resumes it (finished seeds are reused);
* the parent kills its workers when it is interrupted itself.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.errors import ConfigError


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """A stage's torch CPU threads by default (as :func:`pipeline.hermetic.restore_torch_threads`)."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def resolve_workers(value, n_seeds: int, device: str, where: str) -> int:
    """Worker processes for ``n_seeds`` seeds: ``auto`` (see the module docstring) or an int >= 1."""
    if value in (None, "auto"):
        if str(device).startswith("cuda"):
            return 1
        return max(1, min(n_seeds, cpu_cores() + 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be 'auto' or a positive integer, got {value!r}")
    if str(device).startswith("cuda"):
        return 1   # never fork a process that may have initialised CUDA
    return min(value, max(1, n_seeds))


def set_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def start_method() -> str:
    """``fork`` while this process has one thread, else ``forkserver``.

    A fork copies every lock of the parent in the state it had at that instant, but only the calling
    thread: a lock another thread held (Prefect's event loops, a tqdm monitor, Dask's offload
    thread, a logging or HTTP pool) stays held forever in the child, which then hangs at its first
    use. With other threads alive the workers therefore come from a fork server (a fresh
    interpreter that has imported torch and the job's module once, no threads): the job and its
    arguments are pickled to it, and only state on disk or in the environment is shared."""
    return "fork" if threading.active_count() == 1 else "forkserver"


def _child(fn: Callable, args: tuple, threads: int, out: str) -> None:
    code = 1
    try:
        set_threads(threads)
        value = ("ok", fn(*args))
        code = 0
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        value = ("error", f"{err.__class__.__name__}: {err}\n{traceback.format_exc()}")
    try:
        with open(out, "wb") as handle:
            pickle.dump(value, handle)
    finally:
        exit_now(code)


def exit_now(code: int) -> None:
    """Flush the standard streams, then end this worker at once (no parent clean-up)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _context(fn: Callable, preload: Sequence[str]):
    import multiprocessing

    method = start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver" and fn.__module__ == "__main__":
        raise ConfigError(f"seed job {fn.__qualname__} is defined in __main__: a fork-server worker "
                          f"cannot import it; define it in a module")
    if method == "forkserver":   # imported once by the server (none of them starts a thread)
        context.set_forkserver_preload(["torch", *preload, fn.__module__])
    return context


@contextlib.contextmanager
def _main_module_hidden():
    """While a fork-server worker starts: multiprocessing would have the worker re-run the parent's
    ``__main__`` (``python -m flows.detect``: the whole flow module, Prefect included, ~3 CPU s per
    worker) so that functions defined there unpickle. Seed jobs are module-level functions of
    importable modules, so the worker is told there is no main module to re-run."""
    import sys

    main = sys.modules.get("__main__")
    saved = {key: main.__dict__[key] for key in ("__spec__", "__file__") if main and key in main.__dict__}
    try:
        if main is not None:
            main.__spec__ = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _start(context, fn: Callable, args: tuple, threads: int, out: Path):
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    worker = context.Process(target=_child, args=(fn, args, threads, str(out)), daemon=False)
    if context.get_start_method() == "fork":
        worker.start()
    else:
        with _main_module_hidden():
            worker.start()
    return worker


def _outcome(exitcode: int, out: Path, name: str) -> tuple[bool, Any]:
    """``(True, value)`` of a finished worker, else ``(False, reason)``."""
    value = None
    if out.is_file():
        with open(out, "rb") as handle:
            value = pickle.load(handle)
    if exitcode is not None and exitcode < 0:
        return False, f"{name}: worker killed by signal {-exitcode}"
    if value is None:
        return False, f"{name}: worker exited with status {exitcode}"
    if value[0] == "error":
        return False, f"{name}: {value[1]}"
    return True, value[1]


def _kill(workers) -> None:
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.kill()
    for worker in workers:
        with contextlib.suppress(OSError, ValueError):
            worker.join()


def run_seeds(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, threads: int = 1,
              names: Sequence[str] | None = None, preload: Sequence[str] = ()) -> list:
    """``[fn(*args) for args in jobs]``, up to ``workers`` at a time in worker processes
    (:func:`start_method`; ``preload``: modules a fork server imports once for all workers) with
    ``threads`` torch threads each (``workers`` <= 1: in this process, unchanged thread count).
    Values come back pickled. Raises ``RuntimeError`` naming every failed job once all are done."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*args) for args in jobs]
    from multiprocessing.connection import wait

    names = list(names or [str(k) for k in range(len(jobs))])
    context = _context(fn, preload)
    results: list = [None] * len(jobs)
    failures: list[str] = []
    running: dict = {}
    pending = list(range(len(jobs)))
    with tempfile.TemporaryDirectory(prefix="fusebench-seeds-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    k = pending.pop(0)
                    out = Path(tmp) / f"{k}.pkl"
                    worker = _start(context, fn, jobs[k], threads, out)
                    running[worker.sentinel] = (worker, k, out)
                for sentinel in wait(list(running)):
                    worker, k, out = running.pop(sentinel)
                    worker.join()
                    ok, value = _outcome(worker.exitcode, out, names[k])
                    if ok:
                        results[k] = value
                    else:
                        failures.append(value)
        except BaseException:
            _kill([worker for worker, _, _ in running.values()])
            raise
    if failures:
        raise RuntimeError("seed worker(s) failed (finished seeds are kept and reused by a re-run):\n"
                           + "\n".join(failures))
    return results
