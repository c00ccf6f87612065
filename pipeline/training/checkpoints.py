"""Resume checkpoints of the generic trainer: content fingerprint, RNG states, save and the one loader.

The **fingerprint** of a run covers everything that decides the trained weights (issue #18, defect 1):
the method, the weight-relevant settings (:func:`weight_settings`), the *bytes* of every training image
and map (not just their names) and the source of the code that trains (the trainer, the recipe, the
networks, image reading). A checkpoint is resumed only when its fingerprint matches; otherwise the
run retrains from scratch, so replacing the data under the same names, or editing the recipe, the
VSM maps or the image-reading code, never ships the old model.

Checkpoints ``<out_dir>/checkpoints/epoch_NNNN.pth`` hold ``format``, ``method``, ``fingerprint``,
``settings`` (for error messages), ``epoch``, ``nets``/``optimizers``/``schedulers``/``scalers``
state dicts, ``recipe`` (extra state), ``rng`` and the loss ``history``; they load with
``torch.load(..., weights_only=True)`` (:func:`load_checkpoint`, the only loader).
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from pipeline.errors import DataError
from pipeline.fingerprint import code_digest, content_key, file_digest, params_digest
from pipeline.imageio import load_torch

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fusebench-train/1"
#: trainer keys that change how a run goes, never its weights (left out of the fingerprint)
RUN_ONLY_KEYS = ("device", "threads", "checkpoint_every", "preview_every", "preview_count", "sets", "splits")
#: code every training depends on (with everything it imports from the repository)
TRAINER_CODE = ("pipeline.training.trainer",)


def weight_settings(config: Mapping) -> dict:
    """The settings that decide the weights: every key except :data:`RUN_ONLY_KEYS`."""
    return {k: v for k, v in config.items() if k not in RUN_ONLY_KEYS}


def data_digest(pairs: Sequence) -> str:
    """Digest of each pair's key and the bytes of its images and maps (:mod:`pipeline.fingerprint`)."""
    return params_digest([[pair.key, *(file_digest(path) for path in pair.files())] for pair in pairs])


def fingerprint(method: str, config: Mapping, pairs: Sequence, modules: Iterable[str] = ()) -> str:
    """Fingerprint of a run: method, :func:`weight_settings`, :func:`data_digest` and the source of the
    trainer and the recipe's ``modules`` with all they import (:func:`pipeline.fingerprint.code_digest`)."""
    return content_key(method=method, settings=weight_settings(config), data=data_digest(pairs),
                       code=code_digest([*TRAINER_CODE, *modules]))


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state(module: torch.nn.Module) -> dict:
    """State dict as plain contiguous CPU tensors (whatever memory format training used)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def load_checkpoint(path: str | Path, method: str | None = None, fp: str | None = None,
                    settings: Mapping | None = None) -> dict:
    """Read a trainer checkpoint (``weights_only=True``) and check it belongs to this run.

    Raises :class:`DataError` naming the file when it is unreadable, not a trainer checkpoint, made for
    another ``method``, or (with ``fp``) made with other settings, data or code — the message lists the
    settings that differ from ``settings``.
    """
    path = Path(path)
    state = load_torch(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not a FuseBench training checkpoint (format {CHECKPOINT_FORMAT})", path)
    if method is not None and state.get("method") != method:
        raise DataError(f"checkpoint of method {state.get('method')!r}, not {method!r}: resume it with "
                        f"its own method or delete it", path)
    if fp is not None and state.get("fingerprint") != fp:
        old = state.get("settings") or {}
        new = weight_settings(settings or {})
        differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        what = f"settings {differ}" if differ else "training data or code"
        raise DataError(f"checkpoint of another {method or state.get('method')} recipe (differs in {what}): "
                        "it cannot be resumed", path)
    return state


def latest_matching(folder: Path, method: str, fp: str) -> dict | None:
    """The newest checkpoint in ``folder`` made by this very run (method and fingerprint), else ``None``.

    Checkpoints of other settings, data or code are stale: they are removed (with a log line) so the
    run retrains and never mixes old and new epochs. A checkpoint of *another method* in the folder is
    an error (two methods sharing one output folder).
    """
    if not folder.is_dir():
        return None
    found = None
    for path in sorted(folder.glob("epoch_*.pth"), reverse=True):
        try:
            state = load_checkpoint(path, method)
        except DataError as err:
            if "checkpoint of method" in err.problem:
                raise
            log.warning("removing unreadable checkpoint %s: %s", path, err.problem)
            path.unlink()
            continue
        if state.get("fingerprint") == fp:
            found = found or state
        else:
            log.warning("removing stale checkpoint %s: made with other settings, data or code", path)
            path.unlink()
    return found
