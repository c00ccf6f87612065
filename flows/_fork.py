"""A fork server for stage processes: heavy imports once per pipeline run, not once per stage.

Every DVC stage is a fresh ``python -m flows.<stage>`` process, and importing Prefect, torch,
torchvision, ultralytics and segmentation-models-pytorch costs it 5-8 CPU seconds before any work
(``docs/demo_budget.md``). :mod:`flows.server` (what ``make demo`` runs) therefore also starts this
server: one process that imports those libraries once and then, for each stage, *forks* a child
that runs the stage as ``python -m flows.<stage>`` would, in the stage's own working directory,
environment, arguments and standard streams.

* Client (:func:`delegate`, called by :mod:`flows` when ``FUSEBENCH_FORK_SOCKET`` is set and the
  process was started as ``python -m flows.<stage>``): connects to the server's Unix socket, sends
  its arguments, working directory and environment with its stdin/stdout/stderr (``SCM_RIGHTS``),
  forwards SIGINT/SIGTERM/SIGHUP to the child and exits with the child's exit code. DVC sees an
  ordinary process. When no server answers, or the server declines (another working directory, or
  an environment whose import-time settings differ: ``PREFECT_*``, ``YOLO_*``, ``OMP_*`` ...), the
  client returns and the stage runs in its own process as before.
* Server (:func:`serve`, ``python -m flows._fork serve SOCKET``): single-threaded (forking a
  multi-threaded process is unsafe), a ``select`` loop over the socket and the clients. It refuses
  to serve (every client falls back) when the imports started a Python thread or initialised CUDA. Each
  child gets its own process group; it is killed when its client disappears (e.g. DVC killed).
* Child: the streams are the client's, the ``random``/numpy generators are reseeded from the OS
  (a fork would otherwise share the parent's state), repository modules are imported fresh, and
  the normal exit path (non-daemon threads, ``atexit`` hooks: Prefect's log flush, the flow-run
  timing of :mod:`flows._common`) runs before the exit code is reported.
"""
from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import sys
import time

ENV_SOCKET = "FUSEBENCH_FORK_SOCKET"
#: environment variables read at import time by the pre-imported libraries: a client whose values
#: differ from the server's runs in its own process.
IMPORT_TIME_PREFIXES = ("PREFECT_", "YOLO_", "OMP_", "MKL_", "CUDA_", "TORCH_", "HF_", "MPL", "PYTHON",
                        "THP_", "FUSEBENCH_STATE", "FUSEBENCH_SHARED", "KMP_", "OPENBLAS_")
PRELOAD = ("numpy", "cv2", "yaml", "pandas", "PIL.Image", "scipy.ndimage", "torch", "torchvision",
           "prefect", "prefect.flows", "prefect.tasks", "prefect.task_runners", "prefect.flow_engine",
           "prefect.task_engine", "ultralytics", "ultralytics.models.yolo.detect", "ultralytics.nn.tasks",
           "ultralytics.data.augment", "ultralytics.data.dataset", "segmentation_models_pytorch",
           "matplotlib.pyplot", "skimage")
MAX_MESSAGE = 1 << 20


def _import_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)}


# ---------------------------------------------------------------- client
def stage_module(argv: list[str] | None = None) -> str | None:
    """``flows.<stage>`` when this interpreter was started as ``python -m flows.<stage> ...``."""
    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    for i, arg in enumerate(argv[1:-1], start=1):
        if arg == "-m":
            name = argv[i + 1]
            return name if name.startswith("flows.") and not name.startswith(("flows._", "flows.server")) else None
        if not arg.startswith("-"):
            return None
    return None


def _send(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode() + b"\n"
    if fds:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(data)


def _lines(sock: socket.socket):
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def delegate(module: str | None = None) -> None:
    """Run this stage in a child of the fork server and exit with its code; return (run here)
    when there is no server or it declines."""
    path = os.environ.get(ENV_SOCKET)
    module = module or stage_module()
    if not path or not module:
        return
    t0, cpu0 = time.time(), sum(os.times()[:2])
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError:
        return
    args = list(sys.orig_argv)
    args = args[args.index(module) + 1:]
    try:
        _send(sock, {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ),
                     "t0": t0, "cpu0": cpu0}, [0, 1, 2])
        replies = _lines(sock)
        first = next(replies, None)
    except (OSError, ValueError):
        return
    if not first or "pid" not in first:
        return  # declined: run in this process
    child = int(first["pid"])

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    code = 1
    try:
        for reply in replies:
            if "exit" in reply:
                code = int(reply["exit"])
                break
    except (OSError, ValueError):
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---------------------------------------------------------------- server
def preload(modules=PRELOAD) -> list[str]:
    """Import the heavy libraries (missing ones are skipped); returns those imported."""
    import importlib

    from pipeline import hermetic

    hermetic.apply()  # hermetic environment first (idempotent: the flows package applied it)

    done = []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception:  # noqa: BLE001 - an optional library; the stage imports it itself
            pass
    return done


