"""The channel gate's four-lane float32 pixel sum (pipeline.fusion.mlfuse_reduction)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.fusion.mlfuse_reduction import lane_dot, lane_dot_numpy


def four_lane_reference(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The documented order written with numpy only: float32 products, lane l = sequential float32
    sum over p ≡ l (mod 4) (``np.cumsum`` accumulates in float32, in order), lanes combined as
    (0 + 1) + (2 + 3), then the P mod 4 trailing products added one by one."""
    products = (values * weights).astype(np.float32)
    body = products.shape[1] // 4 * 4
    lanes = np.zeros((products.shape[0], 4), np.float32)
    if body:
        lanes = np.cumsum(products[:, :body].reshape(products.shape[0], -1, 4), axis=1, dtype=np.float32)[:, -1]
    total = (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])
    for p in range(body, products.shape[1]):
        total = total + products[:, p]
    return total


@pytest.mark.parametrize("pixels", [1, 7, 4096, 65_536 + 3])
def test_kernel_is_bitwise_the_documented_order(pixels):
    rng = np.random.default_rng(pixels)
    values = rng.standard_normal((16, pixels)).astype(np.float32)
    weights = rng.random(pixels).astype(np.float32) / pixels
    expected = four_lane_reference(values, weights)
    assert np.array_equal(lane_dot_numpy(values, weights), expected)
    # any strides (the fast path passes the transpose of an N×P×C map)
    assert np.array_equal(lane_dot_numpy(np.ascontiguousarray(values.T).T, weights), expected)


def test_order_differs_from_plain_sums_but_not_the_maths():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((16, 65_536)).astype(np.float32)
    weights = (rng.random(65_536) / 65_536).astype(np.float32)
    exact = values.astype(np.float64) @ weights.astype(np.float64)
    ours = lane_dot_numpy(values, weights)
    sequential = np.cumsum(values * weights, axis=1, dtype=np.float32)[:, -1]
    scale = np.abs(values * weights).sum(axis=1)
    assert np.all(np.abs(ours - exact) <= 1e-5 * scale)  # a float32 sum: close to the exact value ...
    assert not np.array_equal(ours, sequential)  # ... but not the sequential order


def test_torch_wrapper_batches_strides_dtypes_and_gradients():
    torch.manual_seed(0)
    values = torch.randn(3, 500, 16).transpose(1, 2)  # N×C×P view of an N×P×C tensor
    weights = torch.softmax(torch.randn(3, 500), dim=1)
    out = lane_dot(values, weights)
    assert out.shape == (3, 16) and out.dtype == torch.float32
    for n in range(3):
        expected = four_lane_reference(values[n].contiguous().numpy(), weights[n].numpy())
        assert np.array_equal(out[n].numpy(), expected)
    # float64 and meta tensors use matmul (float64 checks, FLOP counting)
    assert torch.allclose(lane_dot(values.double(), weights.double()), out.double(), atol=1e-6)
    assert lane_dot(values.to("meta"), weights.to("meta")).shape == (3, 16)
    # gradients are those of the dot product
    v1, w1 = values.clone().requires_grad_(), weights.clone().requires_grad_()
    v2, w2 = values.clone().requires_grad_(), weights.clone().requires_grad_()
    grad = torch.randn(3, 16)
    lane_dot(v1, w1).backward(grad)
    torch.matmul(v2, w2.unsqueeze(2)).squeeze(2).backward(grad)
    assert torch.allclose(v1.grad, v2.grad) and torch.allclose(w1.grad, w2.grad, atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="C×P"):
        lane_dot_numpy(np.zeros((2, 5), np.float32), np.zeros(4, np.float32))
