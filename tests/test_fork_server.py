"""The stage fork server (flows/_fork.py): a stage run through it behaves like its own process.

A throw-away project holds a ``flows`` package (the real ``__init__`` and ``_fork``) and a probe
stage ``flows.probe`` that reports what it sees; the server pre-imports only ``json`` so the
tests take a few seconds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
import json, os, random, sys, time
if "sleep" in sys.argv:
    open(sys.argv[-1], "w").write(str(os.getpid()))
    time.sleep(60)
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[1:], "cwd": os.getcwd(),
                  "marker": os.environ.get("PROBE_MARKER"), "t0": os.environ.get("FUSEBENCH_STAGE_T0"),
                  "socket": os.environ.get("FUSEBENCH_FORK_SOCKET"), "random": random.random()}))
print("to stderr", file=sys.stderr)
import atexit
atexit.register(lambda: open("atexit.txt", "w").write("ran"))
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
'''


@pytest.fixture
def project(tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("__init__.py", "_fork.py"):
        (flows / name).write_text((REPO / "flows" / name).read_text())
    (flows / "probe.py").write_text(PROBE)
    (tmp_path / "params.yaml").write_text("{}\n")
    return tmp_path


def _env(project: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), FUSEBENCH_STATE=str(project / ".cache"))
    env.pop("FUSEBENCH_FORK_SOCKET", None)
    env.update(extra)
    return env


@pytest.fixture
def server(project):
    sock = str(project / "fork.sock")
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "flows._fork", "serve", sock, "--ready-fd", str(write),
                             "--preload", "json"], cwd=project, env=_env(project), pass_fds=(write,),
                            start_new_session=True)
    os.close(write)
    with os.fdopen(read) as ready:
        assert ready.readline().strip() == "ready"
    yield sock
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def _run(project, sock, *args, **env):
    return subprocess.run([sys.executable, "-m", "flows.probe", *args], cwd=project, capture_output=True,
                          text=True, env=_env(project, FUSEBENCH_FORK_SOCKET=sock, **env), timeout=60)


def test_stage_runs_in_a_forked_child_with_its_args_env_streams_and_exit_code(project, server):
    first = _run(project, server, "method=a", PROBE_MARKER="one", PROBE_EXIT="3")
    assert first.returncode == 3, first.stderr
    seen = json.loads(first.stdout)
    assert seen["argv"] == ["method=a"] and seen["marker"] == "one" and seen["cwd"] == str(project)
    assert seen["t0"] and seen["socket"] is None          # its own subprocesses would start normally
    assert "to stderr" in first.stderr
    assert (project / "atexit.txt").read_text() == "ran"   # the normal exit path ran
    second = json.loads(_run(project, server, PROBE_MARKER="two").stdout)
    assert second["pid"] != seen["pid"] and second["ppid"] == seen["ppid"]  # both children of the server
    assert second["random"] != seen["random"]              # generators reseeded after the fork


def test_without_a_server_or_with_another_environment_the_stage_runs_itself(project, server):
    alone = _run(project, str(project / "no-such.sock"))
    assert alone.returncode == 0 and json.loads(alone.stdout)["t0"] is None
    declined = _run(project, server, OMP_NUM_THREADS="7")   # import-time setting differs
    assert declined.returncode == 0 and json.loads(declined.stdout)["t0"] is None


def test_killing_the_client_kills_the_stage(project, server):
    pid_file = project / "child.pid"
    client = subprocess.Popen([sys.executable, "-m", "flows.probe", "sleep", str(pid_file)], cwd=project,
                              env=_env(project, FUSEBENCH_FORK_SOCKET=server))
    deadline = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.05)
    child = int(pid_file.read_text())
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the stage outlived its client"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
