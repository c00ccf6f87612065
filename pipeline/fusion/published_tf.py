"""Published TensorFlow-1 fusion networks as registry methods: ``pmgi``, ``u2fusion``, ``mff_gan``
(spec methods.md §7, §8, §11, §13).

Configured like every pretrained network (:mod:`pipeline.fusion.pretrained`):
``{kind: pmgi, weights: PATH}``. ``PATH`` is the authors' checkpoint as published — the bundle
prefix (``.../CGAN.model-1``), its ``.index`` or ``.data-00000-of-00001`` file, or the folder that
holds exactly one bundle — read without TensorFlow by :mod:`pipeline.fusion.tf_checkpoint`
(CRC-32C of every tensor checked; kernels HWIO → OIHW). The known data files' sha256 are checked
(warning on mismatch). Networks: :mod:`pipeline.fusion.nets.pmgi`, :mod:`.nets.u2fusion`,
:mod:`.nets.mff_gan`.

| method | slots | input | BN | raw | 8-bit output, colour |
|---|---|---|---|---|---|
| ``pmgi`` | ir, vis | Pillow ``convert("YCbCr").convert("F")`` (float luma of the YCbCr round trip), (x − 127.5)/127.5 | per-image, scale 1 shift 0 | tanh·127.5 + 127.5 | SciPy ``imsave`` min–max; grey |
| ``u2fusion`` | vis, ir | Y = 0.299R + 0.587G + 0.114B of x/255 in float64 (no rounding), then float32 | — | tanh/2 + 0.5 | colour source's Cb/Cr merged in float64, ``toimage(cmin=0, cmax=max)`` over all channels |
| ``mff_gan`` | vis = near, ir = far | grey as stored; colour: MATLAB ``rgb2ycbcr`` Y (16..235) rounded; (x − 127.5)/127.5 | — | tanh·127.5 + 127.5 | min–max; grey |

Deliberate differences from the official scripts: PNG instead of BMP (PMGI; same pixels) and
instead of lossy JPEG (MFF-GAN); MFF-GAN's separate MATLAB colour merge is not reproduced
(``colour: merge`` applies the project's rule instead); pairs are matched by name, not by
integer file names.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.fusion.pretrained import Checkpoint, NetInput, PretrainedMethod, scale
from pipeline.fusion.registry import register

_DATA = ".data-00000-of-00001"


class TFCheckpointMethod(PretrainedMethod):
    """A pretrained network whose weights are a TF1 bundle (``files`` = its first data file)."""

    def _resolve(self, weights, where: str) -> dict[str, Path]:
        files = super()._resolve(weights, where)
        path = files[""]
        if path.is_dir():
            found = sorted(path.glob("*.index"))
            path = found[0] if len(found) == 1 else path / "<one *.index>"
        name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
        return {"": path.with_name(name + _DATA)}

    def read_network_state(self, files: dict[str, Path]) -> dict:
        from pipeline.fusion.tf_checkpoint import torch_state

        data = files[""]
        prefix = data.with_name(data.name[: -len(_DATA)])
        return torch_state(prefix, self.tf_key_map(self.build_network()))

    def tf_key_map(self, net) -> dict[str, str]:
        raise NotImplementedError


def pil_float_luma(image: np.ndarray) -> np.ndarray:
    """SciPy ≤ 1.1 ``imread(flatten=True, mode="YCbCr")`` of an image as stored: Pillow
    ``convert("YCbCr")`` then ``convert("F")`` (spec §1), float32 H×W."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("YCbCr").convert("F"), dtype=np.float32)


class _SignedTanh(TFCheckpointMethod):
    """Inputs (x − 127.5)/127.5, raw = tanh·127.5 + 127.5 (float32), SciPy min–max to 8 bits."""

    value_range = "signed"
    output = "minmax"
    output_range = (0.0, 255.0)

    def run(self, net, *inputs):
        return net(*inputs) * 127.5 + 127.5


@register("pmgi")
class PMGI(_SignedTanh):
    checkpoints = (
        Checkpoint("IR_VI", "pmgi/IR_VI", ("CGAN.model-1" + _DATA,),
                   ("005d29cd3fdbf3805369a8372ce3fb15190905db6aed7dee661880776b8cfccf",), bn="image_unit"),
        Checkpoint("Medical", "pmgi/Medical", ("CGAN.model-29" + _DATA,),
                   ("3e95eefac0b8b6e3aca4b91d1f79c76c1bc40ccff717d58e77e2107c5d698816",), bn="image_unit"))
    bn_default = "image_unit"

    def build_network(self):
        from pipeline.fusion.nets.pmgi import PMGINet

        return PMGINet()

    def tf_key_map(self, net):
        from pipeline.fusion.nets.pmgi import tf_key_map

        return tf_key_map(net)

    def prepare(self, ir, vis):
        return NetInput({s: scale(pil_float_luma(img), "signed")[None]
                         for s, img in (("ir", ir), ("vis", vis))}), None


