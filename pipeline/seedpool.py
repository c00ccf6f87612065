"""Run one method's seeds side by side in worker processes, one torch thread each.

On a small CPU machine two or three single-threaded trainings running at once get more work out of
the cores than one two-threaded training after the other (a 2-thread convolution scales ~1.3-1.5x,
two processes ~1.9x). Seeds of one method share everything their stage prepared once (the YOLO
scratch dataset on disk, decoded segmentation images). Where the workers come from
(:func:`start_method`; forking a process with other threads alive can hang the child on a lock
another thread held):

* a process with one thread forks them after that preparation: each inherits it copy-on-write and
  imports nothing;
* a threaded process (a Prefect flow) whose ``main`` called :func:`start_zygote` before its threads
  started has them forked by that zygote (the stage's modules imported, the preparation not shared);
* any other threaded process (a test session) takes them from a multiprocessing fork server.

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


class _Zygote:
    """A process forked by :func:`start_zygote` while its parent had one thread; it forks the seed
    workers of each batch it is sent (so they inherit no other thread's lock, and import nothing)."""

    def __init__(self, pid: int, requests, replies):
        self.pid, self.requests, self.replies = pid, requests, replies

    def run(self, fn: Callable, jobs: Sequence[tuple], workers: int, threads: int, outs: Sequence[str]) -> list:
        """Exit codes of the batch's workers (negative: killed by that signal)."""
        global _ZYGOTE
        try:
            pickle.dump((fn, list(jobs), workers, threads, list(outs)), self.requests)
            self.requests.flush()
            reply = pickle.load(self.replies)
        except BaseException:
            _ZYGOTE = None            # interrupted or dead: it and its workers go
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(self.pid, 0)
            raise
        if isinstance(reply, str):
            raise RuntimeError(f"seed zygote could not run the batch: {reply}")
        return reply


_ZYGOTE: _Zygote | None = None


def start_zygote() -> bool:
    """Fork a zygote now if this process has one thread (a stage's ``main`` calls this before its
    Prefect flow starts threads). :func:`run_seeds` of a threaded process then has its workers
    forked by the zygote: as safe as a fork server, with the stage's modules already imported (a
    fork server re-imports torch and ultralytics: +3-5 s per stage). Its workers do not share what
    the stage prepares after this call. Returns whether a zygote runs."""
    import sys

    global _ZYGOTE
    if _ZYGOTE is not None or threading.active_count() != 1:
        return _ZYGOTE is not None
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(request_w)
        os.close(reply_r)
        code = 0
        try:
            _zygote_serve(os.fdopen(request_r, "rb"), os.fdopen(reply_w, "wb"))
        except BaseException:  # noqa: BLE001 - a zygote never returns into its parent's code
            code = 1
        exit_now(code)
    os.close(request_r)
    os.close(reply_w)
    _ZYGOTE = _Zygote(pid, os.fdopen(request_w, "wb"), os.fdopen(reply_r, "rb"))
    return True


def _zygote_serve(requests, replies) -> None:
    import multiprocessing

    os.setpgid(0, 0)   # its own process group: an interrupted parent kills it with its workers
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:   # the parent exited
            return
        except Exception as err:  # noqa: BLE001 - e.g. a job that does not unpickle here
            pickle.dump(f"{err.__class__.__name__}: {err}", replies)
            replies.flush()
            continue
        fn, jobs, workers, threads, outs = request
        pickle.dump(_run_pool(multiprocessing.get_context("fork"), fn, jobs, workers, threads, outs), replies)
        replies.flush()


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


def _start(context, fn: Callable, args: tuple, threads: int, out: str):
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    worker = context.Process(target=_child, args=(fn, args, threads, out), daemon=False)
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
    names = list(names or [str(k) for k in range(len(jobs))])
    with tempfile.TemporaryDirectory(prefix="fusebench-seeds-") as tmp:
        outs = [str(Path(tmp) / f"{k}.pkl") for k in range(len(jobs))]
        if start_method() == "forkserver" and _ZYGOTE is not None:
            codes = _ZYGOTE.run(fn, jobs, workers, threads, outs)
        else:
            codes = _run_pool(_context(fn, preload), fn, jobs, workers, threads, outs)
        return _values([_outcome(code, Path(out), name) for code, out, name in zip(codes, outs, names)])


def _run_pool(context, fn: Callable, jobs: Sequence[tuple], workers: int, threads: int,
              outs: Sequence[str]) -> list:
    """Exit codes of ``fn(*job)`` run in ``context`` worker processes, ``workers`` at a time, each
    writing its outcome to its ``outs`` file (negative code: killed by that signal). The running
    workers are killed when this is interrupted."""
    from multiprocessing.connection import wait

    codes: list = [None] * len(jobs)
    running: dict = {}
    pending = list(range(len(jobs)))
    try:
        while pending or running:
            while pending and len(running) < workers:
                k = pending.pop(0)
                worker = _start(context, fn, jobs[k], threads, outs[k])
                running[worker.sentinel] = (worker, k)
            for sentinel in wait(list(running)):
                worker, k = running.pop(sentinel)
                worker.join()
                codes[k] = worker.exitcode
    except BaseException:
        _kill([worker for worker, _ in running.values()])
        raise
    return codes


def _values(outcomes: Sequence[tuple[bool, Any]]) -> list:
    """The jobs' values, or ``RuntimeError`` naming every failed job."""
    failures = [value for ok, value in outcomes if not ok]
    if failures:
        raise RuntimeError("seed worker(s) failed (finished seeds are kept and reused by a re-run):\n"
                           + "\n".join(failures))
    return [value for _, value in outcomes]
