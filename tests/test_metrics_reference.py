"""Every value in ../shared/reference/metrics/values.json, both conventions.

Tolerances (issue 4): relative difference ≤ 1e-6 for EN, SD, SF, AG, MI, SCD, VIF, Qabf, CC, MSE,
PSNR, Nabf (all variants) and FMI (all features); ≤ 1e-5 for SSIM and MS_SSIM.
"""
from __future__ import annotations

import json

import pytest

from pipeline.imageio import read_image
from pipeline.metrics import compute_metrics, metric_names

# reference key -> our metric name (the reference files use the evaluators' own names)
KEY_MAP = {"VIFF": "VIF", "Nabf_fused_first_0to255": "Nabf_fused_first"}
LOOSE = {"SSIM": 1e-5, "MS_SSIM": 1e-5}
CONVENTIONS = {"cddfuse": "python_ref", "matlab": "matlab_ref"}


@pytest.fixture(scope="module")
def reference(shared_reference):
    root = shared_reference / "metrics"
    return root, json.loads((root / "values.json").read_text())


@pytest.fixture(scope="module")
def computed(reference):
    """Our values for every (pair, fused method, convention) in values.json, computed once."""
    root, values = reference
    out = {}
    for pair, info in values["pairs"].items():
        a = read_image(root / info["sources_gray"]["A"])
        b = read_image(root / info["sources_gray"]["B"])
        for method, entry in info["methods"].items():
            fused = read_image(root / entry["fused"])
            for convention in CONVENTIONS:
                out[pair, method, convention] = compute_metrics(a, b, fused, convention)
    return out


@pytest.mark.shared
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_every_reference_value(reference, computed, convention):
    _, values = reference
    checked, failures, worst = 0, [], {}
    for pair, info in values["pairs"].items():
        for method, entry in info["methods"].items():
            ours = computed[pair, method, convention]
            for key, expected in entry[CONVENTIONS[convention]].items():
                name = KEY_MAP.get(key, key)
                assert name in ours, f"{convention}: reference metric {key} is not computed"
                rel = abs(ours[name] - expected) / abs(expected)
                worst[name] = max(worst.get(name, 0.0), rel)
                if rel > LOOSE.get(name, 1e-6):
                    failures.append(f"{pair}/{method} {name}: ours {ours[name]!r} ref {expected!r} rel {rel:.2e}")
                checked += 1
    assert not failures, "\n".join(failures)
    # every metric of the convention that has reference values was checked on all 12 triples
    assert checked == 12 * len(worst)
    assert set(worst) == set(metric_names(convention))


@pytest.mark.shared
def test_reference_relations_between_conventions(computed):
    """Documented relations: AG_ml = AG_py·HW/((H−1)(W−1)); MSE_ml = MSE_py/255²; EN identical."""
    for (pair, method, convention), ours in computed.items():
        if convention != "matlab":
            continue
        py = computed[pair, method, "cddfuse"]
        assert ours["EN"] == pytest.approx(py["EN"], rel=1e-12)
        assert ours["MSE"] == pytest.approx(py["MSE"] / 255 ** 2, rel=1e-6)
        assert ours["MI"] > py["MI"]  # bits (and the 254/255 merge) vs nats
