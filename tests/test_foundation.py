"""The skeleton everything stands on: CLI, params profiles, hermetic settings, atomic writes."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import cli, config, hermetic, imageio, results
from pipeline.errors import ConfigError, DataError


def _subcommands(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def test_every_command_has_help(capsys):
    parser = cli.build_parser()
    commands = _subcommands(parser)
    assert {"bench"} <= set(commands)
    for name, sub in commands.items():
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert "usage:" in capsys.readouterr().out
        for bench_name in _subcommands(sub) if name == "bench" else ():
            with pytest.raises(SystemExit):
                cli.main(["bench", bench_name, "--help"])


def test_module_and_console_script_share_the_cli(repo_root):
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True,
                         cwd=repo_root, timeout=120)
    assert out.returncode == 0 and "COMMAND" in out.stdout
    script = Path(sys.executable).parent / "fusebench"
    assert script.is_file(), "console script 'fusebench' is not installed"
    out2 = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert out2.stdout == out.stdout


def test_profiles_resolve_per_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: demo\nseed: 1\ndetection:\n  imgsz: 640\n  epochs: 36\n"
                    "  profiles:\n    demo: {imgsz: 160}\n    full: {epochs: 300}\n")
    demo = config.load_params(path)
    assert demo["detection"] == {"imgsz": 160, "epochs": 36} and demo["profile"] == "demo"
    full = config.load_params(path, profile="full")
    assert full["detection"] == {"imgsz": 640, "epochs": 300}
    assert config.section(full, "detection.epochs") == 300
    assert config.section(full, "detection.missing", "x") == "x"
    with pytest.raises(ConfigError, match="unknown profile"):
        config.load_params(path, profile="huge")


def test_repository_params_resolve_for_both_profiles(repo_root):
    for profile in config.PROFILES:
        params = config.load_params(repo_root / "params.yaml", profile=profile)
        assert params["profile"] == profile
        assert "m3fd" in params["datasets"] and "msrs" in params["datasets"]


def test_hermetic_settings_stay_inside_the_state_folder(tmp_path, monkeypatch):
    for key in hermetic.offline_environment(tmp_path):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://example.invalid/api")
    monkeypatch.delenv("FUSEBENCH_KEEP_PREFECT_API_URL", raising=False)
    values = hermetic.apply(tmp_path, force=True)
    assert values["YOLO_OFFLINE"] == "1" and values["HF_HUB_OFFLINE"] == "1"
    assert values["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    for key in ("YOLO_CONFIG_DIR", "PREFECT_HOME", "HF_HOME", "TORCH_HOME", "MPLCONFIGDIR"):
        assert Path(values[key]).is_relative_to(tmp_path)
    assert (tmp_path / "ultralytics" / "Ultralytics" / "Arial.ttf").stat().st_size > 10_000
    assert "PREFECT_API_URL" not in os.environ
    hermetic.apply(Path(os.environ["FUSEBENCH_STATE"]), force=True)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    results.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with imageio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert results.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_json_writer_converts_numpy_and_nan(tmp_path):
    path = results.write_json(tmp_path / "r.json", {"x": np.float32(0.5), "n": float("nan"),
                                                    "a": np.arange(3), "p": tmp_path})
    assert results.read_json(path) == {"x": 0.5, "n": None, "a": [0, 1, 2], "p": str(tmp_path)}
    block = results.provenance({"seed": 0}, {"test": ["a"]})
    assert block["versions"]["torch"].startswith("2.") and block["params"] == {"seed": 0}


def test_image_roundtrip_and_normalisation(tmp_path):
    grey = (np.arange(48, dtype=np.uint8).reshape(6, 8)) * 5
    imageio.write_image(tmp_path / "g.png", np.repeat(grey[:, :, None], 3, axis=2))
    assert imageio.read_image(tmp_path / "g.png").shape == (6, 8)  # equal channels -> grey
    colour = np.zeros((6, 8, 3), np.uint8)
    colour[..., 0] = 200  # red
    imageio.write_image(tmp_path / "c.png", colour)
    back = imageio.read_image(tmp_path / "c.png")
    assert back.shape == (6, 8, 3) and back[0, 0].tolist() == [200, 0, 0]
    assert imageio.read_image(tmp_path / "c.png", "gray").shape == (6, 8)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: image file is empty"):
        imageio.read_image(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="junk.png: cannot decode"):
        imageio.read_image(tmp_path / "junk.png")


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    from pipeline.commands import bench  # noqa: F401  (the CLI exists)
    parser = cli.build_parser()
    sub = _subcommands(parser)
    if "validate" not in sub:
        pytest.fail("validate command missing")
    code = cli.main(["validate", "--dataset", "pairs", "--root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code != 0 and "nowhere" in err and "Traceback" not in err


def test_device_cuda_without_cuda_is_an_error_and_auto_picks_cuda(monkeypatch):
    """Issue #18 defect 6: ``device: cuda`` on a machine without CUDA fails (it used to fall back to
    the CPU with a warning); ``auto`` picks CUDA when present, the CPU otherwise."""
    import torch

    from pipeline.device import resolve_device
    from pipeline.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for asked in ("cuda", "cuda:0", "CUDA:1"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(asked)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_unknown_keys_are_errors_naming_key_and_section(tmp_path):
    """Issue #18 defect 6: typos in dataset, metrics and report sections are errors (they used to be
    ignored: ``conventon: cddfuse`` ran the matlab convention, ``bootstrap_sample`` kept 1000)."""
    from flows.metrics import metrics_config
    from pipeline.datasets import load_configured, load_dataset
    from pipeline.errors import ConfigError
    from pipeline.report import report_config

    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    with pytest.raises(ConfigError, match=r"datasets.tno: unknown key\(s\) \['spilt'\]"):
        load_configured({"datasets": {"tno": {"kind": "pairs", "root": str(tmp_path), "spilt": "all"}}}, "tno")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['box_classes'\] for a 'pairs' dataset"):
        load_dataset("pairs", tmp_path, box_classes=["Car"])
    params = config.load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["metrics"]["conventon"] = "cddfuse"
    with pytest.raises(ConfigError, match=r"metrics: unknown key\(s\) \['conventon'\]"):
        metrics_config(params)
    params = config.load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["report"]["bootstrap_sample"] = 10
    with pytest.raises(ConfigError, match=r"report: unknown key\(s\) \['bootstrap_sample'\]"):
        report_config(params)
    del params["report"]["bootstrap_sample"], params["report"]["confidence"]
    with pytest.raises(ConfigError, match=r"report: missing key\(s\) \['confidence'\]"):
        report_config(params)


def test_fast_yaml_reads_the_repository_files_as_the_python_parser_does(repo_root):
    import yaml

    for name in ("params.yaml", "dvc.yaml"):
        text = (repo_root / name).read_text(encoding="utf-8")
        assert repr(config.safe_yaml(text)) == repr(yaml.safe_load(text))
    assert config.safe_yaml("a: [1, 2.5, null, yes, '3']") == {"a": [1, 2.5, None, True, "3"]}


def test_allocator_settings_reach_this_process_and_its_children_unless_the_user_set_his_own(tmp_path, repo_root):
    """glibc's malloc keeps blocks up to 32 MB on the heap (hermetic.keep_large_blocks): mallopt in
    the process that applies the settings, MALLOC_* variables for the processes it starts; a user's
    own MALLOC_* setting switches both off."""
    script = ("import json, os; from pipeline import hermetic; values = hermetic.apply(); "
              "print(json.dumps([hermetic.keep_large_blocks(), os.environ.get('MALLOC_MMAP_THRESHOLD_')]))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base.update(PYTHONPATH=str(repo_root), FUSEBENCH_STATE=str(tmp_path / "state"))

    def run(**extra):
        out = subprocess.run([sys.executable, "-c", script], env={**base, **extra}, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    tuned, child = run()
    assert child == str(32 * 2**20)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert tuned is True
    assert run(MALLOC_ARENA_MAX="2") == [False, str(32 * 2**20)]
    assert run(MALLOC_MMAP_THRESHOLD_="1000000") == [False, "1000000"]


def test_importing_the_library_changes_nothing(tmp_path, repo_root):
    """Issue #18 defect 8: importing ``pipeline`` (and its light modules) leaves the environment and
    the current folder as they were: no ``./.cache``, no font copy, the user's ``OMP_NUM_THREADS``
    and ``PREFECT_API_URL`` kept. The CLI and the flows apply the hermetic settings themselves."""
    script = ("import json, os; before = dict(os.environ); "
              "import pipeline, pipeline.config, pipeline.fingerprint, pipeline.codegraph, pipeline.hermetic; "
              "print(json.dumps({k: (before.get(k), os.environ.get(k)) for k in set(before) | set(os.environ) "
              "if before.get(k) != os.environ.get(k)}))")
    env = {k: v for k, v in os.environ.items() if k not in hermetic.offline_environment(tmp_path)
           and k not in ("FUSEBENCH_STATE", "FUSEBENCH_KEEP_PREFECT_API_URL")}
    env.update(PYTHONPATH=str(repo_root), HOME=str(tmp_path / "home"), OMP_NUM_THREADS="3",
               PREFECT_API_URL="http://example.invalid/api")
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "{}"
    assert list(work.iterdir()) == [] and not (tmp_path / "home").exists()
