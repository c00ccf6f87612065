"""Report section on the networks trained in the pipeline (``train@<method>``): figures per run, the
final value of every loss component and the health verdict (:mod:`pipeline.training.health`), so a
collapsed or diverged run is flagged next to its fusion results instead of passing silently."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report.render import Table, Text
from pipeline.results import read_json
from pipeline.training.paths import RESULTS_ROOT


def training_summaries(root: str | Path, methods) -> dict[str, dict]:
    """``{method: summary.json}`` of the configured methods that have a training summary."""
    out = {}
    for method in methods:
        path = Path(root) / RESULTS_ROOT / method / "summary.json"
        if path.is_file():
            out[method] = read_json(path)
    return out


def flagged(summaries: dict[str, dict]) -> list[str]:
    """Headline lines for runs whose health is not ``ok``."""
    return [f"- WARNING: training of `{m}` was flagged **{s['health']['status']}** "
            f"({'; '.join(s['health'].get('reasons', []))}); its fusion results come from that model."
            for m, s in summaries.items() if (s.get("health") or {}).get("status", "ok") != "ok"]


def training_blocks(summaries: dict[str, dict]) -> list:
    if not summaries:
        return [Text("No method was trained in the pipeline (no results/training/<method>/summary.json).")]
    rows = []
    for method, s in summaries.items():
        health = s.get("health") or {}
        losses = ", ".join(f"{k} {v:.4g}" for k, v in (s.get("final_losses") or {}).items()
                           if isinstance(v, (int, float)))
        rows.append({"method": method, "health": health.get("status", "n/a"),
                     "epochs": str(s.get("epochs")), "steps (this run)": str(s.get("steps_this_run")),
                     "s/step": f"{s['seconds_per_step']:.3f}" if s.get("seconds_per_step") else "n/a",
                     "samples/s": f"{s['samples_per_second']:.1f}" if s.get("samples_per_second") else "n/a",
                     "pairs": s.get("sets", ""), "final losses (last epoch mean)": losses})
    frame = pd.DataFrame(rows).set_index("method")
    text = ("Networks trained by the pipeline's `train@<method>` stages on the configured training sets. "
            "Health: `collapsed` = discriminator accuracy pinned at 1 or a constant generator output, "
            "`diverged` = a non-finite loss or output (see `results/training/<method>/summary.json`; every "
            "loss component per epoch is in `losses.csv`, plotted by `dvc plots show`). Timings are wall "
            "clock on this machine.")
    return [Text(text), Table("Training runs", frame, raw=True)] + [Text(line) for line in flagged(summaries)]