@register("mff_gan")
class MFFGAN(_SignedTanh):
    checkpoints = (
        Checkpoint("Lytro", "mff_gan/Lytro", ("CGAN.model-19" + _DATA,),
                   ("d81df30a245e3a9b8c79ab0b5ba696b938582998a381fa2ed707aecd9675e211",)),
        Checkpoint("MFI-WHU", "mff_gan/MFI-WHU", ("CGAN.model-19" + _DATA,),
                   ("b81ed52c2754ff5424c942e5de21f6be565d99af8d8ebbccd7bae59ed3bda249",)))
    slots = ("vis", "ir")

    def build_network(self):
        from pipeline.fusion.nets.mff_gan import MFFGANNet

        return MFFGANNet()

    def tf_key_map(self, net):
        from pipeline.fusion.nets.pmgi import tf_key_map

        return tf_key_map(net)

    @staticmethod
    def matlab_y(image: np.ndarray) -> np.ndarray:
        """MATLAB ``rgb2ycbcr`` luma of a uint8 RGB image, rounded: 16 + (65.481R + 128.553G
        + 24.966B)/255; a grey image as stored."""
        if image.ndim == 2:
            return image
        rgb = image.astype(np.float64)
        y = 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
        return np.floor(y + 0.5).astype(np.uint8)

    def prepare(self, ir, vis):
        return NetInput({s: scale(self.matlab_y(np.asarray(img)), "signed")[None]
                         for s, img in (("ir", ir), ("vis", vis))}), None


@register("u2fusion")
class U2Fusion(TFCheckpointMethod):
    checkpoints = (Checkpoint("model.ckpt", "u2fusion", ("model.ckpt" + _DATA,),
                              ("e50cada8d4ec92f2577ad5db5d212fba521dffb35d04e00a20364b43512c64c8",)),)
    slots = ("vis", "ir")

    def build_network(self):
        from pipeline.fusion.nets.u2fusion import U2FusionNet

        return U2FusionNet()

    def tf_key_map(self, net):
        from pipeline.fusion.nets.u2fusion import tf_key_map

        return tf_key_map(net)

    @staticmethod
    def ycbcr(image: np.ndarray):
        """(Y, Cb, Cr) float64 of x/255 (official ``test_main.py``); Cb/Cr None for a grey image."""
        x = np.asarray(image, dtype=np.float64) / 255.0
        if x.ndim == 2:
            return x, None, None
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        return (0.299 * r + 0.587 * g + 0.114 * b, -0.1687 * r - 0.3313 * g + 0.5 * b + 128 / 255,
                0.5 * r - 0.4187 * g - 0.0813 * b + 128 / 255)

    def prepare(self, ir, vis):
        """Y of each source in float32; context = (Cb, Cr) of the colour source when exactly one is colour."""
        parts = {"vis": self.ycbcr(vis), "ir": self.ycbcr(ir)}
        coloured = [p for p in parts.values() if p[1] is not None]
        context = coloured[0][1:] if len(coloured) == 1 else None
        return NetInput({s: p[0].astype(np.float32)[None] for s, p in parts.items()}), context

    def finish(self, raw, ir, vis, context, gray=False):
        """R = Y + 1.402(Cr − 128/255), G = Y − 0.34414(Cb − 128/255) − 0.71414(Cr − 128/255),
        B = Y + 1.772(Cb − 128/255) in float64, then ``toimage(cmin=0, cmax=max)`` over all
        channels: ⌊clip(x·255/max, 0, 255) + 0.5⌋ (grey Y alone with ``gray`` or two grey sources)."""
        if gray or context is None:
            return self.to_uint8(raw)
        if self.parameters.get("colour") == "merge":
            return super().finish(raw, ir, vis, context, gray)
        y = np.asarray(raw, dtype=np.float64)
        cb, cr = (c - 128 / 255 for c in context)
        return self.stretch_to_max(np.stack([y + 1.402 * cr, y - 0.34414 * cb - 0.71414 * cr, y + 1.772 * cb], axis=-1))

    @staticmethod
    def stretch_to_max(x: np.ndarray) -> np.ndarray:
        """SciPy ``toimage(x, cmin=0, cmax=x.max())``: ⌊clip(x·255/max, 0, 255) + 0.5⌋ (divisor 1 if max = 0)."""
        x = np.asarray(x, dtype=np.float64)
        top = float(x.max()) or 1.0
        return np.floor(np.clip(x * 255.0 / top, 0.0, 255.0) + 0.5).astype(np.uint8)

    def to_uint8(self, raw):
        return self.stretch_to_max(raw)
