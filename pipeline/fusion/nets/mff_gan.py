"""MFF-GAN generator (Zhang et al., Information Fusion 2021; spec methods.md §11), multi-focus.

The two-path dense/exchange layout of PMGI (:class:`pipeline.fusion.nets.pmgi.TwoPathNet`) with
single-channel path inputs (first path = near focus, TF scopes ``layerK``; second = far focus,
``layerK_far``), **no BN**, LReLU(0.2), zero 'SAME' padding, output tanh. About 40 k parameters.
``MFFGANNet()`` is trainable as is; the discriminator (training only) is not defined here.
"""
from __future__ import annotations

from pipeline.fusion.nets.pmgi import TwoPathNet, tf_key_map  # noqa: F401  (tf_key_map: re-export)


class MFFGANNet(TwoPathNet):
    """``forward(near, far)``: N×1×H×W inputs in [−1, 1] → tanh output."""

    def __init__(self, width: int = 16):
        super().__init__(1, "_far", bn=False, width=width)