def fork_safe() -> str | None:
    """Why forking this process would be unsafe (``None``: safe). Python threads could hold locks
    (import, logging) in the child; native BLAS pools started by importing numpy/torch are fine (they
    re-initialise after a fork, as in every forked torch DataLoader worker) as long as no parallel
    region ran, and none does here: nothing is computed before forking."""
    import threading

    if threading.active_count() > 1:
        return f"{threading.active_count()} Python threads after the imports"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA was initialised by the imports"
    return None


def _receive(conn: socket.socket) -> tuple[dict | None, list[int]]:
    """One request line and the file descriptors sent with it."""
    fds: list[int] = []
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_MESSAGE:
        msg, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(16 * array.array("i").itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        if not msg:
            break
        data += msg
    try:
        return json.loads(data), fds
    except ValueError:
        return None, fds


def _run_child(request: dict, fds: list[int], closing: list) -> None:
    """In the forked child: become the stage process, run it, exit with its code (never returns)."""
    code = 1
    try:
        for obj in closing:
            obj.close()
        os.setpgid(0, 0)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV_SOCKET, None)  # the stage's own subprocesses start normally
        os.environ["FUSEBENCH_STAGE_T0"] = repr(float(request["t0"]))
        os.environ["FUSEBENCH_STAGE_CPU0"] = repr(float(request["cpu0"]))
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = _run_module(request["module"], request["args"])
    except BaseException:  # noqa: BLE001 - the child must always exit here
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_module(module: str, args: list[str]) -> int:
    import atexit
    import random
    import runpy
    import threading

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    for name in [n for n in sys.modules if n == "flows" or n.startswith(("flows.", "pipeline."))]:
        if name != "pipeline.hermetic":
            del sys.modules[name]  # repository code fresh from this working directory
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    threading._shutdown()  # what the interpreter does at exit, before the atexit hooks
    atexit._run_exitfuncs()
    return code


def serve(path: str, ready_fd: int | None = None, modules=PRELOAD) -> int:
    """Pre-import ``modules``, then serve stage requests on the Unix socket ``path`` until SIGTERM;
    ``ready_fd`` (a pipe) gets a line once the socket listens."""
    from pipeline import hermetic

    hermetic.apply()  # the hermetic environment, as every client has it

    env = _import_env(dict(os.environ))  # before the imports, which set some (TORCH_CPP_LOG_LEVEL ...)
    loaded = preload(modules)
    refuse = fork_safe()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(16)
    cwd = os.getcwd()
    print(f"[flows._fork] serving {path}: {len(loaded)} modules pre-imported"
          + (f"; declining every stage ({refuse})" if refuse else ""), file=sys.stderr, flush=True)
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    children: dict[int, socket.socket] = {}   # child pid -> its client
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while not stopping:
            watched = [listener, *children.values()]
            try:
                readable, _, _ = select.select(watched, [], [], 0.2)
            except InterruptedError:
                readable = []
            for conn in readable:
                if conn is listener:
                    client, _ = listener.accept()
                    _accept(client, cwd, env, refuse, children, listener)
                else:  # a client closed its end: the stage was killed, kill its child
                    pid = next(p for p, c in children.items() if c is conn)
                    _kill_group(pid)
            _reap(children)
    finally:
        for pid in list(children):
            _kill_group(pid)
        _reap(children, block=True)
        listener.close()
        if os.path.exists(path):
            os.unlink(path)
    return 0


def _accept(client: socket.socket, cwd: str, env: dict, refuse: str | None, children: dict,
            listener: socket.socket) -> None:
    try:
        request, fds = _receive(client)
    except OSError:
        client.close()
        return
    ok = (request is not None and not refuse and request.get("cwd") == cwd
          and _import_env(request.get("env") or {}) == env and len(fds) == 3)
    if not ok:
        for fd in fds:
            os.close(fd)
        try:
            _send(client, {"declined": refuse or "working directory or import-time environment differs"})
        finally:
            client.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_child(request, fds, [listener, client, *children.values()])
    try:
        os.setpgid(pid, pid)  # also set by the child: whichever runs first
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    children[pid] = client
    try:
        _send(client, {"pid": pid})
    except OSError:
        _kill_group(pid)


def _kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(children: dict, block: bool = False, grace: float = 10.0) -> None:
    """Report the exit code of every finished child to its client; with ``block``, wait for all
    (SIGKILL after ``grace`` seconds)."""
    deadline = time.monotonic() + grace
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            if not block:
                return
            if time.monotonic() > deadline:
                for other in list(children):
                    _kill_group(other, signal.SIGKILL)
            time.sleep(0.05)
            continue
        client = children.pop(pid, None)
        if client is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            _send(client, {"exit": code if code >= 0 else 128 - code})
        except OSError:
            pass
        client.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows._fork", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["serve"])
    parser.add_argument("socket")
    parser.add_argument("--ready-fd", type=int, default=None, help="pipe written once listening")
    parser.add_argument("--preload", default=None, help="comma-separated modules (default: PRELOAD)")
    args = parser.parse_args(argv)
    modules = PRELOAD if args.preload is None else [m for m in args.preload.split(",") if m]
    return serve(args.socket, args.ready_fd, modules)


if __name__ == "__main__":
    raise SystemExit(main())
