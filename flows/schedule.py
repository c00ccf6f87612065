"""Scheduled pipeline runs: a Prefect deployment whose flow runs ``dvc repro`` and archives the report.

    python -m flows.schedule                 # serve the deployment on params.yaml's cron (blocking)
    python -m flows.schedule --once          # run the scheduled flow's body once, now

``orchestration.schedule_cron`` in ``params.yaml`` gives the cron expression (e.g. ``"0 3 * * 1"``:
Mondays at 03:00, server time). Serving starts a temporary local Prefect server with its scheduler
(:func:`flows.server.temporary_server`), so nothing long-lived is left behind when the process ends
(Ctrl-C); the stages of each scheduled ``dvc repro`` share that server.

Each run archives, under ``results/history/<UTC timestamp>/``: the report folder
(``results/report/``), ``params.yaml``, ``dvc.lock`` and ``run.json`` (command, exit code, seconds,
git commit). A failed ``dvc repro`` is archived too (``run.json`` says so) and fails the flow run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import flows  # noqa: F401  (hermetic environment before Prefect is imported)
from pipeline.config import load_params, section
from pipeline.errors import ConfigError
from pipeline.results import write_json

from prefect import flow

DEPLOYMENT_NAME = "fusebench-scheduled-repro"
ARCHIVED = ("params.yaml", "dvc.lock")


def default_command() -> list[str]:
    """``dvc repro`` with the ``dvc`` next to this Python (the project's venv) when there is one."""
    dvc = Path(sys.executable).with_name("dvc")
    return [str(dvc) if dvc.is_file() else "dvc", "repro"]


def _git_commit(project: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() or None


def archive(project: Path, stamp: str, record: dict, report_dir: str = "results/report",
            history_dir: str = "results/history") -> Path:
    """Copy the report, ``params.yaml`` and ``dvc.lock`` to ``<history_dir>/<stamp>/`` (built in a
    temporary folder, then renamed) and write ``run.json``."""
    target = project / history_dir / stamp
    suffix = 1
    while target.exists():                    # two runs within one second
        target = project / history_dir / f"{stamp}-{suffix}"
        suffix += 1
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    report = project / report_dir
    if report.is_dir():
        shutil.copytree(report, tmp / "report")
    for name in ARCHIVED:
        if (project / name).is_file():
            shutil.copy2(project / name, tmp / name)
    write_json(tmp / "run.json", {**record, "report_archived": report.is_dir()})
    os.replace(tmp, target)
    return target


@flow(name=DEPLOYMENT_NAME, log_prints=True)
def scheduled_repro(project: str = ".", command: list[str] | None = None) -> str:
    """Run ``command`` (default ``dvc repro``) in ``project`` and archive the report; return the
    archive folder. Raises ``RuntimeError`` (after archiving) when the command fails."""
    root = Path(project).resolve()
    command = list(command or default_command())
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    start = time.perf_counter()
    print(f"running {' '.join(command)} in {root}")
    code = subprocess.run(command, cwd=root).returncode
    record = {"command": command, "returncode": code, "status": "completed" if code == 0 else "failed",
              "seconds": round(time.perf_counter() - start, 2), "started_utc": stamp,
              "git_commit": _git_commit(root)}
    target = archive(root, stamp, record)
    print(f"archived to {target}")
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited with code {code}; see {target / 'run.json'}")
    return str(target)


def schedule_cron(params: dict) -> str:
    """``orchestration.schedule_cron`` (validated)."""
    from prefect.client.schemas.schedules import CronSchedule

    cron = section(params, "orchestration.schedule_cron")
    if not cron or not isinstance(cron, str):
        raise ConfigError("orchestration.schedule_cron must be a cron expression such as '0 3 * * 1'", "params.yaml")
    try:
        CronSchedule(cron=cron)
    except ValueError as err:
        raise ConfigError(f"orchestration.schedule_cron {cron!r} is not a valid cron expression: {err}",
                          "params.yaml") from None
    return cron


def build_deployment(params: dict, project: str | Path = "."):
    """The deployment (not yet applied): :func:`scheduled_repro` on the configured cron."""
    return scheduled_repro.to_deployment(name=DEPLOYMENT_NAME, cron=schedule_cron(params),
                                         parameters={"project": str(Path(project).resolve())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.schedule", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=os.environ.get("FUSEBENCH_PARAMS", "params.yaml"))
    parser.add_argument("--once", action="store_true", help="run the scheduled flow once now and exit")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        deployment = build_deployment(params)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from flows.server import use_temporary_server

    if args.once:
        with use_temporary_server():
            try:
                scheduled_repro(project=".")
            except RuntimeError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
        return 0
    from prefect import serve

    with use_temporary_server() as api_url:
        print(f"serving {DEPLOYMENT_NAME} on cron {schedule_cron(params)!r} (API {api_url}); Ctrl-C stops")
        serve(deployment)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
