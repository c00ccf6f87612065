"""A temporary local Prefect server shared by every stage of one command.

Without it, every flow run in a fresh process (every ``python -m flows.<stage>`` that ``dvc repro``
starts) launches its own temporary server: 6-15 s each on this machine (``environment.md``). With
it, one server starts once and every stage only pays about a second per flow run::

    python -m flows.server -- dvc repro            # what `make demo` / `make repro` run
    python -m flows.server --port 4300 -- dvc exp run -S detection.epochs=5

The server listens on a free ``127.0.0.1`` port, uses the hermetic settings of
:mod:`pipeline.hermetic` (Prefect home inside the project, no telemetry, no UI), and is stopped
(its whole process group) when the command ends, fails or is interrupted. The command runs with
``PREFECT_API_URL`` pointing at the server and ``FUSEBENCH_KEEP_PREFECT_API_URL=1`` (otherwise
:mod:`pipeline.hermetic` drops an inherited API URL). The exit code is the command's.

Beside the Prefect server it starts the stage fork server (:mod:`flows._fork`, while the Prefect
server boots): Prefect, torch, ultralytics and smp are imported once, and every
``python -m flows.<stage>`` the command starts runs in a forked copy of that process instead of
importing them again (``FUSEBENCH_FORK_SOCKET``). ``--no-fork`` (or ``FUSEBENCH_FORK=0``) turns
it off; a stage that cannot be served runs in its own process as before.

``dvc repro`` runs as ``python -m flows._dvc repro``: both servers are started just before the
first stage that needs them, so a repro with nothing to do (the stages ``inputs`` and ``weights``
run every time but need neither) starts none, and DVC reads ``params.yaml`` once, not once per
stage (:mod:`flows._dvc`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

import flows  # noqa: F401  (hermetic environment before Prefect is touched)
from pipeline.errors import FuseBenchError

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when ``<api_url>/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def temporary_server(port: int | None = None, timeout: float = 120.0,
                     log_path: Path | None = None) -> Iterator[str]:
    """Start ``prefect server start`` on ``127.0.0.1:<port>`` and yield its API URL once healthy;
    stop it on exit. Raises :class:`FuseBenchError` when it does not come up within ``timeout``."""
    port = port or free_port()
    api_url = f"http://{HOST}:{port}/api"
    log_path = Path(log_path or Path(os.environ["PREFECT_HOME"]) / "server.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_UI_ENABLED"] = "false"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.is_file() else "prefect", "server", "start",
               "--host", HOST, "--port", str(port), "--no-ui", "--analytics-off"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not healthy(api_url):
            if process.poll() is not None:
                raise FuseBenchError(f"Prefect server exited with code {process.returncode}; see its log",
                                     log_path)
            if time.monotonic() > deadline:
                raise FuseBenchError(f"Prefect server not healthy after {timeout:.0f} s; see its log", log_path)
            time.sleep(0.25)
        yield api_url
    finally:
        _stop(process)


@contextlib.contextmanager
def use_temporary_server(port: int | None = None, timeout: float = 120.0) -> Iterator[str]:
    """:func:`temporary_server`, with this process (Prefect settings) and its children (environment)
    pointed at it for the duration of the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "FUSEBENCH_KEEP_PREFECT_API_URL")}
    with temporary_server(port=port, timeout=timeout) as api_url:
        os.environ.update(PREFECT_API_URL=api_url, FUSEBENCH_KEEP_PREFECT_API_URL="1")
        try:
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                yield api_url
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def fork_server(env: dict, timeout: float = 120.0) -> Iterator[str | None]:
    """Start the stage fork server (:mod:`flows._fork`) with ``env``; yield a callable that waits
    until it listens and returns its socket path (``None`` when it did not come up); stop it on exit."""
    folder = tempfile.mkdtemp(prefix="fusebench-fork-")
    path = os.path.join(folder, "stages.sock")
    read, write = os.pipe()
    log_path = Path(os.environ["PREFECT_HOME"]) / "fork_server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "flows._fork", "serve", path, "--ready-fd", str(write)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   pass_fds=(write,), start_new_session=True)
    os.close(write)

    def ready() -> str | None:
        with os.fdopen(read) as pipe:
            import select

            got, _, _ = select.select([pipe], [], [], timeout)
            line = pipe.readline() if got else ""
        return path if line.strip() == "ready" and process.poll() is None else None

    try:
        yield ready
    finally:
        _stop(process)
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def fork_enabled() -> bool:
    return os.environ.get("FUSEBENCH_FORK", "1").lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def servers(env: dict, port: int | None = None, timeout: float = 120.0, fork: bool | None = None) -> Iterator[dict]:
    """Start the Prefect server (and, with ``fork``, the stage fork server; default:
    :func:`fork_enabled`) for child processes with environment ``env``; yield the variables that
    point a child at them (``PREFECT_API_URL``, ``FUSEBENCH_KEEP_PREFECT_API_URL``,
    ``FUSEBENCH_FORK_SOCKET``); stop both on exit."""
    start = time.perf_counter()
    port = port or free_port()
    api_url = f"http://{HOST}:{port}/api"
    point = {"PREFECT_API_URL": api_url, "FUSEBENCH_KEEP_PREFECT_API_URL": "1"}
    env = {k: v for k, v in {**env, **point}.items() if k != "FUSEBENCH_FORK_SOCKET"}
    with contextlib.ExitStack() as stack:
        forks = stack.enter_context(fork_server(env, timeout)) if (fork_enabled() if fork is None else fork) else None
        stack.enter_context(temporary_server(port=port, timeout=timeout))
        print(f"[flows.server] Prefect server at {api_url} (ready in {time.perf_counter() - start:.1f} s)",
              file=sys.stderr, flush=True)
        socket_path = forks() if forks else None
        if socket_path:
            point["FUSEBENCH_FORK_SOCKET"] = socket_path
            print(f"[flows.server] stage fork server ready ({time.perf_counter() - start:.1f} s)",
                  file=sys.stderr, flush=True)
        elif forks:
            print("[flows.server] stage fork server did not start; stages import everything themselves",
                  file=sys.stderr, flush=True)
        yield point


