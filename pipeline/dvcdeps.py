"""What each DVC stage really depends on, derived from the code, and a check of ``dvc.yaml`` against it.

``dvc.yaml`` is written by hand (it stays readable, with comments) and checked by
:func:`check_dvc_yaml` (``tests/test_dvc_deps.py``, ``python -m pipeline dvc-check``). For every
stage whose command is ``python -m flows.<name>`` (``foreach`` stages expanded per item):

* **code** — every repository module the flow runs (:func:`pipeline.codegraph.module_closure`: its
  imports, also lazy ones, transitively) must lie in a ``deps`` entry (the file or a folder
  holding it), and every ``deps`` entry under ``pipeline/`` or ``flows/`` must hold at least one
  of them (no code dependency the stage never runs);
* **params** — every params key the flow's modules read (:func:`params_read`: ``section(params,
  "a.b")`` / ``checked_section(params, "a")``, ``params["a"]`` / ``params.get("a")``, f-string keys as ``*``) must be covered by a
  ``params`` entry (the key itself, a section holding it, or a per-item key ``a.${key}`` below it),
  and every ``params`` entry must be read by the flow (``device`` in a stage that never reads it
  is an error). ``orchestration`` is never a stage param (it changes how a stage runs, not what
  it writes); ``profile`` is read by every flow (:func:`pipeline.config.load_params`);
* **data** — a stage that reads ``datasets`` / ``train.methods`` / ``fusion.methods`` must depend on
  the matching manifest (:data:`DATA_DEPS`: stage ``inputs``, :mod:`pipeline.inputs`, content
  digests of the active profile's data roots and training sets; stage ``weights``,
  :mod:`pipeline.fusion.weights_index`, the methods' weights files; both rewritten on every
  ``dvc repro``), so the ``full`` profile's real data are dependencies too (``docs/dvc.md``).

A module-level read is an over-approximation (a module's keys count for every flow importing it);
:data:`NOT_READ_BY` lists the few reads that a flow imports but provably never performs, each
with its reason.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pipeline import codegraph

NEVER_PARAMS = ("orchestration",)
EVERY_FLOW_READS = ("profile",)
CODE_ROOTS = ("pipeline", "flows")
INPUTS_FLOWS = ("flows.inputs", "flows.weights")   # the manifest writers themselves
#: Manifests of the ``inputs`` stage (:mod:`pipeline.inputs`) a stage needs when it reads these keys.
DATA_DEPS = {"datasets": "results/inputs/datasets.json", "train.methods": "results/inputs/training.json",
             "fusion.methods": "models/weights"}
_SEQ = "read only when the flow runs without method= (every method in turn); the DVC stage passes method=${key}"
_VSM = ("flows.vsm calls trainer.resolve_config and load_training_sets only, never "
        "trainer.train_from_params (the reader of these keys)")
#: (flow module, key read at module level): why the flow never performs that read.
NOT_READ_BY: dict[tuple[str, str], str] = {
    ("flows.demo_data", "datasets"): "the demo writes data; pipeline.datasets is imported for its constants",
    ("flows.weights", "datasets"): "a weights record loads no dataset (pipeline.datasets comes with the fusion modules)",
    ("flows.detect", "fusion.methods"): _SEQ,
    ("flows.segment", "fusion.methods"): _SEQ,
    ("flows.frozen", "fusion.methods"): "pipeline.detection.stage / segmentation.run list the methods for "
                                        "their own flows; the frozen models train on source images only",
    ("flows.vsm", "seed"): _VSM, ("flows.vsm", "device"): _VSM, ("flows.vsm", "train.health"): _VSM,
    ("flows.vsm", "train.methods"): _VSM, ("flows.vsm", "train.methods.*"): _VSM,
    ("flows.train_diffif", "train.methods"): "its settings are diffif.train (config_key), see READ_AS",
    ("flows.train_diffif", "train.methods.*"): "its settings are diffif.train (config_key), see READ_AS",
}
#: (flow, key of DATA_DEPS): why the flow does not depend on that manifest.
NO_MANIFEST: dict[tuple[str, str], str] = {
    ("flows.prior", "fusion.methods"): "models/weights would be a cycle (weights <- train_diffif <- prior); "
                                       "the candidates' trained checkpoints are its models/trained dep",
}
#: flow -> keys it reads through an argument the scan cannot follow (with the reason).
READ_AS: dict[str, dict[str, str]] = {
    "flows.train_diffif": {"diffif.train": "config_key='diffif.train' of trainer.train_from_params"},
}
_FLOW_CMD = re.compile(r"python\s+-m\s+(flows\.[A-Za-z_][\w.]*)")


@dataclass
class Stage:
    """One expanded DVC stage: name (``fuse@ir``), flow module, deps and params entries."""

    name: str
    flow: str | None
    deps: list[str]
    params: list[str]
    item: str | None = None
    problems: list[str] = field(default_factory=list)


def _key_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
    return None


def _is_params(node: ast.AST) -> bool:
    """``params`` or ``<x>.params`` (a job's params) or ``dict(params)``."""
    if isinstance(node, ast.Name):
        return node.id == "params"
    if isinstance(node, ast.Attribute):
        return node.attr == "params"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and node.args:
        return _is_params(node.args[0])
    return False


def module_reads(path: Path) -> set[str]:
    """Dotted params keys read in one source file (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("section", "checked_section") and len(node.args) >= 2 and _is_params(node.args[0]):
                key = _key_text(node.args[1])
                if key:
                    keys.add(key)
            elif name == "get" and isinstance(func, ast.Attribute) and _is_params(func.value) and node.args:
                key = _key_text(node.args[0])
                if key:
                    keys.add(key)
            elif name in ("load_configured", "load_training_sets") and node.args and _is_params(node.args[0]):
                keys.add("datasets")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_params(node.value):
            key = _key_text(node.slice)
            if key:
                keys.add(key)
    return keys


def params_read(flow: str) -> set[str]:
    """Every params key the modules of ``flow``'s closure read, plus :data:`EVERY_FLOW_READS`,
    without :data:`NEVER_PARAMS` and :data:`NOT_READ_BY` entries."""
    keys = set(EVERY_FLOW_READS) | set(READ_AS.get(flow, {}))
    for name in codegraph.module_closure([flow]):
        keys |= module_reads(codegraph.module_file(name))
    return {k for k in keys if k.split(".")[0] not in NEVER_PARAMS and (flow, k) not in NOT_READ_BY}


def _parts(key: str, item: str | None) -> list[str]:
    key = key.replace("${key}", "*") if item is None else key.replace("${key}", item)
    return key.split(".")


def _match(a: list[str], b: list[str]) -> bool:
    return len(a) == len(b) and all(x == y or "*" in (x, y) for x, y in zip(a, b))


def covers(declared: str, read: str, item: str | None = None) -> bool:
    """Does the params entry ``declared`` make DVC re-run the stage when ``read`` changes? (the
    same key, a section above it, or — for a read collection — a per-item key below it)."""
    d, r = _parts(declared, item), _parts(read, None)
    if _match(d[:len(r)], r) and len(d) >= len(r):
        return len(d) == len(r) or "${key}" in declared
    return len(d) < len(r) and _match(d, r[:len(d)])


def _expand(name: str, body: dict, raw_params: dict) -> list[Stage]:
    if "foreach" not in body:
        return [Stage(name, _flow_of(body), list(body.get("deps") or []), _param_names(body))]
    ref = str(body["foreach"]).strip()
    node = raw_params
    for part in ref.removeprefix("${").removesuffix("}").split("."):
        node = (node or {}).get(part) if isinstance(node, dict) else None
    items = list(node or {}) if isinstance(node, (dict, list)) else []
    do = body["do"]
    out = []
    for item in items:
        sub = lambda text: str(text).replace("${key}", str(item)).replace("${item}", str(item))  # noqa: E731
        out.append(Stage(f"{name}@{item}", _flow_of(do), [sub(d) for d in _entries(do.get("deps"))],
                         _param_names(do), str(item)))   # params keep ${key}: covers() substitutes it
    return out


def _entries(items) -> list[str]:
    out = []
    for entry in items or []:
        out.extend(entry if isinstance(entry, dict) else [entry])
    return [str(e) for e in out]


def _param_names(body: dict) -> list[str]:
    return _entries(body.get("params"))


def _flow_of(body: dict) -> str | None:
    match = _FLOW_CMD.search(str(body.get("cmd", "")))
    return match.group(1) if match else None


def _interpolate(text: str, raw_params: dict) -> str:
    def value(match):
        node = raw_params
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return match.group(0)
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", value, text)


def stages(dvc_yaml: dict, raw_params: dict) -> list[Stage]:
    """The stages of a parsed ``dvc.yaml``, ``foreach`` expanded, ``${...}`` resolved from the raw params."""
    out = []
    for name, body in (dvc_yaml.get("stages") or {}).items():
        for stage in _expand(name, body, raw_params):
            stage.deps = [_interpolate(d, raw_params) for d in stage.deps]
            stage.params = [_interpolate(p, raw_params) if "${key}" not in p else p for p in stage.params]
            out.append(stage)
    return out


def _under(path: str, dep: str) -> bool:
    path, dep = path.rstrip("/"), dep.rstrip("/")
    return path == dep or path.startswith(dep + "/")


def check_stage(stage: Stage, root: Path = codegraph.PROJECT_ROOT) -> list[str]:
    """Problems of one stage (empty: its ``deps`` and ``params`` match the code)."""
    if stage.flow is None:
        return []
    problems = []
    files = [p.relative_to(root).as_posix() for p in codegraph.closure_files([stage.flow], root)]
    for path in files:
        if not any(_under(path, dep) for dep in stage.deps):
            problems.append(f"code dependency missing: {path}")
    for dep in stage.deps:
        if dep.split("/")[0] in CODE_ROOTS and not any(_under(path, dep) for path in files):
            problems.append(f"code dependency never run by {stage.flow}: {dep}")
    reads = params_read(stage.flow)
    declared = [p for p in stage.params]
    for read in sorted(reads):
        if not any(covers(p, read, stage.item) for p in declared):
            problems.append(f"params key read but not declared: {read}")
    for p in declared:
        if p.split(".")[0] in NEVER_PARAMS:
            problems.append(f"params key must not be a stage param: {p}")
        elif not any(covers(p, read, stage.item) or covers(read, p.replace("${key}", "*")) for read in reads):
            problems.append(f"params key declared but never read by {stage.flow}: {p}")
    for key, manifest in DATA_DEPS.items():
        if stage.flow in INPUTS_FLOWS:
            break
        if (stage.flow, key) in NO_MANIFEST:
            continue
        if any(covers(key, r) or covers(r, key) for r in reads) and not any(
                _under(manifest, d) or _under(d, manifest) for d in stage.deps):
            problems.append(f"reads {key} but does not depend on {manifest} (stage inputs: the content "
                            "manifest of the active profile's inputs)")
    return problems


def check_dvc_yaml(dvc_path: str | Path = "dvc.yaml", params_path: str | Path = "params.yaml",
                   root: Path | None = None) -> dict[str, list[str]]:
    """``{stage: [problem, ...]}`` for every stage of ``dvc_path`` with a problem."""
    from pipeline.config import safe_yaml

    dvc_path = Path(dvc_path)
    root = root or dvc_path.resolve().parent
    spec = safe_yaml(dvc_path.read_text(encoding="utf-8")) or {}
    raw = safe_yaml(Path(params_path).read_text(encoding="utf-8")) or {}
    out = {}
    for stage in stages(spec, raw):
        problems = check_stage(stage, root)
        if problems:
            out[stage.name] = problems
    return out


def format_problems(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{name}: {p}" for name, items in problems.items() for p in items)


def flows_of(dvc_yaml: dict) -> Iterable[str]:
    return {f for f in (_flow_of(b.get("do", b)) for b in (dvc_yaml.get("stages") or {}).values()) if f}


def suggest_code_deps(flow: str, root: Path = codegraph.PROJECT_ROOT) -> list[str]:
    """The shortest ``deps`` list covering ``flow``'s closure: a folder when every ``.py`` file under
    it is in the closure, else the single files."""
    used = {p.relative_to(root).as_posix() for p in codegraph.closure_files([flow], root)}
    out: set[str] = set()
    for path in sorted(used):
        parts = path.split("/")
        chosen = path
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if depth == 1:
                continue   # never a whole top-level package
            files = {p.relative_to(root).as_posix() for p in (root / folder).rglob("*.py")
                     if "__pycache__" not in p.parts}
            if files <= used:
                chosen = folder
                break
        out.add(chosen)
    return sorted(out)


def main() -> int:
    """``python -m pipeline.dvcdeps``: every stage's problems and the suggested code deps of its flow."""
    from pipeline.config import safe_yaml

    root = codegraph.PROJECT_ROOT
    problems = check_dvc_yaml(root / "dvc.yaml", root / "params.yaml", root)
    print(format_problems(problems) or "dvc.yaml matches the code")
    spec = safe_yaml((root / "dvc.yaml").read_text(encoding="utf-8")) or {}
    for flow in sorted(flows_of(spec)):
        print(f"\n{flow}: code deps\n" + "\n".join(f"  - {d}" for d in suggest_code_deps(flow, root)))
        print(f"{flow}: params read\n" + "\n".join(f"  - {k}" for k in sorted(params_read(flow))))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())


