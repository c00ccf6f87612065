"""``python -m pipeline bench demo [--run]``: the demo's time budget, stage by stage.

Reads the flow-run summaries of the last run (``results/flow_runs/*.json``, written by every
stage, :mod:`flows._common`) and prints one row per stage kind (``demo_data``, ``vsm``, ``train``,
``fuse``, ``metrics``, ``detect``, ``segment``, ``report``):

* ``procs``: stage processes (one per DVC stage; ``foreach`` stages have one per method);
* ``wall``: sum of the processes' wall seconds, start to exit (``process.exit_seconds``);
* ``startup``: process start (or, under the fork server, the stage client's start) until the
  flow starts: interpreter, imports, params; ``teardown``: flow end until exit (Prefect's exit);
* ``flow``: the Prefect flow, of which ``work`` is the units' own seconds and ``prefect`` the rest
  (flow-run and task-run bookkeeping, the engine);
* ``cpu``: user + system CPU seconds of the processes (the figure that does not depend on the
  load; wall seconds on a shared machine do).

With ``--run`` the pipeline is run first (``python -m flows.server -- dvc repro``, add ``--force``
to re-run every stage) and its total wall and CPU seconds are printed too; the difference between
the total and the stages' sum is DVC's own work (hashing, lock file) and the shared Prefect
server. The last line is the table as one JSON object (``--json``: only that line).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ORDER = ("demo_data", "vsm", "train", "fuse", "metrics", "detect", "segment", "report")
COLUMNS = ("procs", "wall", "startup", "flow", "work", "prefect", "teardown", "cpu")


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="per-stage wall/CPU table of the last demo run",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run `python -m flows.server -- dvc repro` first")
    parser.add_argument("--force", action="store_true", help="with --run: `dvc repro --force` (every stage)")
    parser.add_argument("--flow-runs", default="results/flow_runs", help="folder of the flow-run summaries")
    parser.add_argument("--per-process", action="store_true", help="also one row per stage process")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.set_defaults(func=run)


def stage_row(record: dict) -> dict:
    """Figures of one flow-run summary (a record without process timing has the flow only)."""
    process = record.get("process") or {}
    flow = float(record.get("seconds") or 0.0)
    work = sum(float(u.get("seconds") or 0.0) for u in record.get("units") or [])
    startup = float(process.get("startup_seconds") or 0.0)
    ended = float(process.get("exit_seconds") or process.get("process_seconds") or startup + flow)
    return {"procs": 1, "wall": ended, "startup": startup, "flow": flow, "work": min(work, flow),
            "prefect": max(flow - work, 0.0), "teardown": max(ended - startup - flow, 0.0),
            "cpu": float(process.get("exit_cpu_seconds") or process.get("cpu_seconds") or 0.0)}


def collect(folder: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """``(per stage kind, per process)`` rows from every summary in ``folder``."""
    per_process: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "stage" in record:
            per_process[path.stem] = {"stage": record["stage"], "status": record.get("status"),
                                      **stage_row(record)}
    kinds: dict[str, dict] = {}
    for row in per_process.values():
        total = kinds.setdefault(row["stage"], dict.fromkeys(COLUMNS, 0.0))
        for key in COLUMNS:
            total[key] += row[key]
    ordered = {k: kinds[k] for k in ORDER if k in kinds}
    ordered.update({k: v for k, v in sorted(kinds.items()) if k not in ordered})
    return ordered, per_process


def format_table(rows: dict[str, dict], total_run: dict | None = None) -> str:
    """A Markdown table (the one docs/demo_budget.md quotes)."""
    head = "| stage | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    sums = dict.fromkeys(COLUMNS, 0.0)
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(k, row[k]) for k in COLUMNS) + " |")
        for key in COLUMNS:
            sums[key] += row[key]
    lines.append("| **stages** | " + " | ".join(_cell(k, sums[k]) for k in COLUMNS) + " |")
    if total_run:
        other = total_run["wall_seconds"] - sums["wall"]
        lines.append(f"| whole run | | {total_run['wall_seconds']:.0f} | | | | | | {total_run['cpu_seconds']:.0f} |")
        lines.append(f"| DVC + server (rest) | | {other:.0f} | | | | | | "
                     f"{total_run['cpu_seconds'] - sums['cpu']:.0f} |")
    return "\n".join(lines)


def _cell(key: str, value: float) -> str:
    return f"{int(value)}" if key == "procs" else f"{value:.1f}"


def run_pipeline(force: bool = False) -> dict:
    """Run the demo pipeline as `make demo` does; wall and CPU seconds of the whole command."""
    command = [sys.executable, "-m", "flows.server", "--", "dvc", "repro", *(["--force"] if force else [])]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.call(command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"command": " ".join(command[1:]), "exit_code": code, "wall_seconds": time.perf_counter() - start,
            "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_1min_before": load, "load_1min_after": os.getloadavg()[0]}


def run(args) -> int:
    total = run_pipeline(args.force) if args.run else None
    rows, per_process = collect(Path(args.flow_runs))
    if not rows:
        print(f"no flow-run summaries in {args.flow_runs}; run the demo first (make demo, or this "
              "command with --run)", file=sys.stderr)
        return 1
    record = {"benchmark": "demo", "stages": rows, "run": total, "load_1min_now": os.getloadavg()[0]}
    if not args.json:
        print(format_table(rows, total))
        if args.per_process:
            print()
            print(format_table({name: row for name, row in per_process.items()}))
        print()
    print(json.dumps(record, sort_keys=True, default=float))
    return 0 if not total or total["exit_code"] == 0 else total["exit_code"]