def lazy_command(command: Sequence[str]) -> list[str] | None:
    """``dvc repro ...`` -> ``python -m flows._dvc repro ...`` (servers started by the first stage
    that needs them, :mod:`flows._dvc`); ``None`` for any other command."""
    command = list(command)
    if len(command) >= 2 and Path(command[0]).name == "dvc" and command[1] == "repro":
        return [sys.executable, "-m", "flows._dvc", *command[1:]]
    return None


def run_with_server(command: Sequence[str], port: int | None = None, timeout: float = 120.0,
                    fork: bool | None = None) -> int:
    """Run ``command`` with a temporary shared Prefect server (and, with ``fork``, the stage fork
    server; default: :func:`fork_enabled`); return its exit code. ``dvc repro`` starts them only
    when a stage needs them (:func:`lazy_command`): a repro with nothing to do starts neither."""
    if not command:
        raise FuseBenchError("no command given; usage: python -m flows.server -- dvc repro")
    env = {k: v for k, v in os.environ.items() if k != "FUSEBENCH_FORK_SOCKET"}
    with contextlib.ExitStack() as stack:
        lazy = lazy_command(command)
        if lazy:
            command = lazy
            env.update(FUSEBENCH_LAZY_PORT=str(port or ""), FUSEBENCH_LAZY_TIMEOUT=str(timeout),
                       FUSEBENCH_LAZY_FORK="1" if (fork_enabled() if fork is None else fork) else "0")
        else:
            env.update(stack.enter_context(servers(env, port=port, timeout=timeout, fork=fork)))
        child = subprocess.Popen(list(command), env=env)
        # SIGTERM/SIGHUP (a CI timeout, a closed terminal) go to the command; when it has ended the
        # server is stopped as usual instead of being orphaned in its own session.
        forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    parser.add_argument("--no-fork", action="store_true", help="no stage fork server (every stage imports "
                        "its libraries itself)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return run_with_server(command, port=args.port, timeout=args.timeout, fork=False if args.no_fork else None)
    except FuseBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
