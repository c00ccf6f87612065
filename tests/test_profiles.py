"""``python -m pipeline profile NAME``: DVC gets a stage for every fusion method of the profile."""
from __future__ import annotations

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.profiles import BEGIN, check, check_file, switch

PARAMS = """\
# a comment that must survive
profile: demo   # the active profile
fusion:
  methods:
    ir: {}
    mlfuse: {weights: trained}
  datasets: [m3fd, msrs]    # kept
  profiles:
    shared:
      methods:
        seafusion: {kind: seafusion, weights: ../shared/weights/seafusion/fusionmodel_final.pth}
        mlfuse: {device: cpu}
    full:
      methods:
        tardal_plus: {kind: tardal, weights: /weights/tardal/tardal+.pt}
metrics:
  splits: [test]
"""


def test_switch_writes_the_profile_and_its_methods_and_back(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert switch(path, "shared") == {"seafusion": {"kind": "seafusion",
                                                    "weights": "../shared/weights/seafusion/fusionmodel_final.pth"}}
    text = path.read_text()
    raw = yaml.safe_load(text)
    assert raw["profile"] == "shared" and "# the active profile" in text and "# a comment" in text
    assert list(raw["fusion"]["methods"]) == ["ir", "mlfuse", "seafusion"]   # what DVC's foreach sees
    assert raw["fusion"]["methods"]["mlfuse"] == {"weights": "trained"}     # base entries untouched
    assert raw["fusion"]["datasets"] == ["m3fd", "msrs"] and raw["metrics"] == {"splits": ["test"]}
    assert load_params(path)["fusion"]["methods"]["mlfuse"] == {"weights": "trained", "device": "cpu"}
    check_file(path)
    switch(path, "full")
    assert list(yaml.safe_load(path.read_text())["fusion"]["methods"]) == ["ir", "mlfuse", "tardal_plus"]
    switch(path, "demo")
    assert path.read_text() == PARAMS                                       # byte for byte
    check_file(path)


def test_check_names_the_command_when_stages_do_not_match(tmp_path, monkeypatch):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.replace("profile: demo", "profile: shared"))       # edited by hand
    with pytest.raises(ConfigError, match=r"no DVC stage for seafusion.*python -m pipeline profile shared"):
        check_file(path)
    switch(path, "shared")
    stale = path.read_text().replace("fusionmodel_final.pth}\n    # <<<", "other.pth}\n    # <<<")
    with pytest.raises(ConfigError, match="out of date or not in this profile: seafusion"):
        check(stale, "shared")
    monkeypatch.setenv("FUSEBENCH_PROFILE", "demo")
    with pytest.raises(ConfigError, match="profile 'demo'.*seafusion"):
        check_file(path)


def test_profile_command(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert main(["profile", "shared", "--params", str(path)]) == 0
    assert "1 more fusion methods: seafusion" in capsys.readouterr().out and BEGIN in path.read_text()
    path.write_text("fusion:\n  methods: {ir: {}}\n")
    assert main(["profile", "shared", "--params", str(path)]) == 2          # one-line error


def test_repository_params_switch_cleanly(repo_root, tmp_path):
    """Every profile of the repository's params.yaml switches and checks; demo adds only its controls."""
    path = tmp_path / "params.yaml"
    original = (repo_root / "params.yaml").read_text()
    path.write_text(original)
    check_file(path)
    assert set(switch(path, "demo")) == {"oracle", "shuffled"} and path.read_text() == original
    for profile in ("shared", "full"):
        methods = switch(path, profile)
        assert {"seafusion", "tardal_plus", "pmgi_medical", "u2fusion", "mff_gan", "didfuse"} <= set(methods)
        check_file(path)
        assert set(load_params(path)["fusion"]["methods"]) >= set(methods)
    switch(path, "demo")
    assert path.read_text() == original


def test_unknown_top_level_section_is_an_error_naming_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: demo\nseed: 0\ndetecton: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="detecton"):
        load_params(path)


def test_known_sections_are_those_of_the_repository_params(repo_root):
    from pipeline.config import SECTIONS, load_raw

    assert set(load_raw(repo_root / "params.yaml")) == set(SECTIONS)
