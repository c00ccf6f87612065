"""Reading and writing images, in one place.

* :func:`read_image` returns ``uint8`` arrays: ``H×W`` for grey storage (including colour files whose
  three channels are equal, as M3FD infrared and the CT/MRI PNGs are stored) and ``H×W×3`` **RGB**
  for real colour. This is the single place where grey/colour and 1- vs 3-channel storage are
  normalised. 16-bit files are rejected with a clear error rather than silently truncated.
* :func:`write_image` and :func:`atomic_path` write through a temporary file in the same folder and
  ``os.replace`` it, so an interrupted run never leaves a half-written output.
* :func:`save_torch` / :func:`load_torch`: the one atomic ``torch.save`` and the one
  ``torch.load(weights_only=True)`` of checkpoints, whose failures are one line naming the file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pipeline.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_UMASK = os.umask(0)
os.umask(_UMASK)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path, mode: str = "auto") -> np.ndarray:
    """Read an 8-bit image.

    mode: ``"auto"`` (grey ``H×W`` when stored grey or with equal channels, else ``H×W×3`` RGB),
    ``"gray"`` (always ``H×W``; colour converted with ITU-R 601 luma as in OpenCV), ``"rgb"``
    (always ``H×W×3``). Raises :class:`DataError` naming the file if it is missing, empty,
    unreadable or not 8-bit.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    if path.stat().st_size == 0:
        raise DataError("image file is empty (0 bytes)", path)
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DataError("cannot decode image (corrupt or unsupported format)", path)
    if image.dtype != np.uint8:
        raise DataError(f"expected an 8-bit image, found {image.dtype}", path)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if mode == "auto" and _channels_equal(image):
            image = np.ascontiguousarray(image[:, :, 0])
    if mode == "gray" and image.ndim == 3:
        image = rgb_to_gray(image)
    elif mode == "rgb" and image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif mode not in ("auto", "gray", "rgb"):
        raise ValueError(f"unknown mode {mode!r}")
    return image


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """H×W×3 RGB uint8 -> H×W grey with ITU-R 601 luma as in OpenCV (the ``"gray"`` mode of
    :func:`read_image`)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def read_label_image(path: str | Path) -> np.ndarray:
    """Read a label PNG of class ids as ``H×W uint8`` (first channel if stored with three)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("label file not found", path)
    if path.stat().st_size == 0:
        raise DataError("label file is empty (0 bytes)", path)
    image = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError("cannot decode label image", path)
    if image.ndim == 3:
        if not _channels_equal(image[:, :, :3]):
            raise DataError("label image has differing colour channels; expected class ids", path)
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        if image.max() > 255:
            raise DataError(f"label values up to {int(image.max())} do not fit 8 bits", path)
        image = image.astype(np.uint8)
    return np.ascontiguousarray(image)


def _channels_equal(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2]))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary name keeps the suffix so libraries that choose a format by suffix work.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``H×W`` grey or ``H×W×3`` RGB ``uint8`` image atomically (format from the suffix)."""
    path = Path(path)
    if image.dtype != np.uint8:
        raise TypeError(f"write_image wants uint8, got {image.dtype} for {path}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise DataError("OpenCV could not encode the image", path)
    with atomic_path(path) as tmp:
        buffer.tofile(str(tmp))
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
    return Path(path)


def _torch_load_reason(err: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file (torch's own message
    is a paragraph about the PyTorch 2.6 default, with the actual reason at its end)."""
    text = str(err).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        detail = detail.split(" was not an allowed global", 1)[0][:160]
        if detail.startswith("Unsupported global"):
            return f"it holds Python objects other than tensors and containers ({detail})"
        return f"not a PyTorch checkpoint, or a corrupt one ({detail or type(err).__name__})"
    first = text.splitlines()[0][:160] if text else type(err).__name__
    return f"not a PyTorch checkpoint, or a corrupt one ({first})"


def load_torch(path: str | Path, what: str = "checkpoint"):
    """``torch.load(path, map_location="cpu", weights_only=True)``; :class:`DataError` naming the file
    when it is missing (``"<what> not found"``) or unreadable (``"cannot read <what> with
    torch.load(weights_only=True): <one-line reason>"``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip / unpickling errors are bad input, reported as one line
        raise DataError(f"cannot read {what} with torch.load(weights_only=True): {_torch_load_reason(err)}",
                        path) from err


def save_torch(path: str | Path, obj) -> Path:
    """``torch.save`` through a temporary file + rename (never a half-written checkpoint)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
