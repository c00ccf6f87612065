"""Published PyTorch fusion networks as registry methods (spec methods.md §2–§6, §13).

Each is configured like ``mlfuse``: ``{kind: seafusion, weights: PATH}`` (``weights: shared`` =
the copy in ``../shared/weights``); conventions are declared on the class
(:mod:`pipeline.fusion.pretrained`), networks are in :mod:`pipeline.fusion.nets`.

| method | input (slots, grey rule, range) | BN | 8-bit output, colour |
|---|---|---|---|
| ``densefuse`` | ir, vis; PIL L; 0..255 | — | truncate; grey |
| ``seafusion`` | vis YCrCb (float, unclamped), ir OpenCV grey; /255 | — | own YCrCb→RGB, clamp, min–max, truncate |
| ``tardal`` | ir, vis; OpenCV grey; /255 | tardal.pt per-image, tardal+/++ eval | clip, truncate; OpenCV YCrCb merge |
| ``ifcnn`` | vis, ir; RGB (grey replicated); /255 | eval | clamp, truncate, OpenCV RGB→grey |
| ``didfuse`` | ir, vis; PIL L (the spec's choice for RGB visible); /255 | eval | ⌊255x + 0.499999999⌋; grey |

Deliberate differences from the official scripts: outputs are always PNG (SeAFusion writes the
input's format); SeAFusion's min–max runs per image, not over a batch array (an official defect
with batch > 1); pairs are matched by name by the dataset layer.
"""
from __future__ import annotations

import numpy as np

from pipeline.fusion.pretrained import Checkpoint, NetInput, PretrainedMethod, grey, scale, to_uint8_rule
from pipeline.fusion.registry import register


@register("densefuse")
class DenseFuse(PretrainedMethod):
    checkpoints = (Checkpoint("densefuse_gray", "densefuse", ("densefuse_gray.model",),
                              ("b34cf3650f04161b31ac2467decfeedf7eba39165b7618f846e0f298ecd2ac65",)),)
    value_range = "byte"
    output_range = (0.0, 255.0)

    def build_network(self):
        from pipeline.fusion.nets.densefuse import DenseFuseNet

        return DenseFuseNet()


@register("seafusion")
class SeAFusion(PretrainedMethod):
    checkpoints = (Checkpoint("fusionmodel_final", "seafusion", ("fusionmodel_final.pth",),
                              ("8d65a7f9a50f36349803368cf9920f40420776995e7e8cc8a56d8d30e499431d",)),)
    slots = ("vis", "ir")
    grey = {"ir": "opencv", "vis": "rgb"}

    def build_network(self):
        from pipeline.fusion.nets.seafusion import SeAFusionNet

        return SeAFusionNet()

    def slot_channels(self, slot: str) -> int:
        return 1

    def prepare(self, ir, vis):
        """ir: OpenCV grey /255; vis: RGB /255 → Y = 0.299R + 0.587G + 0.114B, Cr = (R − Y)·0.713
        + 0.5, Cb = (B − Y)·0.564 + 0.5 in float32, unclamped (official ``RGB2YCrCb``)."""
        r, g, b = scale(grey(vis, "rgb"), "unit")
        y = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b
        cr = (r - y) * np.float32(0.713) + np.float32(0.5)
        cb = (b - y) * np.float32(0.564) + np.float32(0.5)
        return NetInput({"vis": y[None], "ir": scale(grey(ir, "opencv"), "unit")}), (cr, cb)

    def finish(self, raw, ir, vis, context, gray=False):
        """[Y, Cr − 0.5, Cb − 0.5] × [[1,1,1],[1.403,−0.714,0],[0,−0.344,1.773]], clamp [0, 1],
        min–max over the image, ×255, truncate (RGB; grey luma with ``gray``)."""
        from pipeline.fusion import colour

        cr, cb = (c - np.float32(0.5) for c in context)
        y = np.asarray(raw, dtype=np.float32)
        rgb = np.stack([y + np.float32(1.403) * cr,
                        y - np.float32(0.714) * cr - np.float32(0.344) * cb,
                        y + np.float32(1.773) * cb], axis=-1)
        rgb = np.clip(rgb, np.float32(0.0), np.float32(1.0))
        lo, hi = rgb.min(), rgb.max()
        rgb = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
        image = (np.float32(255.0) * rgb).astype(np.uint8)
        return colour.luma(image) if gray else image

    def to_uint8(self, raw):
        """Grey-only view (metrics on the raw Y): truncate 255·clip(Y, 0, 1)."""
        return to_uint8_rule(raw, "truncate", (0.0, 1.0))


