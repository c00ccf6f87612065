"""MLFuse inference against the official outputs (../shared/reference/mlfuse) and the spec appendix."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.fusion.mlfuse import mlfnet_gflops, to_uint8_official
from pipeline.fusion.mlfuse_net import MLFNet, load_checkpoint_state, load_mlfnet
from pipeline.fusion.registry import get_method
from pipeline.fusion.stage import fuse_pair_raw
from pipeline.imageio import read_image

ROADSCENE = ("FLIR_00006", "FLIR_00018", "FLIR_00060")

# Float tolerances, derived (not fitted) so that they hold on any x86 CPU / kernel set.
# "Exact" = the float64 forward of the same network and float32 inputs in which the channel
# gate's pixel sum keeps the official float32 four-lane order (mlfuse_reduction: part of the
# specified arithmetic). A float32 forward's error against it, measured on the 8 shipped pairs
# (max / mean |f − exact|): the official files ≤ 1.61e-6 / 1.16e-7; this implementation (fast and
# eager) ≤ 8.9e-7 / 9.5e-8 under ATEN_CPU_CAPABILITY=default|avx2 and ONEDNN_MAX_CPU_ISA=SSE41|AVX2
# (notes/i13b.md). Different CPUs change only the accumulation order of the float32 sums, i.e.
# which rounding errors occur, not their size, so one float32 forward is bounded by twice the
# largest measured error; ours vs official = two independent forwards = the sum of two bounds.
FORWARD_MAX, FORWARD_MEAN = 2 * 1.61e-6, 2 * 1.16e-7
RAW_MAX, RAW_MEAN = 2 * FORWARD_MAX, 2 * FORWARD_MEAN          # 6.4e-6 (issue bound 1e-5), 4.6e-7


@pytest.fixture(scope="module")
def weights(shared):
    return shared / "weights" / "mlfuse" / "model_fuse.pth"


@pytest.fixture(scope="module")
def method(weights):
    return get_method("mlfuse", weights=str(weights), device="cpu")


def reference_pairs(shared):
    data, ref = shared / "data", shared / "reference" / "mlfuse"
    for i in range(5):
        yield (data / "medical/CT_MRI" / f"ct{i}.png", data / "medical/CT_MRI" / f"mrict{i}.png",
               ref / "ct_mri" / f"fusion_{i}")
    for name in ROADSCENE:
        yield (data / "RoadScene/ir" / f"{name}.jpg", data / "RoadScene/vi" / f"{name}.jpg",
               ref / "roadscene" / f"fusion_{name}")


@pytest.mark.shared
def test_state_dict_matches_spec_appendix(shared, weights):
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \| \[([\d, ]*)\] \| (\w+) \|$",
                      (shared / "spec" / "mlfuse.md").read_text(), flags=re.M)
    assert len(rows) == 111
    state = MLFNet().state_dict()
    assert list(state) == [key for _, key, _, _ in rows]
    for _, key, shape, _ in rows:
        assert tuple(state[key].shape) == tuple(int(s) for s in shape.split(",") if s.strip()), key
    assert list(load_checkpoint_state(weights)) == list(state)
    model = load_mlfnet(weights)
    assert sum(p.numel() for p in model.parameters()) == 111_817
    assert not model.training


def _boundary_ok(ours: np.ndarray, png: np.ndarray, ref_raw: np.ndarray, raw_diff: float) -> None:
    """8-bit outputs equal, except ±1 where the reference value sits on a truncation boundary."""
    diff = ours.astype(int) - png.astype(int)
    assert np.abs(diff).max() <= 1
    scaled = (ref_raw - ref_raw.min()) / (ref_raw.max() - ref_raw.min()) * 255.0
    margin = 2 * 255.0 * raw_diff / (ref_raw.max() - ref_raw.min()) + 1e-4
    off = diff != 0
    assert np.all(np.abs(scaled[off] - np.round(scaled[off])) <= margin)
    assert off.mean() < 1e-3


@pytest.mark.shared
def test_raw_and_8bit_outputs_match_official(shared, method):
    """Raw outputs within RAW_MAX / RAW_MEAN of the official files (measured ≤ 1.7e-6 / 1.4e-7),
    8-bit images identical except ±1 on truncation boundaries. Machine-independent because the
    channel gate's pixel sum runs in the official four-lane order and its softmax normaliser in
    float64 (mlfuse_reduction): with the local BLAS order the CT/MRI raws were 1.7e-5 off, with the
    float32 softmax of an AVX2 EPYC 5e-6 (mean 4.5e-7)."""
    for ir, vis, stem in reference_pairs(shared):
        image, raw = fuse_pair_raw(method, ir, vis, gray=True)
        ref = np.load(f"{stem}_raw.npy")
        assert raw.dtype == np.float32 and raw.shape == ref.shape
        err = np.abs(raw - ref)
        assert err.max() <= RAW_MAX and err.mean() <= RAW_MEAN, (stem, err.max(), err.mean())
        _boundary_ok(image, read_image(f"{stem}.png"), ref, float(err.max()))


@pytest.mark.shared
def test_eager_module_matches_official_and_fast_path(shared, weights):
    """The plain eager module (training's forward) reproduces the official raws to RAW_MAX; the fast
    path agrees with it; float64 differs from both by the official float32 rounding of the pixel sum."""
    eager = get_method("mlfuse", weights=str(weights), fast=False)
    for ir, vis, stem in list(reference_pairs(shared))[::3]:
        _, raw = fuse_pair_raw(eager, ir, vis, gray=True)
        err = np.abs(raw - np.load(f"{stem}_raw.npy"))
        assert err.max() <= RAW_MAX and err.mean() <= RAW_MEAN, stem
    ir, vis, _ = next(reference_pairs(shared))
    x = torch.from_numpy(read_image(vis) / np.float32(255))[None, None].float()
    y = torch.from_numpy(read_image(ir) / np.float32(255))[None, None].float()
    model = load_mlfnet(weights)
    with torch.no_grad():
        outputs = model(x, y)
        exact = load_mlfnet(weights).double()(x.double(), y.double())[0]
    assert len(outputs) == 4 and all(t.shape == x.shape for t in outputs)
    assert (outputs[0].double() - exact).abs().max() < 3e-5
    fast = get_method("mlfuse", weights=str(weights)).runner()(x, y)
    assert (fast - outputs[0]).abs().max() < 2 * FORWARD_MAX
    batched = get_method("mlfuse", weights=str(weights), batch_pixels=10**7)
    pair = (y[0, 0].numpy(), x[0, 0].numpy())
    outs = batched.fuse_batch([pair, pair])
    assert len(outs) == 2 and np.abs(outs[1] - fast[0, 0].numpy()).max() < 1e-6  # batching: rounding only


def test_official_postprocessing_truncates():
    raw = np.array([[-0.5, 0.0], [0.25, 0.5]], dtype=np.float32)
    # n = [0, 0.5, 0.75, 1] -> 255·n = 0, 127.5, 191.25, 255 -> truncated
    np.testing.assert_array_equal(to_uint8_official(raw), [[0, 127], [191, 255]])
    np.testing.assert_array_equal(to_uint8_official(np.full((2, 2), 0.3, np.float32)), np.zeros((2, 2)))


@pytest.mark.shared
def test_checkpoint_errors_and_trained_layout(weights, tmp_path):
    with pytest.raises(DataError, match="weights file not found"):
        load_mlfnet(tmp_path / "nope.pth")
    state = load_checkpoint_state(weights)
    bad = {("outc.kernel" if k == "outc.conv.weight" else k): v for k, v in state.items()}
    torch.save({"epoch": 1, "model": bad}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match=r"missing keys \(1\): outc.conv.weight.*unexpected keys \(1\): outc.kernel"):
        load_mlfnet(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pth"):
        load_mlfnet(tmp_path / "junk.pth")
    # a checkpoint written by the pipeline's training ({"epoch", "model"}) and a bare state_dict
    model = MLFNet().eval()
    torch.save({"epoch": 3, "model": model.state_dict()}, tmp_path / "trained.pth")
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    x = torch.rand(1, 1, 32, 40)
    with torch.no_grad():
        expected = model(x, x)[0]
        for name in ("trained.pth", "bare.pth"):
            assert torch.equal(load_mlfnet(tmp_path / name)(x, x)[0], expected)
    fused = get_method("mlfuse", weights=str(tmp_path / "trained.pth")).fuse(x[0, 0].numpy(), x[0, 0].numpy())
    assert np.abs(fused - expected[0, 0].numpy()).max() < 1e-5


@pytest.mark.shared
def test_metadata_and_flops(method):
    meta = method.metadata()
    assert meta["kind"] == "network" and meta["params"] == 111_817 and meta["name"] == "mlfuse"
    assert mlfnet_gflops(480, 640) == pytest.approx(61.05, abs=0.01)
    assert method.gflops(240, 320) == pytest.approx(61.05 / 4, rel=0.01)


@pytest.mark.shared
def test_cli_fuse_mlfuse_matches_reference(shared, tmp_path, weights):
    ir, vis, stem = list(reference_pairs(shared))[5]
    out, raw = tmp_path / "f.png", tmp_path / "f.npy"
    assert main(["fuse", "--method", "mlfuse", "--weights", str(weights), "--vis", str(vis),
                 "--ir", str(ir), "--out", str(out), "--raw-out", str(raw), "--gray"]) == 0
    ref = np.load(f"{stem}_raw.npy")
    assert np.abs(np.load(raw) - ref).max() < 1e-5
    _boundary_ok(read_image(out), read_image(f"{stem}.png"), ref, float(np.abs(np.load(raw) - ref).max()))
    # without --gray a colour visible image gives a colour result whose luma is the fused image
    assert main(["fuse", "--method", "mlfuse", "--weights", str(weights), "--vis", str(vis),
                 "--ir", str(ir), "--out", str(tmp_path / "c.png")]) == 0
    assert read_image(tmp_path / "c.png").ndim == 3
    assert main(["fuse", "--method", "mlfuse", "--weights", str(tmp_path / "missing.pth"),
                 "--vis", str(vis), "--ir", str(ir), "--out", str(tmp_path / "x.png")]) == 2


@pytest.mark.shared
def test_fast_workspace_reuse_sizes_and_threads(weights):
    """The fast path reuses its buffers: results do not depend on earlier calls, sizes or threads."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.fusion.mlfuse_fast import FastMLFNet

    model = load_mlfnet(weights)
    torch.manual_seed(1)
    inputs = [(torch.rand(n, 1, h, w), torch.rand(n, 1, h, w)) for n, h, w in ((1, 32, 40), (2, 48, 64), (1, 32, 40))]
    fresh = [FastMLFNet(model)(x, y) for x, y in inputs]  # a new runner (new buffers) per input
    shared = FastMLFNet(model)
    for _ in range(2):
        for (x, y), expected in zip(inputs, fresh):
            assert torch.equal(shared(x, y), expected)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda xy: shared(*xy), inputs * 2))
    assert all(torch.equal(r, e) for r, e in zip(results, fresh * 2))
    with torch.no_grad():
        assert (fresh[1] - model(*inputs[1])[0]).abs().max() < 2e-6
    # the unfused steps (what runs on CUDA, where oneDNN post-ops do not exist) give the same result
    plain = FastMLFNet(model)
    for conv in vars(plain).values():
        if hasattr(conv, "fused"):
            conv.fused = False
    assert (plain(*inputs[1]) - fresh[1]).abs().max() < 1e-6


