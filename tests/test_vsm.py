"""VSM (spec/vsm.md §1-2), its CLI and stage, and the VSM-WLS rule (§3) against ../shared/reference/vsm."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.fusion.vsm_wls import box_mean, decompose, gaussian_kernel_1d, vsm_wls_fuse
from pipeline.imageio import read_image, write_image
from pipeline.vsm import compute_vsm_maps, map_path, saliency_table, to_uint8, vsm, vsm_file


@pytest.mark.shared
def test_vsm_matches_reference_maps(shared_reference):
    ref = shared_reference / "vsm"
    for key, shape in (("img1", (329, 500, 3)), ("img2", (329, 500))):
        ours = vsm_file(ref / f"{key}_0.png")
        expected = np.load(ref / f"vsm_{key}_0.npy")
        assert ours.shape == shape and ours.dtype == np.float64
        np.testing.assert_array_equal(ours, expected)
        png = read_image(ref / f"vsm_{key}_0.png", mode="rgb")
        eight = to_uint8(ours)
        if eight.ndim == 2:
            eight = np.repeat(eight[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(eight, png)


def test_vsm_definition_by_hand():
    image = np.array([[0, 0, 1], [3, 3, 3]], dtype=np.uint8)
    # h[0]=2, h[1]=1, h[3]=3: T[0]=0+1+9=10, T[1]=2+0+6=8, T[3]=6+2+0=8
    np.testing.assert_array_equal(saliency_table(np.bincount(image.ravel(), minlength=256))[[0, 1, 3]],
                                  [10.0, 8.0, 8.0])
    np.testing.assert_array_equal(vsm(image), [[1, 1, 0], [0, 0, 0]])
    # float input is quantised with round half up: 0.5/255 -> 1, 0.49/255 -> 0
    np.testing.assert_array_equal(vsm(image / 255.0), vsm(image))
    assert np.array_equal(vsm(np.array([[0.5 / 255, 0.49 / 255, 1.0]])), vsm(np.array([[1, 0, 255]], np.uint8)))


def test_vsm_joint_rule_and_degenerate_cases():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    joint = vsm(rgb)
    assert joint.shape == rgb.shape and joint.min() == 0.0 and joint.max() == 1.0
    # one shared histogram: equal values in different channels get equal saliency
    flat = vsm(rgb.reshape(20, 90))
    np.testing.assert_array_equal(joint.reshape(20, 90), flat)
    # tripled grey image == grey image (counts cancel in the min-max)
    grey = rgb[:, :, 0]
    np.testing.assert_allclose(vsm(np.repeat(grey[:, :, None], 3, axis=2))[:, :, 1], vsm(grey), atol=1e-15)
    # constant image and constant saliency: defined as 1 everywhere
    np.testing.assert_array_equal(vsm(np.full((4, 5), 7, np.uint8)), np.ones((4, 5)))
    np.testing.assert_array_equal(vsm(np.array([[0, 255]], np.uint8)), [[1.0, 1.0]])
    assert to_uint8(np.array([0.5 / 255, 0.499 / 255]))[0] == 1


@pytest.mark.shared
def test_vsm_cli_writes_map_and_png(shared_reference, tmp_path):
    src = shared_reference / "vsm" / "img2_0.png"
    out, png = tmp_path / "m.npy", tmp_path / "m.png"
    assert main(["vsm", str(src), "--out", str(out), "--png", str(png)]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(shared_reference / "vsm" / "vsm_img2_0.npy"))
    np.testing.assert_array_equal(read_image(png), read_image(shared_reference / "vsm" / "vsm_img2_0.png"))
    assert main(["vsm", str(tmp_path / "missing.png"), "--out", str(out)]) == 2


def test_vsm_stage_layout_and_resume(tmp_path):
    from pipeline.datasets import Sample

    rng = np.random.default_rng(1)
    vis = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    write_image(tmp_path / "vi.png", vis)
    write_image(tmp_path / "ir.png", ir)
    sample = Sample(name="a", split="train", ir=tmp_path / "ir.png", vis=tmp_path / "vi.png")
    out = tmp_path / "vsm"
    first = compute_vsm_maps([sample], out, "road", progress=False)
    assert first["computed"] == 2
    np.testing.assert_array_equal(np.load(map_path(out, "road", "a", "img2")), vsm(ir))
    np.testing.assert_array_equal(np.load(map_path(out, "road", "a", "img1")), vsm(vis))
    assert compute_vsm_maps([sample], out, "road", progress=False)["skipped"] == 2
    write_image(tmp_path / "ir.png", ir[:8])
    with pytest.raises(DataError, match="size mismatch") as err:
        compute_vsm_maps([sample], tmp_path / "other", "road", progress=False)
    assert "ir.png" in str(err.value)


@pytest.mark.shared
def test_vsm_wls_matches_octave_reference(shared_reference):
    ref = shared_reference / "vsm"
    i1 = np.load(ref / "wls_input_img1_gray.npy")
    i2 = read_image(ref / "img2_0.png") / 255.0
    fused = vsm_wls_fuse(i1, i2)
    assert np.abs(fused - np.load(ref / "wls_fused_pair0.npy")).max() < 1e-9


def test_vsm_wls_building_blocks():
    assert gaussian_kernel_1d(2.0).size == 13 and gaussian_kernel_1d(8.0).size == 49
    x = np.arange(20.0).reshape(4, 5)
    # border-truncated box mean: corner of a 3×3 window sees a 2×2 block
    assert box_mean(x, 1)[0, 0] == pytest.approx((0 + 1 + 5 + 6) / 4)
    rng = np.random.default_rng(2)
    img = rng.random((40, 50))
    details, base = decompose(img)
    np.testing.assert_allclose(sum(details) + base, img, atol=1e-12)
    with pytest.raises(ValueError, match="equal size"):
        vsm_wls_fuse(img, img[:10])
