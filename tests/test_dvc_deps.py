"""dvc.yaml against the code (pipeline/dvcdeps.py): every stage's code and params dependencies are
derived from its flow's import graph and the params keys its modules read (issue #18 defect 2)."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from pipeline import dvcdeps


def test_dvc_yaml_declares_what_every_flow_reads(repo_root):
    """Fails naming the stage and the missing (or never used) code file / params key; see
    docs/dvc.md for how a new stage satisfies it."""
    problems = dvcdeps.check_dvc_yaml(repo_root / "dvc.yaml", repo_root / "params.yaml", repo_root)
    assert not problems, "dvc.yaml does not match the code:\n" + dvcdeps.format_problems(problems)


def test_params_reads_are_found_in_the_source(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(textwrap.dedent('''
        def f(params, job, method):
            a = section(params, "fusion.gray", False)
            b = params.get("device", "auto")
            c = params["seed"]
            d = section(params, f"train.methods.{method}")
            e = section(job.params, "report")
            load_configured(params, "m3fd")
            params["profile"] = "x"          # a write, not a read
            other.get("nothing")
    '''))
    assert dvcdeps.module_reads(source) == {"fusion.gray", "device", "seed", "train.methods.*", "report",
                                            "datasets"}


def test_coverage_rules():
    assert dvcdeps.covers("detection", "detection.epochs")
    assert dvcdeps.covers("fusion.methods.${key}", "fusion.methods", "ir")           # per-item key of a read collection
    assert dvcdeps.covers("train.methods.${key}", "train.methods.*", "mlfuse")
    assert dvcdeps.covers("train.methods.mlfuse", "train.methods.*")
    assert not dvcdeps.covers("fusion.methods", "fusion.gray")
    assert not dvcdeps.covers("fusion.datasets", "fusion")                            # a key does not cover its section
    assert not dvcdeps.covers("device", "devices")


def test_checker_reports_missing_and_unused_dependencies(repo_root, tmp_path):
    """A stage that misses a code file and a params key, and declares one its flow never reads."""
    spec = {"stages": {"metrics": {"foreach": "${fusion.methods}", "do": {
        "cmd": "python -m flows.metrics method=${key}",
        "deps": ["flows", "pipeline/metrics", "pipeline/detection", "results/inputs"],
        "params": ["profile", "datasets", "device", "fusion.datasets"]}}}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fusion": {"methods": {"ir": {}}}}))
    problems = dvcdeps.check_dvc_yaml(tmp_path / "dvc.yaml", tmp_path / "params.yaml", repo_root)["metrics@ir"]
    text = "\n".join(problems)
    assert "code dependency missing: pipeline/imageio.py" in text
    assert "code dependency never run by flows.metrics: pipeline/detection" in text
    assert "params key read but not declared: metrics" in text
    assert "params key declared but never read by flows.metrics: device" in text


def test_dvc_yaml_spells_no_path_that_params_holds(repo_root):
    """Issue #18 defect 5: one source for every path: ``dvc.yaml`` interpolates ``${fusion.out}``,
    ``${detection.results}``, ``${demo_data.out}``... instead of repeating ``data/fused`` & co."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    problems = dvcdeps.repeated_literals((repo_root / "dvc.yaml").read_text(), raw)
    assert not problems, "\n".join(problems)


def test_fused_root_keys_are_one_value(repo_root):
    """The stages' fused-image roots are YAML aliases of ``fusion.out`` (one value to edit)."""
    text = (repo_root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    roots = {params["fusion"]["out"], params["detection"]["fused_root"], params["segmentation"]["fused_root"],
             params["report"]["fused_dir"]}
    assert len(roots) == 1 and text.count("data/fused") == 1


def test_detection_and_segmentation_method_lists_are_gone(repo_root):
    """``detection.methods`` / ``segmentation.methods`` had no effect under DVC (one stage per
    ``fusion.methods`` entry): removed, and an old params file naming them is an error."""
    from pipeline.detection.stage import detection_settings
    from pipeline.errors import ConfigError
    from pipeline.segmentation.model import resolve_config

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert "methods" not in params["detection"] and "methods" not in params["segmentation"]
    with pytest.raises(ConfigError, match="methods"):
        detection_settings({"detection": {"methods": ["max"]}})
    with pytest.raises(ConfigError, match="methods"):
        resolve_config({**params["segmentation"], "methods": ["max"]})


def test_input_manifests_follow_the_bytes_of_the_active_profiles_data(tmp_path):
    """Issue #18 defect 2: the full profile's data roots (outside the project) are dependencies:
    the ``inputs`` stage's manifest changes when a file under a root is replaced under the same
    name (same size), and lists the inline training sets."""
    from pipeline import inputs
    from pipeline.fingerprint import clear_memo

    root = tmp_path / "M3FD"
    (root / "Ir").mkdir(parents=True)
    (root / "Ir" / "00000.png").write_bytes(b"a" * 100)
    params = {"profile": "full", "datasets": {"m3fd": {"kind": "m3fd", "root": str(root)},
                                              "gone": {"kind": "msrs", "root": str(tmp_path / "none")}},
              "train": {"methods": {"fusiongan": {"sets": {"tno": {"kind": "pairs", "root": str(root)}}},
                                    "mlfuse": {"sets": ["m3fd"]}}}}
    first = inputs.write_manifests(params, tmp_path / "out")
    assert first["datasets.json"]["gone"]["digest"] is None
    assert first["training.json"] == {"fusiongan": {"tno": {"kind": "pairs", "path": str(root),
                                                            "digest": first["datasets.json"]["m3fd"]["digest"]}}}
    (root / "Ir" / "labels.cache").write_bytes(b"ultralytics")   # ignored, as in .dvcignore
    assert inputs.write_manifests(params, tmp_path / "out") == first
    (root / "Ir" / "00000.png").write_bytes(b"b" * 100)
    clear_memo()
    second = inputs.write_manifests(params, tmp_path / "out")
    assert second["datasets.json"]["m3fd"]["digest"] != first["datasets.json"]["m3fd"]["digest"]
    assert second["training.json"] != first["training.json"]
