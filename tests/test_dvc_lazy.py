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


def test_long_yaml_parses_are_kept_on_disk_by_content(tmp_path, monkeypatch):
    """flows._dvc.cached_safe_parse: a long text is parsed once and then read back from
    <state>/yaml (an equal, fresh object); an edited text or another parser parses again; only the
    newest DISK_CACHE_FILES entries stay."""
    import yaml

    from flows import _dvc

    monkeypatch.setenv("FUSEBENCH_STATE", str(tmp_path / "state"))
    calls = []

    def parse(text):
        calls.append(len(text))
        return yaml.safe_load(text)

    text = "stages:\n" + "".join(f"  s{k}: {{cmd: run {k}, deps: [a, b]}}\n" for k in range(3000))
    assert len(text) >= _dvc.DISK_CACHE_MIN_CHARS
    first = _dvc.cached_safe_parse(text, "lock", parse)
    second = _dvc.cached_safe_parse(text, "lock", parse)
    assert first == second == yaml.safe_load(text) and first is not second and len(calls) == 1
    second["stages"]["s0"]["cmd"] = "changed"                       # callers own their copy
    assert _dvc.cached_safe_parse(text, "lock", parse)["stages"]["s0"]["cmd"] == "run 0"
    edited = text.replace("run 7,", "run seven,")
    assert _dvc.cached_safe_parse(edited, "lock", parse)["stages"]["s7"]["cmd"] == "run seven"
    _dvc.cached_safe_parse(text, "dvc", parse)                      # another parser: its own entry
    assert len(calls) == 3
    assert _dvc.cached_safe_parse("short: 1\n", "lock", parse) == {"short": 1} and len(calls) == 4
    for k in range(_dvc.DISK_CACHE_FILES + 3):
        _dvc.cached_safe_parse(text + f"# {k}\n", "lock", parse)
    assert len(list((tmp_path / "state" / "yaml").glob("*.pkl"))) == _dvc.DISK_CACHE_FILES