_TARDAL = (("tardal", "e0fa61e25cffa9fb14ff17b47ea7ba237a6e8c6f37e1b9b115d63354ff0f13e1", "image"),
           ("tardal+", "cff3756548b511e3e415616debc557cdc85b3bb19393ca158cac8d08f232897c", "eval"),
           ("tardal++", "7009d125e36db043d6918d9358e10c6dca7fdf2dd08ada09c5ecd294f45f98c5", "eval"))


@register("tardal")
class TarDAL(PretrainedMethod):
    checkpoints = tuple(Checkpoint(label, "tardal", (f"{label}.pt",), (sha,), bn) for label, sha, bn in _TARDAL)
    grey = {"ir": "opencv", "vis": "opencv"}
    # tardal++ fast path at 480x640, same run: 6.5 CPU s per pair channels_last, 2.8 s NCHW
    channels_last = False

    def build_network(self):
        from pipeline.fusion.nets.tardal import TarDALGenerator

        return TarDALGenerator()

    def default_bn(self, state):
        """tardal.pt-like checkpoints (never-updated running statistics) use per-image statistics."""
        tracked = state.get("encoder.1.num_batches_tracked")
        return "image" if tracked is not None and int(tracked) == 0 else "eval"

    def finish(self, raw, ir, vis, context, gray=False):
        """Y = truncate(255·clip(raw, 0, 1)); with a colour visible: OpenCV BGR→YCrCb of the
        visible, Y replaced, OpenCV YCrCb→BGR (uint8), as ``fuse.py --color``."""
        import cv2

        y = self.to_uint8(raw)
        if gray or np.asarray(vis).ndim == 2:
            return y
        ycrcb = cv2.cvtColor(np.ascontiguousarray(vis[:, :, ::-1]), cv2.COLOR_BGR2YCrCb)
        ycrcb[:, :, 0] = y
        return np.ascontiguousarray(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)[:, :, ::-1])


@register("ifcnn")
class IFCNN(PretrainedMethod):
    checkpoints = (Checkpoint("IFCNN-MAX", "ifcnn", ("IFCNN-MAX.pth",),
                              ("6022b44c88a2f0367ba9b08fcdf0d663745d9a966fca0ee1f41867797b6ff53f",)),)
    slots = ("vis", "ir")
    grey = {"ir": "rgb", "vis": "rgb"}

    def build_network(self):
        from pipeline.fusion.nets.ifcnn import IFCNNNet

        return IFCNNNet("max")

    def to_uint8(self, raw):
        """clamp(0, 1)·255, truncate, then OpenCV RGB→grey (the official grey PNG)."""
        import cv2

        rgb = to_uint8_rule(raw, "truncate", (0.0, 1.0))
        return rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb.transpose(1, 2, 0)),
                                                      cv2.COLOR_RGB2GRAY)


@register("didfuse")
class DIDFuse(PretrainedMethod):
    checkpoints = (Checkpoint("IJCAI", "didfuse", ("Encoder_weight_IJCAI.pkl", "Decoder_weight_IJCAI.pkl"),
                              ("4d84a4e64e58469d3d4591f83c6683ead3e422498519db99bb617cb29d268471",
                               "c6974e2a7c66ab579a77bacb086023237a229e769d459783bad8ff43e52e9986")),)
    parts = ("encoder", "decoder")
    output = "round_imageio"

    def build_network(self):
        from pipeline.fusion.nets.didfuse import DIDFuseNet

        return DIDFuseNet()
