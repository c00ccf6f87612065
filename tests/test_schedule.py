"""flows.schedule: the deployment carries params.yaml's cron; the flow body runs once and archives."""
from __future__ import annotations

import json
import sys

import pytest

from flows import schedule
from pipeline.config import load_params
from pipeline.errors import ConfigError


def test_deployment_uses_the_configured_cron(repo_root):
    params = load_params(repo_root / "params.yaml")
    deployment = schedule.build_deployment(params, project=repo_root)
    crons = [s.schedule.cron for s in deployment.schedules]
    assert crons == [params["orchestration"]["schedule_cron"]]
    assert deployment.name == schedule.DEPLOYMENT_NAME
    assert deployment.parameters == {"project": str(repo_root)}

    deployment = schedule.build_deployment({"orchestration": {"schedule_cron": "*/5 * * * *"}})
    assert [s.schedule.cron for s in deployment.schedules] == ["*/5 * * * *"]


@pytest.mark.parametrize("cron", [None, "", "every monday", "61 * * * *"])
def test_bad_cron_is_a_config_error(cron):
    with pytest.raises(ConfigError, match="schedule_cron"):
        schedule.schedule_cron({"orchestration": {"schedule_cron": cron}})


def _fake_repro(tmp_path, code: int) -> list[str]:
    """A stand-in for `dvc repro`: writes a report like the real pipeline, exits with ``code``."""
    script = ("import pathlib; d = pathlib.Path('results/report'); d.mkdir(parents=True, exist_ok=True); "
              f"(d / 'report.md').write_text('# report'); raise SystemExit({code})")
    return [sys.executable, "-c", script]


def test_scheduled_body_runs_the_command_and_archives_the_report(tmp_path, prefect_harness):
    (tmp_path / "params.yaml").write_text("profile: demo\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    target = schedule.scheduled_repro(project=str(tmp_path), command=_fake_repro(tmp_path, 0))
    archive = tmp_path / "results" / "history"
    assert [p.name for p in archive.iterdir()] == [target.split("/")[-1]]
    run = json.loads((archive / target.split("/")[-1] / "run.json").read_text())
    assert run["status"] == "completed" and run["returncode"] == 0 and run["report_archived"]
    for name in ("report/report.md", "params.yaml", "dvc.lock"):
        assert (archive / target.split("/")[-1] / name).is_file()


def test_failed_repro_is_archived_and_fails_the_flow(tmp_path, prefect_harness):
    with pytest.raises(RuntimeError, match="exited with code 4"):
        schedule.scheduled_repro(project=str(tmp_path), command=_fake_repro(tmp_path, 4))
    (run_file,) = (tmp_path / "results" / "history").glob("*/run.json")
    assert json.loads(run_file.read_text())["status"] == "failed"


def test_default_command_is_dvc_repro():
    command = schedule.default_command()
    assert command[-1] == "repro" and command[0].endswith("dvc")