def path_params(raw_params: dict, prefix: str = "") -> dict[str, str]:
    """``{dotted key: path}`` of the raw params whose value is a relative path (``a/b``), outside
    ``profiles`` blocks (DVC interpolates the raw file)."""
    out = {}
    for key, value in (raw_params or {}).items():
        dotted = f"{prefix}{key}"
        if key == "profiles":
            continue
        if isinstance(value, dict):
            out.update(path_params(value, dotted + "."))
        elif isinstance(value, str) and "/" in value and " " not in value and not value.startswith("/"):
            out[dotted] = value.rstrip("/")
    return out


def repeated_literals(dvc_text: str, raw_params: dict) -> list[str]:
    """Entries of ``dvc.yaml`` (deps, outs, metrics, plots; before interpolation) that spell out a
    path ``params.yaml`` already holds: one source for every path, ``${key}`` in ``dvc.yaml``."""
    paths = path_params(raw_params)
    problems = []
    for number, line in enumerate(dvc_text.splitlines(), 1):
        entry = line.split("#")[0].strip()
        if not entry.startswith("- ") and not entry.endswith(":"):
            continue
        entry = entry.removeprefix("- ").rstrip(":").strip()
        for key, path in sorted(paths.items(), key=lambda kv: -len(kv[1])):
            if _under(entry, path):
                problems.append(f"dvc.yaml line {number}: {entry!r} repeats params key {key} ({path}); "
                                f"write ${{{key}}}")
                break
    return problems
