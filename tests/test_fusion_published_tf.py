"""pmgi, u2fusion and mff_gan (TF1-born, pipeline.fusion.published_tf) against the official outputs
in ../shared/reference/methods, with the authors' checkpoints from ../shared/weights.

Tolerances (issue 13): raw within 1e-3 on the 0..255 scale; 8-bit equal except ±1 at < 0.1 % of
pixels. Why this holds on any CPU: |ours − official| ≤ |ours − f64| + |f64 − official|, where f64
is the float64 forward of the same network and inputs. The official term is fixed by the files
(PMGI 4.6e-4 — TF's float32 batch norm; U2Fusion 1.1e-4); ours is one float32 forward, measured
≤ 1.1e-4 (U2Fusion) / 7.6e-5 (PMGI) under every CPU kernel set tried (notes/i13b.md), asserted
below at FORWARD = 2 × that; the sum stays below 1e-3 whatever order the float32 sums run in.
"""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from pipeline.errors import DataError
from pipeline.fusion.pretrained import to_uint8_rule
from pipeline.fusion.registry import get_method
from pipeline.fusion.stage import fuse_pair_raw
from pipeline.imageio import read_image

FORWARD = 2 * 1.1e-4        # one float32 forward vs float64, 0..255 scale (see the docstring)
RAW_TOL = 1e-3              # issue 13, TF-born methods, 0..255 scale
PAIR = "FLIR_00006"


def _sources(shared):
    return (shared / "data" / "RoadScene" / "ir" / f"{PAIR}.jpg", shared / "data" / "RoadScene" / "vi" / f"{PAIR}.jpg")


def _assert_8bit(ours: np.ndarray, official: np.ndarray) -> None:
    diff = np.abs(ours.astype(int) - official.astype(int))
    assert ours.shape == official.shape and diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.shared
@pytest.mark.parametrize("fast", [True, False])
def test_pmgi_matches_official(shared, fast):
    method = get_method("pmgi", weights=str(shared / "weights" / "pmgi" / "IR_VI" / "CGAN.model-1"),
                        device="cpu", fast=fast)
    image, raw = fuse_pair_raw(method, *_sources(shared))
    ref = np.load(shared / "reference" / "methods" / "pmgi" / f"{PAIR}_raw.npy")
    assert method.bn_mode == "image_unit" and raw.dtype == np.float32 and raw.shape == ref.shape
    assert np.abs(raw.astype(np.float64) - ref).max() <= RAW_TOL
    # the official BMP is SciPy's min-max stretch of that raw array (manifest); ours is grey
    _assert_8bit(image, to_uint8_rule(ref, "minmax", (0.0, 255.0)))


@pytest.mark.shared
def test_u2fusion_matches_official(shared):
    method = get_method("u2fusion", weights=str(shared / "weights" / "u2fusion"), device="cpu")
    image, raw = fuse_pair_raw(method, *_sources(shared))
    ref = np.load(shared / "reference" / "methods" / "u2fusion" / f"{PAIR}_rawY.npy")
    assert raw.shape == ref.shape and np.abs(raw.astype(np.float64) - ref).max() * 255 <= RAW_TOL
    _assert_8bit(image, read_image(shared / "reference" / "methods" / "u2fusion" / f"{PAIR}.png"))
    grey = method.finish(raw, None, None, None, gray=True)
    assert grey.ndim == 2 and grey.max() == 255           # toimage(cmin=0, cmax=max) of Y alone


@pytest.mark.shared
@pytest.mark.parametrize("name,weights", [("pmgi", "pmgi/IR_VI"), ("pmgi", "pmgi/Medical"), ("u2fusion", "u2fusion"),
                                          ("mff_gan", "mff_gan/Lytro")])
def test_float32_forward_within_the_derived_bound(shared, name, weights):
    """Premise of the tolerance: a float32 forward (fast and eager) within FORWARD of float64."""
    ir, vis = (read_image(p)[100:196, 150:278] for p in _sources(shared))
    scale = 255.0 if name == "u2fusion" else 1.0
    eager = get_method(name, weights=str(shared / "weights" / weights), device="cpu", fast=False)
    inputs, _ = eager.prepare(ir, vis)
    tensors = [torch.from_numpy(inputs.arrays[s][None]).double() for s in eager.slots]
    with torch.no_grad():
        exact = eager.run(eager.network.double(), *tensors)[0, 0].numpy()
    for fast in (True, False):
        method = get_method(name, weights=str(shared / "weights" / weights), device="cpu", fast=fast)
        raw = method.fuse_batch([inputs])[0]
        assert np.abs(raw - exact).max() * scale <= FORWARD, (name, fast)


