"""The sensitivity check that opens the report: can this downstream budget see a difference at all?

Controls are fusion "methods" whose answer is known in advance (:mod:`pipeline.fusion.controls`):
a **positive** control (``oracle``: infrared plus the visible image exactly where only the visible
image carries the evidence) must come out *better* than the best single modality, a **negative**
control (``shuffled``: another scene's image, so image and labels no longer match) must come out
*worse*. Each is judged with the same two-level interval and seed rule as every method
(:func:`pipeline.report.gains.verdict`). The check **passes** when every required task (each task
with a configured dataset: detection and segmentation) has results, and on every task every
configured positive control is "better" and every negative control "worse", with at least one
control of each kind. If it fails, a "better"/"worse" verdict about a real method would be
read off a benchmark that cannot tell a known gain or a known loss from noise, so every method's
verdict becomes "inconclusive: sensitivity check failed". With no control configured at all
(e.g. real data, where no oracle exists) the check is "not run" and the report says so.

This is the logic of positive and negative controls in experimental design (an assay is valid
only if its controls give their known results; e.g. Glass, *Experimental Design for Biologists*,
2014, ch. 4) applied to a benchmark.
"""
from __future__ import annotations

from pipeline.report.gains import HEADLINE, BootstrapConfig, verdict

EXPECTED = {"positive": "better", "negative": "worse"}
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


def _check(task: str, dataset: str, method: str, role: str, entry: dict | None, config: BootstrapConfig) -> dict:
    row = {"task": task, "dataset": dataset, "control": method, "role": role, "expected": EXPECTED[role]}
    if entry is None:
        return {**row, "verdict": "missing", "reason": f"no {task} results for {method}", "passed": False}
    ci = entry.get("ci95") or [None, None]
    seeds = entry.get("seeds_used")
    word, reason = verdict(ci[0], ci[1], min(seeds) if seeds else entry.get("seeds"), config.min_seeds)
    return {**row, "verdict": word, "reason": reason, "vs_best_single": entry.get("vs_best_single"),
            "interval": list(ci), "seeds": seeds, "passed": word == EXPECTED[role]}


def sensitivity_check(gains: dict, roles: dict[str, str], config: BootstrapConfig,
                      required: tuple[str, ...] | list[str] = ()) -> dict:
    """``{"status": passed|failed|not run, "message", "checks": [...]}`` for the controls ``roles``
    (``{method: "positive" | "negative"}``) in ``gains`` (:func:`pipeline.report.gains.compute_gains`);
    ``required``: tasks that must have results (a task without any fails the check)."""
    if not roles:
        return {"status": NOT_RUN, "passed": False, "checks": [], "message": "no control is configured (fusion.methods has "
                "no `kind: control` entry), so nobody has checked that this downstream budget can see a "
                "difference; read the verdicts with that in mind."}
    checks, problems = [], []
    tasks = [t for t in HEADLINE if gains.get(t)]
    for task in tasks:
        for dataset, per_method in gains[task].items():
            for role in EXPECTED:
                if role not in roles.values():
                    problems.append(f"no {role} control is configured for {task}")
            for method, role in roles.items():
                checks.append(_check(task, dataset, method, role, per_method.get(method), config))
    problems += [f"no {task} results" for task in required if task not in tasks]
    if not tasks and not required:
        problems.append("no downstream results yet")
    failed = [c for c in checks if not c["passed"]]
    status = FAILED if failed or problems else PASSED
    if status == PASSED:
        message = ("every positive control is significantly better and every negative control "
                   "significantly worse than the best single modality, on every task "
                   f"(with >= {config.min_seeds} seeds).")
    else:
        why = problems + [f"{c['control']} ({c['role']}) on {c['task']}/{c['dataset']}: {c['verdict']}"
                          f" ({c['reason']}), expected {c['expected']}" for c in failed]
        message = ("the downstream budget is too small to judge any method (" + "; ".join(why)
                   + "). No method gets a better/worse verdict.")
    return {"status": status, "passed": status == PASSED, "message": message, "checks": checks,
            "min_seeds": config.min_seeds}


def apply_verdicts(gains: dict, roles: dict[str, str], check: dict, config: BootstrapConfig) -> None:
    """Write ``verdict`` and ``verdict_reason`` into every gain entry; real methods' verdicts are
    suppressed ("inconclusive: sensitivity check failed") when the check failed. Controls keep
    their own verdict (it is what the check read) and carry ``control`` = their role."""
    ok = check["status"] != FAILED
    for per_dataset in gains.values():
        for per_method in per_dataset.values():
            for method, entry in per_method.items():
                if entry.get("vs_best_single") is None:
                    entry["verdict"], entry["verdict_reason"] = "n/a", "no single-modality baseline"
                    continue
                ci = entry.get("ci95") or [None, None]
                seeds = entry.get("seeds_used")
                word, reason = verdict(ci[0], ci[1], min(seeds) if seeds else entry.get("seeds"),
                                       config.min_seeds, ok or method in roles)
                entry["verdict"], entry["verdict_reason"] = word, reason
                if method in roles:
                    entry["control"] = roles[method]
