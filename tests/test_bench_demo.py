"""``python -m pipeline bench demo``: the per-stage budget table from flow-run summaries."""
from __future__ import annotations

import json

from pipeline.benchmarks import demo


def _summary(folder, name, stage, seconds, units, process=None):
    record = {"stage": stage, "status": "completed", "seconds": seconds,
              "units": [{"unit": f"u{i}", "seconds": s, "status": "completed"} for i, s in enumerate(units)]}
    if process:
        record["process"] = process
    (folder / f"{name}.json").write_text(json.dumps(record))


def test_rows_split_startup_flow_work_prefect_and_teardown(tmp_path):
    _summary(tmp_path, "detect_ir", "detect", 10.0, [6.0, 2.0],
             {"startup_seconds": 3.0, "exit_seconds": 14.5, "exit_cpu_seconds": 20.0})
    _summary(tmp_path, "detect_vis", "detect", 5.0, [4.0], {"startup_seconds": 1.0, "process_seconds": 6.0,
                                                            "cpu_seconds": 7.0})
    _summary(tmp_path, "fuse_ir", "fuse", 2.0, [1.5])            # an old summary without process timing
    (tmp_path / "notes.json").write_text("[1, 2]")                  # not a summary: ignored
    rows, per_process = demo.collect(tmp_path)
    assert list(rows) == ["fuse", "detect"]                         # pipeline order
    det = rows["detect"]
    assert det["procs"] == 2 and det["wall"] == 20.5 and det["startup"] == 4.0 and det["flow"] == 15.0
    assert det["work"] == 12.0 and det["prefect"] == 3.0 and det["teardown"] == 1.5 and det["cpu"] == 27.0
    assert rows["fuse"]["wall"] == 2.0 and rows["fuse"]["cpu"] == 0.0
    table = demo.format_table(rows, {"wall_seconds": 30.0, "cpu_seconds": 40.0})
    assert "| detect | 2 | 20.5 | 4.0 | 15.0 | 12.0 | 3.0 | 1.5 | 27.0 |" in table
    assert "| DVC + server (rest) | | 8 |" in table                  # 30 - (20.5 + 2.0)
    assert set(per_process) == {"detect_ir", "detect_vis", "fuse_ir"}


def test_command_prints_table_and_json(tmp_path, capsys):
    _summary(tmp_path, "segment_ir", "segment", 4.0, [3.0], {"startup_seconds": 2.0, "exit_seconds": 6.5})

    class Args:
        run = force = per_process = json = False
        flow_runs = str(tmp_path)

    assert demo.run(Args()) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| stage |") and json.loads(out[-1])["stages"]["segment"]["startup"] == 2.0
    Args.flow_runs = str(tmp_path / "none")
    assert demo.run(Args()) == 1