@pytest.mark.shared
def test_mff_gan_fuses_a_multifocus_pair(shared):
    """No official outputs exist for MFF-GAN: check behaviour on a pair made from a sharp image,
    near = left half sharp, far = right half sharp (vis = near, ir = far as in the demo sets)."""
    import cv2

    sharp = read_image(shared / "data" / "RoadScene" / "vi" / f"{PAIR}.jpg", mode="gray")[:192, :256]
    blur = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    near, far = sharp.copy(), sharp.copy()
    near[:, 128:], far[:, :128] = blur[:, 128:], blur[:, :128]
    method = get_method("mff_gan", weights=str(shared / "weights" / "mff_gan" / "Lytro"), device="cpu")
    image, raw = fuse_pair_raw(method, far, near)
    assert image.dtype == np.uint8 and image.shape == sharp.shape and image.min() == 0 and image.max() == 255
    assert np.isfinite(raw).all() and 0 <= raw.min() and raw.max() <= 255

    def detail(x):  # Laplacian energy away from the seam: the fused image keeps each sharp half
        lap = cv2.Laplacian(np.asarray(x, np.float64), cv2.CV_64F)
        return [np.abs(lap[8:-8, s]).mean() for s in (slice(8, 112), slice(144, 248))]

    fused, dn, df, ds = detail(raw), detail(near), detail(far), detail(sharp)
    # measured: fused 5.3 / 1.9, sharp 5.7 / 2.5, blurred 1.0 / 1.0
    assert fused[0] > max(0.7 * ds[0], 1.5 * df[0]) and fused[1] > max(0.7 * ds[1], 1.5 * dn[1])
    assert method.metadata()["weights"][0]["checkpoint"] == "Lytro"


@pytest.mark.shared
def test_weights_forms_sha_and_errors(shared, tmp_path):
    ir, vis = (read_image(p)[:64, :80] for p in _sources(shared))
    src = shared / "weights" / "pmgi" / "IR_VI"
    outs = []
    for form in (src, src / "CGAN.model-1", src / "CGAN.model-1.index", src / "CGAN.model-1.data-00000-of-00001"):
        method = get_method("pmgi", weights=str(form), device="cpu")
        outs.append(fuse_pair_raw(method, ir, vis)[1])
        assert method.metadata()["weights"][0]["checkpoint"] == "IR_VI"
    assert all(np.array_equal(o, outs[0]) for o in outs)
    assert get_method("pmgi").files[""].name == "CGAN.model-1.data-00000-of-00001"  # weights: shared

    with pytest.warns(UserWarning, match="differs from weights_sha256"):
        get_method("pmgi", weights=str(src), weights_sha256="0" * 64, device="cpu").network
    with pytest.raises(DataError, match="no .index") as err:
        get_method("pmgi", weights=str(tmp_path / "missing" / "CGAN.model-1")).network
    assert "missing" in str(err.value)
    with pytest.raises(DataError, match="lacks 74 expected variable") as err:   # U2Fusion's bundle given to PMGI
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_method("pmgi", weights=str(shared / "weights" / "u2fusion")).network
    assert "model.ckpt.index" in str(err.value)
    for name in ("CGAN.model-1.index", "CGAN.model-1.data-00000-of-00001"):
        shutil.copy(src / name, tmp_path / name)
    data = tmp_path / "CGAN.model-1.data-00000-of-00001"
    blob = bytearray(data.read_bytes())
    blob[1000] ^= 0x10
    data.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="not a published pmgi checkpoint"):
        with pytest.raises(DataError, match="CRC-32C") as err:
            get_method("pmgi", weights=str(tmp_path)).network
    assert str(data) in str(err.value)


def test_metadata_without_weights():
    assert get_method("pmgi").params_count() == 41_633 + 12 * 32          # convs + BN scale/shift
    assert get_method("mff_gan").params_count() == 40_033
    assert get_method("u2fusion").params_count() == 659_217               # spec §7
    assert get_method("pmgi").gflops(480, 640) == pytest.approx(25.5, rel=0.02)   # spec §14
    assert get_method("u2fusion").gflops(480, 640) == pytest.approx(405, rel=0.01)


@pytest.mark.parametrize("net_name", ["pmgi", "mff_gan"])
def test_training_forward_without_concatenations_equals_the_official_graph(net_name):
    """With grad (training) TwoPathNet sums per-piece convolutions instead of convolving the channel
    concatenation; in float64 both orders agree to rounding, and gradients flow to every weight slice."""
    from pipeline.fusion.nets.mff_gan import MFFGANNet
    from pipeline.fusion.nets.pmgi import PMGINet

    torch.manual_seed(0)
    net = (PMGINet() if net_name == "pmgi" else MFFGANNet()).double()
    channels = 3 if net_name == "pmgi" else 1
    first, second = (torch.rand(2, channels, 20, 24, dtype=torch.float64) * 2 - 1 for _ in range(2))
    forward = net.forward_paths if net_name == "pmgi" else net.forward
    with torch.no_grad():
        official = forward(first, second)         # the concatenating graph
    trained = forward(first, second)              # grad enabled: no concatenation is built
    assert trained.requires_grad
    assert float((trained.detach() - official).abs().max()) < 1e-12
    trained.square().sum().backward()
    grad = net.layer4.conv.weight.grad
    assert all(float(grad[:, s:s + 16].abs().sum()) > 0 for s in range(0, 64, 16))
