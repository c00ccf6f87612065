"""The "pretrained network" registry kind: a published network run as its official script runs it.

A :class:`PretrainedMethod` subclass declares what differs between methods (spec methods.md §1,
§16), and the base class does the rest (loading, checking, batching, device, speed, metadata):

* ``checkpoints``: the known published files (:class:`Checkpoint`: label, folder under
  ``../shared/weights``, file name(s), sha256, BN mode). Option ``weights``: a path (a folder
  holding the official file names when the method has several ``parts``, or a mapping
  ``{part: path}``), or ``shared`` = ``$FUSEBENCH_SHARED`` (default ``../shared``) +
  ``weights/<folder>/<file>`` of the first known checkpoint, or ``trained`` = the checkpoint the
  ``train@<kind>`` stage writes (``models/trained/<kind>.pth``, :mod:`pipeline.training`; PMGI,
  DenseFuse, MFF-GAN: same network, same test conventions; a ``.pth`` path of such a method is read
  the same way). The file's sha256 is compared with
  the known ones; a mismatch is a **warning naming the file**, unless the user sets
  ``weights_sha256: null`` (no check) or gives the expected hex digest(s).
* BN mode at test time (``bn``): ``eval`` | ``image`` (per-image statistics) | ``image_unit``
  (per-image, scale 1 shift 0) — :class:`pipeline.fusion.nets.blocks.ModeBatchNorm`. Default
  ``auto`` = the matched checkpoint's mode, else :meth:`PretrainedMethod.default_bn` (which may
  look at the state, e.g. TarDAL: ``num_batches_tracked`` = 0 means per-image statistics).
* input convention: ``slots`` (the order the network is called with: names ``ir`` / ``vis``),
  ``grey`` (per slot: ``pil`` = PIL ``convert("L")`` integer luma, ``opencv`` = OpenCV's
  fixed-point ``RGB2GRAY``, ``rgb`` = 3 channels, grey replicated), ``value_range`` (``unit`` =
  /255, ``byte`` = 0..255 unscaled, ``signed`` = (x − 127.5)/127.5); :meth:`prepare` may be
  overridden for anything else (SeAFusion's own YCrCb).
* output convention: ``output`` (``truncate`` = astype uint8 after clipping to ``output_range``
  and scaling to 0..255 in float32; ``round_imageio`` = ⌊255x + 0.499999999⌋ (imageio 2.x);
  ``minmax`` = SciPy ``bytescale``: ⌊clip((x − min)·255/(max − min), 0, 255) + 0.5⌋) and
  ``output_range`` (the raw values that map to 0 and 255).
* colour rule: ``colour_rule = "grey"`` (the official script writes a grey image; option
  ``colour: merge`` recombines it with the visible chrominance by the project rule) or
  ``"merge"``; methods with their own colour path override :meth:`finish`.

Loading is strict (:mod:`pipeline.fusion.checkpoints`: ``weights_only=True``, identical keys and
shapes, one-line DataError naming the file). ``device: auto`` = CUDA when present. Inference runs
under ``torch.inference_mode``; option ``fast`` (default true) folds eval-mode BN into the convs,
zeroes subnormal weights and flushes subnormal results while it runs
(:func:`~pipeline.fusion.nets.blocks.zero_subnormals`, :func:`~.blocks.denormals_flushed`) and uses
channels_last unless BN uses per-image statistics (float rounding only; the eager module is
``fast: false``). Same-size pairs
are batched up to ``batch_pixels`` (``auto``: 4 × 480×640 on CUDA, one pair per call on CPU,
where batching does not speed up these networks and costs memory).

``fuse(ir, vis)`` (float grey in [0, 1], the registry contract) quantises the inputs to 8 bits
and goes through :meth:`prepare`, so images read from 8-bit files give exactly the stage's result.

How to add a pretrained method (e.g. in ``pipeline/fusion/published.py``)::

    @register("mynet")
    class MyNet(PretrainedMethod):
        checkpoints = (Checkpoint("mynet", "mynet", ("mynet.pth",), "<sha256>", bn="eval"),)
        slots = ("vis", "ir"); grey = {"ir": "pil", "vis": "opencv"}; value_range = "unit"
        output, output_range = "truncate", (0.0, 1.0)
        def build_network(self):            # nn.Module from pipeline/fusion/nets/mynet.py
            return MyNetModule()
        # optional: read_network_state(files) for other checkpoint formats (TF bundles: return a
        # state_dict with the module's keys), run(net, *slots) for another call, prepare/finish.

Several files (DIDFuse): ``parts = ("encoder", "decoder")`` and a file name per part in the
Checkpoint; each file's state is loaded under ``<part>.``.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.fusion.registry import FusionMethod, check_pair

GREY_RULES = ("pil", "opencv", "rgb")
VALUE_RANGES = ("unit", "byte", "signed")
OUTPUTS = ("truncate", "round_imageio", "minmax")
AUTO_CUDA_BATCH_PIXELS = 4 * 480 * 640


@dataclass(frozen=True)
class Checkpoint:
    """A published checkpoint: ``files`` (one per part) under ``weights/<folder>/``, their sha256."""

    label: str
    folder: str
    files: tuple[str, ...]
    sha256: tuple[str, ...]
    bn: str = "eval"


@dataclass
class NetInput:
    """Network inputs of one pair: C×H×W float32 arrays per slot name, plus the pair's size."""

    arrays: dict

    @property
    def size(self) -> tuple[int, int]:
        return next(iter(self.arrays.values())).shape[-2:]


