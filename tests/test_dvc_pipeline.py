"""DVC caching behaviour of the real dvc.yaml on the demo profile with tiny settings.

A temporary git + DVC project gets a copy of ``dvc.yaml``, ``params.yaml`` (shrunk: a few small demo
scenes, two fusion methods, one-epoch training at tiny sizes) and the code. Every stage runs its
real flow (demo data, VSM, MLFuse training, fusion, metrics, YOLO detection, DeepLabV3+
segmentation, report) with one shared Prefect server (``python -m flows.server -- dvc repro``).
The tests then check which stages each change re-runs, and that a failing method does not hide
the others.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow,              # about 3-4 min alone (runs by default)
              pytest.mark.timeout(2400)]   # the module fixture runs the whole pipeline

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".cache")
ALWAYS = {"inputs", "weights"}   # always_changed: content manifests of the data (pipeline/inputs.py) and weights


def run(cmd: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **extra_env, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def repro(project: Path, *args: str, server: bool = False) -> set[str]:
    """Run ``dvc <args>`` (with one shared Prefect server when real flows run); return the stages
    that ran."""
    shared = [str(BIN / "python"), "-m", "flows.server", "--"] if server else []
    out = run([*shared, str(BIN / "dvc"), *args], project)
    return set(re.findall(r"Running stage '([^']+)'", out.stdout))


def dvc(project: Path, *args: str) -> str:
    return run([str(BIN / "dvc"), *args], project).stdout


def tiny_params(params: dict) -> dict:
    params["device"] = "cpu"
    params["orchestration"].update(task_runner="thread", batch_size=8)
    params["demo_data"].update(m3fd_pairs=10, msrs_train=6, msrs_test=3, height=96, width=128)
    train = params["train"]["methods"]["mlfuse"]
    params["train"]["methods"] = {"mlfuse": train}   # one trained method keeps the test short
    train.pop("profiles", None)
    train.update(sets=["msrs"], splits=["train"], epochs=1, batch_size=2, crop=64, checkpoint_every=1,
                 preview_every=1, preview_count=1)
    fusion = params.setdefault("fusion", {})
    fusion["methods"] = {"ir": {}, "average": {}}
    fusion.get("profiles", {}).pop("demo", None)   # no controls here (test_controls / test_verdicts)
    fusion["datasets"] = ["m3fd", "msrs"]
    params["prior"].pop("profiles", None)
    params["prior"]["candidates"] = ["average"]          # Diff-IF's prior over the configured methods
    diffif = params["diffif"]["train"]
    demo_arch = diffif["profiles"]["demo"]["arch"]
    diffif.pop("profiles", None)
    diffif.update(arch=demo_arch, scale=1.0, crop=64, epochs=1, batch_size=2, crops_per_pair=1,
                  preview_every=1, preview_count=1)
    params.setdefault("metrics", {}).update(convention="matlab", only=["EN", "SF"], splits=None)
    detection = params["detection"]
    detection.pop("profiles", None)      # tiny values set directly (a profile block would override them)
    detection.update(model="configs/detection/yolo-pico.yaml", imgsz=64, epochs=1, batch=4, nbs=4,
                     warmup_epochs=0, mosaic=0.0, seeds=[0])
    segmentation = params["segmentation"]
    segmentation.pop("profiles", None)
    segmentation["model"].update(encoder="resnet18", decoder_channels=16)
    segmentation["train"].update(epochs=1, batch_size=2, crop=[32, 32], scale=[1.0, 1.0])
    segmentation["eval"].update(overlays=1)
    params["report"].update(bootstrap_samples=50, example_scenes=1)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcproject")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, root / name)
    for folder in ("flows", "pipeline", "configs"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, root / folder, ignore=IGNORE)
    params = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run([str(BIN / "dvc"), "init", "-q"], root)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "init"], root)
    ran = repro(root, "repro", server=True)
    methods = ("ir", "average")
    expected = {"demo_data", *ALWAYS, "vsm", "train@mlfuse", "weights", "prior", "train_diffif", "report", "perturb", "frozen", "robustness",
                *(f"{s}@{m}" for s in ("fuse", "metrics", "detect", "segment") for m in methods)}
    assert ran == expected
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "first run"], root)
    return root


def test_every_params_key_of_dvc_yaml_exists_in_params_yaml():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        methods = params["train" if name == "train" else "fusion"]["methods"]
        for key in body.get("params", []):
            for method in (methods if "${key}" in key else [None]):
                node = params
                for part in key.replace("${key}", str(method)).split("."):
                    assert isinstance(node, dict) and part in node, f"{name}: params key {key} missing"
                    node = node[part]


def test_second_repro_does_nothing(project):
    assert repro(project, "repro") == ALWAYS
    status = dvc(project, "status")         # only the always-changed manifest stages are listed
    assert set(re.findall(r"^(\S+):\s*$", status, flags=re.M)) <= ALWAYS and "always changed" in status
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["detect@ir"]["params"]["params.yaml"]["detection"] == \
        yaml.safe_load((project / "params.yaml").read_text())["detection"]
    assert (project / "data/fused/msrs/average").is_dir()
    assert not list(project.rglob("*.partial-*"))          # no staging folder left behind


def test_metrics_and_plots_are_found(project):
    metrics = json.loads(dvc(project, "metrics", "show", "--json"))
    files = next(iter(metrics.values()))["data"]
    assert {"results/metrics/ir/summary.json", "results/fusion/average/m3fd.json",
            "results/training/mlfuse/summary.json", "results/report/summary.json"} <= set(files)
    en = files["results/metrics/average/summary.json"]["data"]["datasets"]["m3fd"]["EN"]
    assert en["n"] == 10 and 0 < en["mean"] < 8
    plots = json.loads(dvc(project, "plots", "show", "--json"))["data"]
    assert {"mlfuse_losses", "results/report/gains.csv"} <= set(plots)
    losses = plots["mlfuse_losses"][0]["content"]["data"]["values"]
    assert {row["field"] for row in losses} == {"total", "edge", "saliency", "cross_modal", "fusion"}


def test_detection_param_reruns_detection_and_report_only(project):
    before = yaml.safe_load((project / "params.yaml").read_text())["detection"]
    ran = repro(project, "exp", "run", "-S", "detection.epochs=2", "--name", "det2", server=True)
    assert ran == {*ALWAYS, "detect@ir", "detect@average", "frozen", "robustness", "report"}  # frozen: same recipe
    shown = json.loads(dvc(project, "exp", "show", "--json"))
    (exp,) = [e for row in shown for group in (row.get("experiments") or []) for e in group["revs"]
              if e["name"] == "det2"]
    assert exp["data"]["params"]["params.yaml"]["data"]["detection"]["epochs"] == 2
    summary = exp["data"]["metrics"]["results/report/summary.json"]["data"]   # read from the cache
    assert 0.0 <= summary["detection"]["m3fd"]["ir"]["mAP50"] <= 1.0
    assert summary["detection"]["m3fd"]["average"]["seeds"] == 1
    assert yaml.safe_load((project / "params.yaml").read_text())["detection"] == {**before, "epochs": 2}


def test_new_fusion_method_runs_only_its_stages_and_the_report(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["fusion"]["methods"]["max"] = {}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = repro(project, "repro", server=True)
    # prior: its params dependency is the whole fusion.methods (the candidates' options; DVC has no
    # per-item keys there); it re-scores from its content cache, so nothing is recomputed
    assert ran == {*ALWAYS, "fuse@max", "metrics@max", "detect@max", "segment@max", "prior", "robustness", "report"}
    assert repro(project, "repro") == ALWAYS


def test_mlfuse_training_change_is_seen_by_training_and_fusion_only(project):
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["train"]["methods"]["mlfuse"]["lr"] = 5.0e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(project, "status")
    changed = set(re.findall(r"^(\S+):\s*$", status, flags=re.M))
    assert changed == {*ALWAYS, "vsm", "train@mlfuse"}
    stale = set(re.findall(r"Running stage '([^']+)'", dvc(project, "repro", "--dry")))
    assert {"vsm", "train@mlfuse"} <= stale and not any(s.startswith(("detect", "segment", "metrics")) for s in stale)
    (project / "params.yaml").write_text(original)
    # only the always_changed stages are listed once the original params are back
    assert set(re.findall(r"^(\S+):\s*$", dvc(project, "status"), flags=re.M)) <= ALWAYS


def test_failing_method_does_not_hide_the_others_and_rerun_finishes(project, tmp_path):
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    missing = tmp_path / "published-results"        # a precomputed method whose folder is absent
    params["fusion"]["methods"]["broken"] = {"kind": "precomputed", "folder": str(missing)}
    params["fusion"]["methods"]["laplacian"] = {"levels": 2}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([str(BIN / "python"), "-m", "flows.server", "--", str(BIN / "dvc"), "repro", "--keep-going"],
              project, check=False)
    assert out.returncode != 0
    ran = set(re.findall(r"Running stage '([^']+)'", out.stdout))
    assert "fuse@broken" in ran and "detect@broken" not in ran and "report" not in ran
    assert {"fuse@laplacian", "metrics@laplacian", "detect@laplacian", "segment@laplacian"} <= ran
    assert str(missing) in out.stderr + out.stdout             # the flow says which method failed and why
    status = dvc(project, "status")
    assert "fuse@broken" in status and "detect@laplacian:" not in status   # the others are done and cached
    params["fusion"]["methods"].pop("broken")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # re-run finishes only the rest (prior: fusion.methods is its params dependency; it re-scores from cache)
    assert repro(project, "repro", server=True) == {*ALWAYS, "prior", "robustness", "report"}
    (project / "params.yaml").write_text(original)