@pytest.mark.shared
def test_float32_error_within_the_derived_bound(shared, weights, monkeypatch):
    """The premise of RAW_MAX: on shipped pairs both the official files and this implementation lie
    within one float32-forward bound of the exact value (float64, official gate-sum order)."""
    from pipeline.fusion import mlfuse_net
    from pipeline.fusion.colour import split_pair, to_float
    from pipeline.fusion.mlfuse_reduction import lane_dot

    def official_order(values, w):  # float64 run: the gate's pixel sum still in float32 lane order
        if values.dtype == torch.float64:
            return lane_dot(values.float(), w.float()).double()
        return lane_dot(values, w)

    fast = get_method("mlfuse", weights=str(weights))
    exact_model = load_mlfnet(weights).double()
    for ir, vis, stem in list(reference_pairs(shared))[0:4:3]:   # CT/MRI 0 and 3 (the largest errors)
        y_ir, y_vis, _ = split_pair(read_image(ir), read_image(vis))
        x, y = (torch.from_numpy(to_float(a))[None, None].double() for a in (y_vis, y_ir))
        monkeypatch.setattr(mlfuse_net, "lane_dot", official_order)
        with torch.no_grad():
            exact = exact_model(x, y)[0][0, 0].numpy()
        monkeypatch.undo()
        _, ours = fuse_pair_raw(fast, ir, vis, gray=True)
        for label, raw in (("official", np.load(f"{stem}_raw.npy")), ("ours", ours)):
            err = np.abs(raw.astype(np.float64) - exact)
            assert err.max() <= FORWARD_MAX and err.mean() <= FORWARD_MEAN, (label, stem, err.max(), err.mean())
