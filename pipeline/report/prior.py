"""Report section on Diff-IF's fusion knowledge prior (stage ``prior``, :mod:`pipeline.prior`): which
candidate won the targeted search on how many training images, under which weights, and whether the
candidate set is the paper's (faithful) or a variant; plus the label of the ``diffif_lite`` rows."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from pipeline.report.render import Table, Text
from pipeline.results import read_json

TITLE = "Which method did Diff-IF's prior pick? (targeted search)"
VARIANT_NOTE = ("`{name}` is a scaled-down VARIANT of Diff-IF (spec diffif.md §4.3), trained here; its "
                "numbers are not Diff-IF's and not comparable with published ones.")


def prior_summaries(root: str | Path, params: Mapping) -> dict[str, dict]:
    """``{dataset: summary.json}`` of the prior stage (none when it did not run)."""
    from pipeline.config import section

    results = Path(root) / str(section(dict(params), "prior.results", "results/prior"))
    if not results.is_dir():
        return {}
    return {p.parent.name: read_json(p) for p in sorted(results.glob("*/summary.json"))}


def variant_lines(methods, params: Mapping) -> list[str]:
    """One note per configured method whose registry kind is ``diffif_lite``."""
    from pipeline.config import section

    configured = section(dict(params), "fusion.methods") or {}
    return [VARIANT_NOTE.format(name=m) for m in methods
            if m == "diffif_lite" or (configured.get(m) or {}).get("kind") == "diffif_lite"]


def diffif_training_blocks(root: str | Path) -> list:
    """The ``train_diffif`` run (``results/training/diffif/summary.json``) as a training table."""
    from pipeline.report.training import training_blocks

    path = Path(root) / "results" / "training" / "diffif" / "summary.json"
    if not path.is_file():
        return []
    summary = read_json(path)
    arch = (summary.get("config") or {}).get("arch")
    return [Text(f"Diff-IF training (stage `train_diffif`, architecture `{arch}` at scale "
                 f"{(summary.get('config') or {}).get('scale')}; fused as `diffif_lite`):")] + \
        training_blocks({"diffif (train_diffif)": summary})[1:]


def prior_blocks(root: str | Path, params: Mapping, methods=()) -> list:
    summaries = prior_summaries(root, params)
    blocks = [Text(line) for line in variant_lines(methods, params)] + diffif_training_blocks(root)
    if not summaries:
        return blocks + [Text("The prior stage did not run (no results/prior/<dataset>/summary.json).")]
    for dataset, s in summaries.items():
        counts = s.get("histogram") or {}
        total = max(1, sum(counts.values()))
        frame = pd.DataFrame([{"candidate": c, "wins": str(n), "share": f"{100 * n / total:.1f} %"}
                              for c, n in counts.items()]).set_index("candidate")
        weights = ", ".join(f"{k} {v:g}" for k, v in (s.get("weights") or {}).items())
        label = s.get("label", "variant")
        kind = ("the released IVF set (faithful)" if label == "faithful" else
                f"a VARIANT set (the paper's is {', '.join(s.get('faithful_candidates') or [])})")
        blocks.append(Text(
            f"`{dataset}` {s.get('split')} split, {s.get('images')} images: per image the candidate with "
            f"the highest {weights} weighted sum of SSIM_sum (data range {s.get('ssim_data_range')}), "
            f"VIF_sum and Qabf ({s.get('convention')} convention, no normalisation; ties to the first "
            f"listed) became the training target. Candidates: {kind}. Per-image winners: "
            f"`results/prior/{dataset}/winners.csv`, every score: `scores.csv`."))
        blocks.append(Table(f"Winner histogram ({dataset})", frame, raw=True))
    return blocks
