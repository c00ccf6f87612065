"""Run one method's seeds side by side in forked worker processes, one torch thread each.

On a small CPU machine two or three single-threaded trainings running at once get more work out of
the cores than one two-threaded training after the other (a 2-thread convolution scales ~1.3-1.5x,
two processes ~1.9x). Seeds of one method share everything their stage prepared once (the YOLO
scratch dataset, decoded segmentation images): :func:`run_seeds` forks after that preparation, so
each worker inherits it copy-on-write and imports nothing.

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
import signal
import tempfile
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


def _child(fn: Callable, args: tuple, threads: int, out: Path) -> None:
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
    """Flush the standard streams, then end this forked process at once (no parent clean-up)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _start(fn: Callable, args: tuple, threads: int, out: Path) -> int:
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(fn, args, threads, out)
    return pid


def _outcome(status: int, out: Path, name: str) -> tuple[bool, Any]:
    """``(True, value)`` of a finished worker, else ``(False, reason)``."""
    value = None
    if out.is_file():
        with open(out, "rb") as handle:
            value = pickle.load(handle)
    if os.WIFSIGNALED(status):
        return False, f"{name}: worker killed by signal {os.WTERMSIG(status)}"
    if value is None:
        return False, f"{name}: worker exited with status {os.WEXITSTATUS(status)}"
    if value[0] == "error":
        return False, f"{name}: {value[1]}"
    return True, value[1]


def _kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def run_seeds(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, threads: int = 1,
              names: Sequence[str] | None = None) -> list:
    """``[fn(*args) for args in jobs]``, up to ``workers`` at a time in forked processes with
    ``threads`` torch threads each (``workers`` <= 1: in this process, unchanged thread count).
    Values come back pickled. Raises ``RuntimeError`` naming every failed job once all are done."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*args) for args in jobs]
    names = list(names or [str(k) for k in range(len(jobs))])
    results: list = [None] * len(jobs)
    failures: list[str] = []
    running: dict[int, tuple[int, Path]] = {}
    pending = list(range(len(jobs)))
    with tempfile.TemporaryDirectory(prefix="fusebench-seeds-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    k = pending.pop(0)
                    out = Path(tmp) / f"{k}.pkl"
                    running[_start(fn, jobs[k], threads, out)] = (k, out)
                pid, status = os.waitpid(-1, 0)
                if pid in running:
                    k, out = running.pop(pid)
                    ok, value = _outcome(status, out, names[k])
                    if ok:
                        results[k] = value
                    else:
                        failures.append(value)
        except BaseException:
            _kill(list(running))
            raise
    if failures:
        raise RuntimeError("seed worker(s) failed (finished seeds are kept and reused by a re-run):\n"
                           + "\n".join(failures))
    return results