def grey(image: np.ndarray, rule: str) -> np.ndarray:
    """1×H×W (``pil``, ``opencv``) or 3×H×W (``rgb``) uint8 of an image as stored."""
    from pipeline.fusion import colour

    image = np.asarray(image)
    if rule == "rgb":
        rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    if image.ndim == 3:
        if rule == "pil":
            image = colour.luma(image)
        else:
            import cv2

            image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return image[None]


def scale(u8: np.ndarray, value_range: str) -> np.ndarray:
    """uint8 -> float32 per ``value_range`` (``unit``: x/255, ``byte``: x, ``signed``: (x − 127.5)/127.5)."""
    x = np.asarray(u8, dtype=np.float32)
    if value_range == "unit":
        return x / np.float32(255.0)
    if value_range == "signed":
        return (x - np.float32(127.5)) / np.float32(127.5)
    return x


def quantise(x: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8 (⌊255x + 0.5⌋): exact for images read from 8-bit files."""
    return np.floor(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_uint8_rule(raw: np.ndarray, output: str, output_range: tuple[float, float]) -> np.ndarray:
    """8-bit image of ``raw`` by an output convention (module docstring)."""
    lo, hi = output_range
    if output == "truncate":
        x = np.clip(np.asarray(raw, dtype=np.float32), lo, hi)
        if (lo, hi) != (0.0, 255.0):
            x = (x - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        return x.astype(np.uint8)
    if output == "round_imageio":
        x = (np.asarray(raw, dtype=np.float64) - lo) / (hi - lo)
        return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.499999999).astype(np.uint8)
    if output == "minmax":
        x = np.asarray(raw, dtype=np.float64)
        cmin, cmax = float(x.min()), float(x.max())
        span = (cmax - cmin) or 1.0
        return np.floor(np.clip((x - cmin) * 255.0 / span, 0.0, 255.0) + 0.5).astype(np.uint8)
    raise ValueError(f"unknown output convention {output!r}")


class PretrainedMethod(FusionMethod):
    """Base class of the published networks (see the module docstring)."""

    kind = "network"
    option_names = ("weights", "weights_sha256", "device", "bn", "fast", "batch_pixels", "colour")
    checkpoints: tuple[Checkpoint, ...] = ()
    parts: tuple[str, ...] = ("",)
    slots: tuple[str, ...] = ("ir", "vis")
    grey: dict = {"ir": "pil", "vis": "pil"}
    value_range = "unit"
    output = "truncate"
    output_range = (0.0, 1.0)
    colour_rule = "grey"
    bn_default = "eval"
    channels_last = True

    def __init__(self, name=None, weights="shared", weights_sha256="known", device="auto", bn="auto",
                 fast=True, batch_pixels="auto", colour="official", **options):
        super().__init__(name=name, weights=weights if isinstance(weights, dict) else str(weights),
                         weights_sha256=weights_sha256, device=device, bn=bn, fast=bool(fast),
                         batch_pixels=batch_pixels, colour=colour, **options)
        where = f"fusion.methods.{self.name}"
        if bn not in ("auto", "eval", "image", "image_unit"):
            raise ConfigError(f"bn must be auto, eval, image or image_unit, got {bn!r}", where)
        if colour not in ("official", "merge"):
            raise ConfigError(f"colour must be official or merge, got {colour!r}", where)
        self.trained = self._is_trained(weights)
        self.files = self._trained_files(weights, where) if self.trained else self._resolve(weights, where)
        self.checkpoint: dict | None = None
        self.device, self.fast, self.bn = device, bool(fast), bn
        self.batch_pixels = batch_pixels
        self._net = self._eager = None
        self._weights_info: list[dict] | None = None
        self.bn_mode: str | None = None

    # -- weights -------------------------------------------------------------------------------
    def _resolve(self, weights, where: str) -> dict[str, Path]:
        if isinstance(weights, dict):
            if sorted(weights) != sorted(self.parts):
                raise ConfigError(f"weights must map {', '.join(self.parts)} to files, got {sorted(weights)}", where)
            return {part: Path(str(weights[part])) for part in self.parts}
        if str(weights) in ("", "None", "null"):
            raise ConfigError("weights: set the path of the published checkpoint", where)
        if str(weights) == "shared":
            known = self.checkpoints[0]
            root = Path(os.environ.get("FUSEBENCH_SHARED", "../shared")) / "weights" / known.folder
            return {part: root / file for part, file in zip(self.parts, known.files)}
        path = Path(str(weights))
        if len(self.parts) > 1:  # a folder (its files' existence is checked when loading)
            if path.is_file():
                raise ConfigError(f"weights must be a folder holding {', '.join(self.checkpoints[0].files)} "
                                  f"or a mapping {{{', '.join(self.parts)}: PATH}}; {path} is a file", where)
            return {part: path / file for part, file in zip(self.parts, self.checkpoints[0].files)}
        return {self.parts[0]: path}

    def _is_trained(self, weights) -> bool:
        """``weights`` names a checkpoint of this pipeline's trainer: ``trained``, or a ``.pth`` file
        of a method that has a training recipe (the published PMGI / MFF-GAN weights are TF bundles,
        DenseFuse's a ``.model`` file)."""
        if isinstance(weights, dict):
            return False
        if str(weights) == "trained":
            return True
        from pipeline.training.recipe import trainable_methods

        return Path(str(weights)).suffix == ".pth" and self.registered_name in trainable_methods()

    def _trained_files(self, weights, where: str) -> dict[str, Path]:
        """``weights: trained``: the checkpoint of the ``train@<kind>`` stage (``models/trained/<kind>.pth``)."""
        from pipeline.training.paths import trained_weights

        if len(self.parts) > 1:
            raise ConfigError(f"weights: trained is not available for {self.registered_name} (no training recipe)", where)
        return {"": trained_weights(self.registered_name) if str(weights) == "trained" else Path(str(weights))}

    def _trained_state(self) -> dict:
        """The generator state of a trained checkpoint (:func:`pipeline.fusion.trained.load_trained`:
        method checked, a flagged training run logged)."""
        from pipeline.fusion.trained import load_trained

        self.checkpoint = load_trained(self.files[""], self.registered_name)
        return dict(self.checkpoint["model"])

    def health(self) -> dict:
        """Training health verdict of a ``weights: trained`` checkpoint (empty for published weights)."""
        self.network
        return dict((self.checkpoint or {}).get("health") or {})

    def _check_sha(self) -> Checkpoint | None:
        """sha256 of every file vs the known checkpoints (or the user's digests); warns on mismatch
        (never for ``weights: trained``, a checkpoint of this pipeline)."""
        from pipeline.fusion.checkpoints import sha256_file

        expected = self.parameters.get("weights_sha256", "known")
        digests = {part: sha256_file(path) for part, path in self.files.items() if path.is_file()}
        self._weights_info = [{"part": part or None, "file": path.name, "path": str(path),
                               "sha256": digests.get(part), **({"checkpoint": "trained"} if self.trained else {})}
                              for part, path in self.files.items()]
        if len(digests) < len(self.files) or self.trained:
            return None  # the loader reports the missing file
        match = next((c for c in self.checkpoints if tuple(digests[p] for p in self.parts) == c.sha256), None)
        for info in self._weights_info:
            info["checkpoint"] = match.label if match else None
        if expected is None:
            return match
        if expected == "known":
            if match is None:
                for part, path in self.files.items():
                    if digests[part] not in {c.sha256[self.parts.index(part)] for c in self.checkpoints}:
                        known = ", ".join(f"{c.label} ({'/'.join(c.files)})" for c in self.checkpoints)
                        warnings.warn(f"{path}: sha256 {digests[part]} is not a published {self.registered_name} "
                                      f"checkpoint ({known}); set weights_sha256: null to use it without "
                                      f"this warning", stacklevel=3)
            return match
        wanted = [expected] if isinstance(expected, str) else list(expected)
        for (part, path), want in zip(self.files.items(), wanted):
            if digests[part] != str(want).lower():
                warnings.warn(f"{path}: sha256 {digests[part]} differs from weights_sha256 {want}", stacklevel=3)
        return match

    def read_network_state(self, files: dict[str, Path]) -> dict:
        """The network's state_dict from the weight files (default: PyTorch files, ``<part>.`` prefix)."""
        from pipeline.fusion.checkpoints import read_state

        state: dict = {}
        for part, path in files.items():
            prefix = f"{part}." if part else ""
            state.update({prefix + k: v for k, v in read_state(path, self.registered_name).items()})
        return state

    def default_bn(self, state: dict) -> str:
        """BN mode for a checkpoint not among the known ones."""
        return self.bn_default

    def build_network(self):
        raise NotImplementedError

    # -- network -------------------------------------------------------------------------------
    @property
    def network(self):
        """The eager module: loaded strictly, BN mode set, on the device, eval mode."""
        if self._eager is None:
            from pipeline.device import resolve_device
            from pipeline.fusion.checkpoints import load_strict
            from pipeline.fusion.nets.blocks import set_bn_mode

            match = self._check_sha()
            state = self._trained_state() if self.trained else self.read_network_state(self.files)
            net = load_strict(self.build_network(), state, next(iter(self.files.values())), self.registered_name)
            self.bn_mode = self.bn if self.bn != "auto" else (match.bn if match else self.default_bn(state))
            self._eager = set_bn_mode(net, self.bn_mode).to(resolve_device(self.device)).eval()
        return self._eager

    def runner(self):
        """The module inference runs: the eager one, or (``fast``) a BN-folded channels_last copy."""
        if self._net is None:
            import copy

            import torch

            from pipeline.fusion.nets.blocks import fold_conv_bn, zero_subnormals

            net = self.network
            if self.fast:
                net = zero_subnormals(fold_conv_bn(copy.deepcopy(net)))
                if self._channels_last():
                    net = net.to(memory_format=torch.channels_last)
            self._net = net
        return self._net

    def _channels_last(self) -> bool:
        # per-image BN statistics reduce differently on channels_last tensors (TarDAL: 1e-4 vs
        # 1e-6 from the official raw), so that layout is kept to networks without them, and to
        # those it speeds up (class attribute ``channels_last``)
        return self.fast and self.bn_mode == "eval" and self.channels_last

    def run(self, net, *inputs):
        """Network call with the tensors in ``slots`` order (override for another call)."""
        return net(*inputs)

    def _max_pixels(self) -> int:
        if self.batch_pixels == "auto":
            return AUTO_CUDA_BATCH_PIXELS if str(self.device_of()).startswith("cuda") else 0
        return int(self.batch_pixels or 0)

    def device_of(self):
        return next(iter(self.network.parameters())).device

    def _forward(self, items: Sequence[NetInput]) -> list[np.ndarray]:
        import torch

        device = self.device_of()
        tensors = [torch.from_numpy(np.stack([it.arrays[s] for it in items])).to(device) for s in self.slots]
        if self._channels_last():
            tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
        from pipeline.fusion.nets.blocks import denormals_flushed

        flush = denormals_flushed() if self.fast else contextlib.nullcontext()
        with torch.inference_mode(), flush:
            out = self.run(self.runner(), *tensors)
        out = out.float().cpu().contiguous().numpy()
        return [out[k, 0].copy() if out.shape[1] == 1 else out[k].copy() for k in range(out.shape[0])]

    # -- registry interface --------------------------------------------------------------------
    def prepare(self, ir: np.ndarray, vis: np.ndarray):
        """Stored sources -> :class:`NetInput` per the input convention; context = the sources."""
        sources = {"ir": ir, "vis": vis}
        arrays = {s: scale(grey(sources[s], self.grey[s]), self.value_range) for s in self.slots}
        return NetInput(arrays), None

    def finish(self, raw, ir, vis, context, gray: bool = False) -> np.ndarray:
        """Official image: grey ``to_uint8(raw)``, or with ``colour: merge`` / ``colour_rule =
        "merge"`` the project rule (fused Y + chrominance donor's Cb/Cr)."""
        if self.colour_rule == "merge" or self.parameters.get("colour") == "merge":
            return super().finish(raw, ir, vis, FusionMethod.prepare(self, ir, vis)[1], gray)
        return self.to_uint8(raw)

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return to_uint8_rule(raw, self.output, self.output_range)

    def fuse(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        ir, vis = np.asarray(ir), np.asarray(vis)
        check_pair(ir, vis)
        return self.fuse_batch([(ir, vis)])[0]

    def fuse_batch(self, items) -> list[np.ndarray]:
        """Raw outputs of :class:`NetInput` items (or ``(ir, vis)`` float grey pairs), batching
        consecutive same-size items up to ``batch_pixels`` pixels per forward."""
        inputs = []
        for item in items:
            if not isinstance(item, NetInput):
                check_pair(*item)
                item = self.prepare(quantise(item[0]), quantise(item[1]))[0]
            inputs.append(item)
        limit, out, i = self._max_pixels(), [], 0
        while i < len(inputs):
            h, w = inputs[i].size
            j = i + 1
            while j < len(inputs) and inputs[j].size == (h, w) and (j - i + 1) * h * w <= limit:
                j += 1
            out.extend(self._forward(inputs[i:j]))
            i = j
        return out

    def params_count(self) -> int:
        from pipeline.fusion.nets.blocks import count_params

        return count_params(self.build_network())

    def gflops(self, height: int, width: int) -> float:
        """GFLOPs of one eager forward at H×W (``torch.utils.flop_counter`` on meta tensors)."""
        from pipeline.fusion.nets.blocks import count_gflops, set_bn_mode

        shapes = [(1, self.slot_channels(s), height, width) for s in self.slots]
        net = set_bn_mode(self.build_network().eval(), self.bn if self.bn != "auto" else "eval")
        return count_gflops(net, *shapes, call=self.run)

    def slot_channels(self, slot: str) -> int:
        """Channels of the network input ``slot`` (3 for the ``rgb`` grey rule, else 1)."""
        return 3 if self.grey.get(slot) == "rgb" else 1

    def weights_info(self) -> list[dict]:
        """[{part, file, path, sha256, checkpoint}] of the weight files (hashes them if needed)."""
        if self._weights_info is None:
            self._check_sha()
        return self._weights_info

    def input_files(self) -> list[Path]:
        return list(self.files.values())

    def metadata(self) -> dict:
        return {**super().metadata(), "weights": self.weights_info(), "bn": self.bn_mode or self.bn}
