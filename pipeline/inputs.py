"""The content manifest of the active profile's inputs: what DVC sees of data outside its outputs.

DVC caches a stage by the hashes of its ``deps``, and ``dvc.yaml`` is the same file for every
profile, but the data a stage reads is not: the demo profile reads ``data/demo`` (an output of
``demo_data``), the ``full`` profile ``/data/M3FD``, ``/data/RoadScene``..., and the published
networks' weights lie wherever the user put them (stage ``weights``). DVC cannot pick deps by profile (its
``${...}`` interpolation reads the raw ``params.yaml``, has no nesting and no lists), so the stage
``inputs`` (``always_changed``: it runs on every ``dvc repro``) resolves the active profile and
writes one manifest per kind of input into ``results/inputs/``:

* ``datasets.json`` — every ``datasets`` entry: kind, root and the content digest of the root
  folder (:func:`pipeline.fingerprint.tree_digest`: every file's name and bytes);
* ``training.json`` — the training pair sets given inline under ``train.methods.<m>.sets``.

Weights files have their own records, one per method (stage ``weights``,
:mod:`pipeline.fusion.weights_index`, also ``always_changed``).

Stages depend on these files instead of the data folders: when the bytes of any input of the
active profile change (a file replaced under the same name too), the manifest changes and DVC
re-runs exactly the stages that depend on it; when nothing changed the manifests are identical and
nothing downstream runs. A missing root is recorded as ``null`` (the stage reading it reports it).
Cost: every byte of every input is read once per ``dvc repro`` (demo: milliseconds; the full M3FD
set, about 4 GB: tens of seconds).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import section
from pipeline.fingerprint import tree_digest
from pipeline.results import write_json

FILES = ("datasets.json", "training.json")


#: File names DVC ignores (``.dvcignore``): ultralytics drops ``labels/*.cache`` next to the
#: labels of a dataset root on every training run; they must not change the manifest either.
IGNORED_SUFFIXES = (".cache",)


def root_digest(path: str | Path) -> str:
    """SHA-256 over the relative names and bytes of the files under ``path`` (as
    :func:`pipeline.fingerprint.tree_digest`), without the files DVC ignores."""
    return tree_digest(path, exclude=IGNORED_SUFFIXES)


def _digest(path: str | Path) -> dict:
    path = Path(path)
    return {"path": str(path), "digest": root_digest(path) if path.exists() else None}


def dataset_manifest(params: dict) -> dict:
    """``{name: {kind, path, digest}}`` of every configured ``datasets`` entry."""
    out = {}
    for name, config in sorted((section(params, "datasets") or {}).items()):
        config = dict(config or {})
        out[name] = {"kind": config.get("kind", name), **_digest(config["root"])} if config.get("root") else None
    return out


def training_manifest(params: dict) -> dict:
    """``{method: {set: {kind, path, digest}}}`` of the training sets given inline."""
    out = {}
    for method, config in sorted((section(params, "train.methods") or {}).items()):
        sets = (config or {}).get("sets")
        if isinstance(sets, dict):
            out[method] = {name: {"kind": spec.get("kind"), **_digest(spec["root"])}
                           for name, spec in sorted(sets.items()) if spec and spec.get("root")}
    return out


def write_manifests(params: dict, out: str | Path) -> dict:
    """Write the manifests into ``out``; returns ``{file: manifest}``."""
    out = Path(out)
    manifests = {"datasets.json": dataset_manifest(params), "training.json": training_manifest(params)}
    for name, manifest in manifests.items():
        write_json(out / name, {"profile": params.get("profile"), "inputs": manifest})
    return manifests
