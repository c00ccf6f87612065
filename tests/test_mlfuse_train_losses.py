"""MLFuse losses against hand-computed values on small tensors (spec mlfuse.md section 10)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.training.methods import mlfuse as L

IMG = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).view(1, 1, 3, 3)


# S(IMG) worked out by hand from the zero-padded 5×5 neighbourhoods, e.g. centre:
# Kx·I = (3−1) + 2(6−4) + (9−7) = 8, Ky·I = (1+4+3) − (7+16+9) = −24 → 32;
# top-left window [[0,0,0],[0,1,2],[0,4,5]]: Kx = 2·2 + 5 = 9, Ky = −(2·4 + 5) = −13 → 22.
SOBEL_IMG = [[22.0, 26.0, 26.0], [38.0, 32.0, 38.0], [34.0, 26.0, 38.0]]


def test_sobel_by_hand():
    assert L.sobel_magnitude(IMG)[0, 0].tolist() == SOBEL_IMG


def test_sobel_constant_image_zero_inside_and_padding_edges():
    s = L.sobel_magnitude(torch.ones(2, 1, 6, 6))
    assert torch.all(s[:, :, 1:-1, 1:-1] == 0)
    assert s[0, 0, 0, 0].item() == 3.0 + 3.0  # Kx: 2*1+1 = 3, Ky: -(2*1+1) -> 3


def test_gaussian_window_weights():
    w = L.gaussian_window()
    assert w.shape == (1, 1, 11, 11)
    g = np.exp(-((np.arange(11) - 5) ** 2) / 4.5)
    g /= g.sum()
    np.testing.assert_allclose(w[0, 0].numpy(), np.outer(g, g), rtol=0, atol=1e-8)
    assert abs(w.sum().item() - 1.0) < 1e-6


def test_ssim_single_pixel_closed_form():
    # One pixel with zero padding 5: only the window centre w0 = g5² touches data, so
    # μa = w0 a, σa² = w0 a² − w0² a² = w0(1 − w0) a², σab = w0(1 − w0) ab.
    a, b = 0.8, 0.3
    g = np.exp(-((np.arange(11) - 5) ** 2) / 4.5)
    w0 = (g[5] / g.sum()) ** 2
    v = w0 * (1 - w0)
    expected = ((2 * w0 ** 2 * a * b + 1e-4) * (2 * v * a * b + 9e-4)) / (
        (w0 ** 2 * (a * a + b * b) + 1e-4) * (v * (a * a + b * b) + 9e-4))
    got = L.ssim(torch.full((1, 1, 1, 1), a), torch.full((1, 1, 1, 1), b)).item()
    assert math.isclose(got, expected, rel_tol=1e-5)


def test_ssim_matches_loop_reference_with_zero_padding():
    rng = np.random.default_rng(0)
    a = rng.random((5, 4))
    b = rng.random((5, 4))
    g = np.exp(-((np.arange(11) - 5) ** 2) / 4.5)
    w = np.outer(g, g) / g.sum() ** 2
    pa, pb = np.pad(a, 5), np.pad(b, 5)
    vals = []
    for i in range(5):
        for j in range(4):
            wa, wb = pa[i:i + 11, j:j + 11], pb[i:i + 11, j:j + 11]
            ma, mb = (w * wa).sum(), (w * wb).sum()
            va, vb = (w * wa * wa).sum() - ma * ma, (w * wb * wb).sum() - mb * mb
            cab = (w * wa * wb).sum() - ma * mb
            vals.append(((2 * ma * mb + 1e-4) * (2 * cab + 9e-4)) / ((ma * ma + mb * mb + 1e-4) * (va + vb + 9e-4)))
    got = L.ssim(torch.tensor(a, dtype=torch.float32)[None, None], torch.tensor(b, dtype=torch.float32)[None, None])
    assert math.isclose(got.item(), float(np.mean(vals)), rel_tol=1e-4)


def test_fusion_loss_zero_for_identical_images_and_scaled_by_point_one():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert abs(L.fusion_loss(x, x, x).item()) < 1e-6
    y = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    f = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    expected = 0.1 * ((1 - L.ssim(x, f)) / 2 + (1 - L.ssim(y, f)) / 2)
    assert L.fusion_loss(f, x, y).item() == pytest.approx(expected.item(), abs=1e-7)


def test_edge_loss_by_hand():
    # S(0) = 0, so the loss is the mean of the hand-computed S(IMG): 280 / 9
    assert L.edge_loss(torch.zeros_like(IMG), IMG).item() == pytest.approx(280 / 9, rel=1e-7)
    assert L.edge_loss(IMG, IMG).item() == 0.0
    # the edge head is compared through S: a constant offset on the interior pixel changes S
    assert L.edge_loss(IMG + 1, IMG).item() > 0


def test_saliency_loss_by_hand():
    head = torch.tensor([[0.5, -0.5], [1.0, 0.0]]).view(1, 1, 2, 2)
    img2 = torch.tensor([[0.0, 0.5], [1.0, 0.25]]).view(1, 1, 2, 2)
    vsm = torch.tensor([[1.0, 0.5], [0.0, 0.25]]).view(1, 1, 2, 2)
    # |M h − M i| = [[0.5, 0.5], [0, 0.0625]] -> mean 1.0625 / 4
    assert L.saliency_loss(head, img2, vsm).item() == pytest.approx(0.265625, abs=1e-7)


def test_cross_modal_loss_by_hand():
    head = torch.tensor([[0.5, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    img1 = torch.zeros(1, 1, 2, 2)
    img2 = torch.ones(1, 1, 2, 2)
    # mean (h − 0)² = 0.25/4; mean (h − 1)² = (0.25 + 3)/4 -> 0.0625 + 0.8125
    assert L.cross_modal_loss(head, img1, img2).item() == pytest.approx(0.875, abs=1e-7)


def test_total_uses_published_weights_and_right_heads():
    g = torch.Generator().manual_seed(4)
    img1, img2, vsm = (torch.rand(2, 1, 12, 12, generator=g) for _ in range(3))
    f, e, c, s = (torch.rand(2, 1, 12, 12, generator=g) * 2 - 1 for _ in range(4))
    terms = L.mlfuse_loss((f, e, c, s), img1, img2, vsm)
    assert terms.parts["edge"].item() == L.edge_loss(e, img1).item()
    assert terms.parts["saliency"].item() == L.saliency_loss(s, img2, vsm).item()
    assert terms.parts["cross_modal"].item() == L.cross_modal_loss(c, img1, img2).item()
    assert terms.parts["fusion"].item() == L.fusion_loss(f, img1, img2).item()
    expected = (0.3 * terms.parts["edge"] + 3 * terms.parts["saliency"]
                + 0.5 * terms.parts["cross_modal"] + 1 * terms.parts["fusion"])
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    only_edge = L.mlfuse_loss((f, e, c, s), img1, img2, vsm,
                              weights={"saliency": 0, "cross_modal": 0, "fusion": 0})
    assert only_edge.total.item() == pytest.approx(0.3 * terms.parts["edge"].item(), rel=1e-6)


def test_each_loss_term_trains_exactly_its_head():
    """Through the total loss (every head in the graph), each term alone moves only the head it
    reads (fused, edge, cross-modal, saliency = outputs 0..3): a wiring mistake in mlfuse_loss
    (a term reading the wrong head) fails here. (It replaces a test whose other head never
    entered the graph, so its ``grad is None`` held whatever the code did.)"""
    g = torch.Generator().manual_seed(5)
    img1, img2, vsm = (torch.rand(1, 1, 8, 8, generator=g) for _ in range(3))
    reads = {"fusion": 0, "edge": 1, "cross_modal": 2, "saliency": 3}
    for term, index in reads.items():
        heads = [torch.rand(1, 1, 8, 8, generator=g).requires_grad_() for _ in range(4)]
        weights = {name: (1.0 if name == term else 0.0) for name in reads}
        L.mlfuse_loss(tuple(heads), img1, img2, vsm, weights=weights).total.backward()
        moved = [k for k, h in enumerate(heads) if h.grad is not None and h.grad.abs().sum().item() > 0]
        assert moved == [index], (term, moved)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="N×1×H×W"):
        L.sobel_magnitude(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="unknown loss"):
        L.resolve_weights({"edges": 1.0})
