"""Fusion registry, classical methods, colour handling, precomputed folders and the fusion stage."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.datasets import Sample
from pipeline.errors import ConfigError, DataError
from pipeline.fusion import colour
from pipeline.fusion.classical import laplacian_pyramid, reconstruct
from pipeline.fusion.registry import available_methods, get_method
from pipeline.fusion.stage import fuse_pair, fuse_pair_raw, fuse_samples, read_sources
from pipeline.fusion.vsm_wls import vsm_wls_fuse
from pipeline.imageio import read_image, write_image

RNG = np.random.default_rng(0)


def rand_pair(h=24, w=32):
    return RNG.random((h, w)), RNG.random((h, w))


def test_registry_lists_and_builds_methods():
    names = available_methods()
    for name in ("ir", "vis", "average", "max", "laplacian", "vsm_wls", "mlfuse", "precomputed"):
        assert name in names
    alias = get_method("my_lap", kind="laplacian", levels=2)
    assert alias.name == "my_lap" and alias.levels == 2
    meta = alias.metadata()
    assert meta == {"name": "my_lap", "kind": "classical", "implementation": "laplacian",
                    "parameters": {"levels": 2}, "params": 0}
    assert get_method("ir").kind == "baseline" and get_method("ir").gflops(10, 10) == 0.0
    with pytest.raises(ConfigError, match="unknown fusion method 'nope'"):
        get_method("nope")
    with pytest.raises(ConfigError, match="bad options"):
        get_method("average", radius=3)
    with pytest.raises(ConfigError, match="folder"):
        get_method("theirs", kind="precomputed")


def test_pixel_methods_follow_their_formulas():
    ir, vis = rand_pair()
    np.testing.assert_array_equal(get_method("ir").fuse(ir, vis), ir)
    np.testing.assert_array_equal(get_method("vis").fuse(ir, vis), vis)
    np.testing.assert_array_equal(get_method("average").fuse(ir, vis), (ir + vis) / 2)
    np.testing.assert_array_equal(get_method("max").fuse(ir, vis), np.maximum(ir, vis))
    np.testing.assert_array_equal(get_method("vsm_wls").fuse(ir, vis), vsm_wls_fuse(vis, ir))
    with pytest.raises(ValueError, match="differ in size"):
        get_method("average").fuse(ir, vis[:10])
    with pytest.raises(ValueError, match="single-channel"):
        get_method("max").fuse(np.stack([ir] * 3, -1), np.stack([vis] * 3, -1))


def test_laplacian_pyramid():
    img = RNG.random((37, 53))
    pyr = laplacian_pyramid(img, 3)
    assert len(pyr) == 4 and pyr[-1].shape == (5, 7)
    np.testing.assert_allclose(reconstruct(pyr), img, atol=1e-12)
    lap = get_method("laplacian", levels=3)
    np.testing.assert_allclose(lap.fuse(img, img), img, atol=1e-12)  # fusing an image with itself
    # details by larger magnitude: a flat image + a textured one keeps the texture
    flat = np.full_like(img, 0.5)
    fused = lap.fuse(flat, img)
    assert np.abs(np.diff(fused, axis=1)).mean() > 0.5 * np.abs(np.diff(img, axis=1)).mean()
    with pytest.raises(ConfigError):
        get_method("laplacian", levels=0)


def test_colour_formulas():
    rgb = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(colour.luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    cb, cr = colour.chroma(rgb)
    grey = np.full((2, 2, 3), 77, np.uint8)
    np.testing.assert_allclose(colour.chroma(grey), 128.0, atol=1e-9)
    back = colour.merge(colour.luma(rgb), (cb, cr))
    assert np.abs(back.astype(int) - rgb).max() <= 1  # only the 8-bit luma rounding is lost
    assert colour.merge(colour.luma(rgb), None).ndim == 2


def test_fuse_pair_colour_rules():
    vis = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    ir = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    out = fuse_pair(get_method("vis"), ir, vis)
    assert np.array_equal(out, vis)  # baselines are the source as stored
    ir_only = fuse_pair(get_method("ir"), ir, vis)
    assert np.array_equal(ir_only, ir)  # infrared only: no visible colour put back
    assert np.array_equal(fuse_pair(get_method("vis"), ir, vis, gray=True), colour.luma(vis))
    grey = fuse_pair(get_method("average"), ir, vis, gray=True)
    assert grey.ndim == 2
    expected = np.floor((colour.luma(vis) / np.float32(255) + ir / np.float32(255)).astype(np.float64) / 2 * 255 + 0.5)
    assert np.abs(grey.astype(int) - expected).max() <= 1
    # grey MRI + colour PET/SPECT: the functional image donates the chrominance
    pet = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mri = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    fused = fuse_pair(get_method("average"), pet, mri)
    assert fused.ndim == 3
    assert np.array_equal(fuse_pair(get_method("ir"), pet, mri), pet)
    assert fuse_pair(get_method("vis"), ir, mri).ndim == 2  # both grey -> grey
    with pytest.raises(DataError, match="size mismatch"):
        fuse_pair(get_method("max"), ir[:20], vis)


@pytest.mark.shared
def test_shared_medical_and_roadscene_pairs(shared_data, tmp_path):
    pet_dir = shared_data / "medical" / "MRI_PET"
    name = sorted(p.name for p in (pet_dir / "PET").iterdir())[0]
    ir, vis = read_sources(pet_dir / "PET" / name, pet_dir / "MRI" / name)
    assert ir.ndim == 3 and vis.ndim == 2
    image, raw = fuse_pair_raw(get_method("average"), ir, vis)
    assert image.shape == ir.shape and raw.shape == ir.shape[:2]
    with pytest.raises(DataError, match="size mismatch"):
        read_sources(shared_data / "RoadScene/ir/FLIR_00018.jpg", shared_data / "RoadScene/vi/FLIR_00006.jpg")


def make_pairs(root, n=3, colour_vis=True, size=(24, 32)):
    samples = []
    for k in range(n):
        name = f"s{k}"
        vis = RNG.integers(0, 256, size + ((3,) if colour_vis else ()), dtype=np.uint8)
        write_image(root / "vi" / f"{name}.png", vis)
        write_image(root / "ir" / f"{name}.png", RNG.integers(0, 256, size, dtype=np.uint8))
        samples.append(Sample(name=name, split="all", ir=root / "ir" / f"{name}.png",
                              vis=root / "vi" / f"{name}.png"))
    return samples


def test_fuse_samples_writes_resumes_and_times(tmp_path):
    samples = make_pairs(tmp_path / "src")
    out = tmp_path / "fused"
    method = get_method("average")
    first = fuse_samples(method, samples, out, progress=False)
    assert first["computed"] == 3 and first["skipped"] == 0 and first["seconds_per_image"] > 0
    for s in samples:
        np.testing.assert_array_equal(read_image(out / f"{s.name}.png"), fuse_pair(method, s.ir, s.vis))
    assert sorted(p.name for p in out.iterdir()) == ["s0.png", "s1.png", "s2.png"]  # no temp files
    (out / "s1.png").unlink()
    write_image(out / "s2.png", np.zeros((5, 5), np.uint8))  # wrong size: redone
    again = fuse_samples(method, samples, out, progress=False)
    assert again["computed"] == 2 and again["skipped"] == 1
    assert read_image(out / "s2.png").shape == (24, 32, 3)


def test_precomputed_folder(tmp_path):
    samples = make_pairs(tmp_path / "src")
    theirs = tmp_path / "theirs" / "toy"
    for s in samples[:2]:
        write_image(theirs / f"{s.name}.png", RNG.integers(0, 256, (24, 32), dtype=np.uint8))
    method = get_method("theirs", kind="precomputed", folder=str(tmp_path / "theirs"))
    with pytest.raises(DataError, match=r"1 of 3 fused images missing .*s2"):
        fuse_samples(method, samples, tmp_path / "out", dataset="toy", progress=False)
    write_image(theirs / "s2.png", RNG.integers(0, 256, (10, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="sources are 32×24"):
        fuse_samples(method, samples, tmp_path / "out", dataset="toy", progress=False)
    grey = RNG.integers(0, 256, (24, 32), dtype=np.uint8)
    write_image(theirs / "s2.png", grey)
    stats = fuse_samples(method, samples, tmp_path / "out", dataset="toy", progress=False)
    assert stats["computed"] == 3
    result = read_image(tmp_path / "out" / "s2.png")  # grey fused + visible chrominance -> colour
    np.testing.assert_array_equal(result, colour.merge(grey, colour.chroma(read_image(samples[2].vis))))
    with pytest.raises(DataError, match="not found"):
        get_method("x", kind="precomputed", folder=str(tmp_path / "none")).locate(["s0"], "toy")


def test_cli_fuses_one_pair(tmp_path):
    make_pairs(tmp_path / "toy", n=2)
    src = tmp_path / "toy"
    out = tmp_path / "cli.png"
    assert main(["fuse", "--method", "laplacian", "--vis", str(src / "vi/s0.png"), "--ir",
                 str(src / "ir/s0.png"), "--out", str(out), "--gray", "--raw-out", str(tmp_path / "r.npy")]) == 0
    assert read_image(out).ndim == 2 and np.load(tmp_path / "r.npy").shape == (24, 32)
    assert main(["fuse", "--method", "average", "--weights", "x.pth", "--vis", str(src / "vi/s0.png"),
                 "--ir", str(src / "ir/s0.png"), "--out", str(out)]) == 2
