"""flows._dvc: `dvc repro` as flows.server runs it (servers started lazily, params/YAML read once,
dvc.lock written by the safe dumper): what DVC decides must be what plain DVC decides."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows._dvc import NO_SERVER_STAGES, needs_servers, patch_lazy_servers

REPO = Path(__file__).resolve().parents[1]
DVC = [str(Path(sys.executable).with_name("dvc"))]

# fake flows.server.servers: records each start in starts.txt and points the stages at a fake URL
RUNNER = textwrap.dedent("""
    import contextlib, sys
    import flows.server

    @contextlib.contextmanager
    def servers(env, **kwargs):
        with open("starts.txt", "a") as handle:
            handle.write("start\\n")
        yield {"PREFECT_API_URL": "http://fake/api"}

    flows.server.servers = servers
    import flows._dvc
    raise SystemExit(flows._dvc.main(sys.argv[1:]))
""")

STAGE = ("python -c \"import os, yaml; p = yaml.safe_load(open('params.yaml'));"
         " open('out.json', 'w').write(repr((p['a']['b'], os.environ.get('PREFECT_API_URL'))))\"")


def test_needs_servers_by_stage_module():
    assert not needs_servers("python -m flows.inputs")
    assert not needs_servers("python -m flows.weights method=x")
    assert needs_servers("python -m flows.fuse method=ir")
    assert needs_servers("sh -c 'echo hi'")
    assert set(NO_SERVER_STAGES) == {"flows.inputs", "flows.weights"}


def test_servers_start_once_before_the_first_stage_that_needs_them():
    calls, starts = [], []

    class Stage:
        def __init__(self, cmd):
            self.cmd = cmd

    class Module:
        @staticmethod
        def cmd_run(stage, dry=False, run_env=None):
            calls.append(stage.cmd)

    patch_lazy_servers(Module, lambda: starts.append(len(calls)))
    Module.cmd_run(Stage("python -m flows.inputs"))
    assert starts == []
    Module.cmd_run(Stage("python -m flows.fuse method=ir"), dry=True)
    assert starts == []  # a dry run starts nothing
    Module.cmd_run(Stage(["python -m flows.weights", "python -m flows.fuse"]))
    Module.cmd_run(Stage("python -m flows.metrics"))
    assert starts == [2] and len(calls) == 4


def _run(project: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FUSEBENCH_FORK_SOCKET", None)
    return subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=project, env=env, text=True,
                          capture_output=True, timeout=300)


def test_lazy_repro_agrees_with_plain_dvc(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    subprocess.run([*DVC, "init", "--no-scm", "-q"], cwd=project, check=True)
    (project / "params.yaml").write_text("a: {b: 1, eps: 1e-10, none: null}\nother: 2\n")
    (project / "dvc.yaml").write_text(textwrap.dedent(f"""
        stages:
          one:
            cmd: {json.dumps(STAGE)}
            params: [a.b, a.eps, a.none]
            outs: [out.json]
    """))
    first = _run(project, "repro")
    assert first.returncode == 0, first.stderr
    assert (project / "out.json").read_text() == "(1, 'http://fake/api')"  # servers pointed at
    assert (project / "starts.txt").read_text() == "start\n"
    status = subprocess.run([*DVC, "status"], cwd=project, text=True, capture_output=True, check=True)
    assert "up to date" in status.stdout  # plain DVC reads the lock written by the safe dumper

    second = _run(project, "repro")  # nothing to do: no server started
    assert second.returncode == 0, second.stderr
    assert (project / "starts.txt").read_text() == "start\n"

    (project / "params.yaml").write_text("a: {b: 2, eps: 1e-10, none: null}\nother: 2\n")
    third = _run(project, "repro")
    assert third.returncode == 0, third.stderr
    assert (project / "out.json").read_text() == "(2, 'http://fake/api')"
    (project / "params.yaml").write_text("a: {b: 2, eps: 1e-10, none: null}\nother: 3\n")  # not a dep
    status = subprocess.run([*DVC, "status"], cwd=project, text=True, capture_output=True, check=True)
    assert "up to date" in status.stdout


@pytest.mark.parametrize("command,lazy", [(["dvc", "repro"], True), (["dvc", "exp", "run"], False),
                                          (["echo", "repro"], False)])
def test_only_dvc_repro_is_lazy(command, lazy):
    from flows.server import lazy_command

    got = lazy_command(command)
    assert (got is not None) == lazy
    if lazy:
        assert got[1:3] == ["-m", "flows._dvc"] and got[3:] == command[1:]
