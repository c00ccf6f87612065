"""The "pretrained network" registry kind (pipeline/fusion/pretrained.py) without ../shared:
strict loading errors naming the file, sha256 warnings, BN modes, batching, the fast path and the
fusion stage, on checkpoints of randomly initialised networks written to tmp_path."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError, DataError
from pipeline.fusion.nets.blocks import ModeBatchNorm, conv_bn_act, fold_conv_bn, set_bn_mode
from pipeline.fusion.nets.tardal import TarDALGenerator
from pipeline.fusion.registry import get_method
from pipeline.fusion.stage import fuse_pair_raw, fuse_samples


def _random_tardal(path, seed=0, tracked=0):
    torch.manual_seed(seed)
    net = TarDALGenerator()
    state = net.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 2.0)
        elif k.endswith("running_mean"):
            v.uniform_(-0.1, 0.1)
        elif k.endswith("num_batches_tracked"):
            v.fill_(tracked)
    torch.save(state, path)
    return state


def _pair(h=40, w=52, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_missing_corrupt_and_wrong_checkpoints_fail_naming_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match=r"nope\.pt: tardal weights file not found"):
        get_method("tardal", weights=str(missing)).fuse(*[np.zeros((8, 8), np.float32)] * 2)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"corrupt\.pt: cannot read tardal checkpoint") as err:
        get_method("tardal", weights=str(corrupt), weights_sha256=None).network
    assert "\n" not in str(err.value)
    state = _random_tardal(tmp_path / "ok.pt")
    state["fuse.3.0.weight"] = torch.zeros(1, 32, 5, 5)
    del state["encoder.0.bias"]
    state["extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(DataError, match=r"wrong\.pt: checkpoint does not match the tardal layout: missing keys "
                                        r"\(1\): encoder.0.bias; unexpected keys \(1\): extra; wrong shapes"):
        get_method("tardal", weights=str(tmp_path / "wrong.pt"), weights_sha256=None).network
    with pytest.raises(ConfigError, match="fusion.methods.didfuse: weights must be a folder"):
        get_method("didfuse", weights=str(tmp_path / "ok.pt"))


def test_unknown_checkpoint_warns_naming_the_file_unless_sha_is_null(tmp_path):
    path = tmp_path / "mine.pt"
    _random_tardal(path)
    with pytest.warns(UserWarning, match=r"mine\.pt: sha256 [0-9a-f]{64} is not a published tardal checkpoint"):
        get_method("tardal", weights=str(path)).network
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method = get_method("tardal", weights=str(path), weights_sha256=None)
        method.network
    info = method.metadata()["weights"][0]
    assert info["file"] == "mine.pt" and len(info["sha256"]) == 64 and info["checkpoint"] is None
    assert method.bn_mode == "image"  # unknown checkpoint with never-updated statistics


def test_per_image_bn_batches_like_single_images():
    torch.manual_seed(0)
    block = set_bn_mode(conv_bn_act(2, 4, torch.nn.ReLU()), "image").eval()
    block[1].weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 2, 9, 11)
    with torch.no_grad():
        together = block(x)
        alone = torch.cat([block(x[k:k + 1]) for k in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    # image_unit ignores the trained scale/shift: output mean 0 per channel before the ReLU
    bn = set_bn_mode(ModeBatchNorm(2), "image_unit")
    bn.weight.data.fill_(3.0)
    bn.bias.data.fill_(5.0)
    out = bn(torch.randn(1, 2, 6, 6))
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.var(unbiased=False)) - 1) < 1e-3


def test_fold_conv_bn_is_exact_to_float_rounding():
    torch.manual_seed(0)
    net = set_bn_mode(conv_bn_act(3, 8, torch.nn.ReLU()), "eval").eval()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = net(x)
        folded = fold_conv_bn(net)(x)
    assert isinstance(net[1], torch.nn.Identity)
    torch.testing.assert_close(folded, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("tracked, fast", [(0, True), (5, True), (5, False)])
def test_stage_batches_same_size_pairs_and_writes_colour(tmp_path, tracked, fast):
    path = tmp_path / "w.pt"
    _random_tardal(path, tracked=tracked)
    single = get_method("tardal", weights=str(path), weights_sha256=None, fast=fast)
    batched = get_method("tardal", weights=str(path), weights_sha256=None, fast=fast, batch_pixels=10**6)
    pairs = [_pair(seed=s) for s in range(3)]
    one = [fuse_pair_raw(single, ir, vis)[1] for ir, vis in pairs]
    prepared = [batched.prepare(ir, vis)[0] for ir, vis in pairs]
    many = batched.fuse_batch(prepared)
    assert single.bn_mode == ("image" if tracked == 0 else "eval")
    for a, b in zip(one, many):
        assert a.shape == (40, 52) and np.abs(a - b).max() < 1e-5
    image, raw = fuse_pair_raw(single, *pairs[0])
    assert image.shape == (40, 52, 3) and image.dtype == np.uint8
    # the float API quantises to 8 bits: same raw as the stored-sources path for a grey pair
    grey_vis = pairs[0][1][:, :, 0]
    via_float = single.fuse(pairs[0][0] / np.float32(255), grey_vis / np.float32(255))
    assert np.array_equal(via_float, fuse_pair_raw(single, pairs[0][0], grey_vis)[1])


def test_fuse_samples_writes_every_pair(tmp_path):
    from pipeline.datasets import Sample
    from pipeline.imageio import read_image, write_image

    path = tmp_path / "w.pt"
    _random_tardal(path, tracked=3)
    samples = []
    for k in range(3):
        ir, vis = _pair(seed=k)
        write_image(tmp_path / f"ir{k}.png", ir)
        write_image(tmp_path / f"vi{k}.png", vis)
        samples.append(Sample(f"s{k}", "test", tmp_path / f"ir{k}.png", tmp_path / f"vi{k}.png"))
    method = get_method("tardal", weights=str(path), weights_sha256=None)
    stats = fuse_samples(method, samples, tmp_path / "out", progress=False)
    assert stats["computed"] == 3 and stats["gflops"] > 0
    assert read_image(tmp_path / "out" / "s0.png").shape == (40, 52, 3)
    assert method.params_count() == 296_577


def test_fuse_command_takes_any_network_checkpoint(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.imageio import write_image

    ir, vis = _pair()
    write_image(tmp_path / "ir.png", ir)
    write_image(tmp_path / "vis.png", vis)
    _random_tardal(tmp_path / "ok.pt")
    args = ["fuse", "--method", "tardal", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"),
            "--out", str(tmp_path / "f.png"), "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown (random) checkpoint
        assert main(args + ["--weights", str(tmp_path / "ok.pt")]) == 0
    assert (tmp_path / "f.png").is_file()
    assert main(args + ["--weights", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt: tardal weights file not found" in capsys.readouterr().err
    assert main([*args[:2], "max", *args[3:], "--weights", "x.pt"]) == 2
    assert "--weights only applies to network methods" in capsys.readouterr().err


def test_subnormal_weights_are_zeroed_and_flushed_only_inside_the_fast_forward(tmp_path):
    """Checkpoints full of subnormal weights (tardal++.pt) run through x86's slow path; the fast
    forward zeroes them and flushes subnormal products, which moves outputs by < 1e-38 each."""
    from pipeline.fusion.nets.blocks import denormals_flushed, zero_subnormals

    state = _random_tardal(tmp_path / "sub.pt", tracked=5)
    tiny = torch.finfo(torch.float32).tiny
    weight = state["fuse.0.0.weight"]
    weight[0, :4] = tiny / 3                       # subnormal weights, as weight decay leaves them
    torch.save(state, tmp_path / "sub.pt")
    net = zero_subnormals(TarDALGenerator())
    net.load_state_dict(state)
    zero_subnormals(net)
    assert int((net.fuse[0][0].weight[0, :4] == 0).sum()) == weight[0, :4].numel()
    assert torch.equal(net.fuse[0][0].weight[1:], weight[1:])   # normal numbers untouched
    with denormals_flushed():
        assert float(torch.tensor(tiny) * torch.tensor(0.25)) == 0.0
    assert float(torch.tensor(tiny) * torch.tensor(0.25)) > 0.0  # restored after the block
    ir, vis = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = get_method("tardal", weights=str(tmp_path / "sub.pt"), device="cpu")
        eager = get_method("tardal", weights=str(tmp_path / "sub.pt"), device="cpu", fast=False)
        raw_fast, raw_eager = (fuse_pair_raw(m, ir, vis)[1] for m in (fast, eager))
    assert np.abs(raw_fast - raw_eager).max() < 1e-5
    assert int((eager.network.fuse[0][0].weight[0, :4] != 0).sum()) > 0   # the eager module keeps them
