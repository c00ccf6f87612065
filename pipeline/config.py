"""``params.yaml``: loading and profile resolution.

Layout rule: ``profile: demo|shared|full`` at the top selects a profile (``demo``: generated
data, tiny settings; ``shared``: the real pairs and published weights in ``../shared`` with small
budgets; ``full``: your downloads, published settings). Any mapping in the file may hold a
``profiles:`` key with per-profile overrides; :func:`resolve` merges ``profiles[<profile>]`` into
the mapping (recursively) and drops the ``profiles`` key. So every section keeps its own demo and
full values next to each other, and a DVC stage that depends on ``detection`` re-runs only when
something under ``detection`` (or ``profile``) changes.

Example::

    profile: demo
    detection:
      imgsz: 640
      profiles:
        demo: {imgsz: 160, epochs: 20}
        full: {epochs: 36}

resolves to ``{"profile": "demo", "detection": {"imgsz": 160, "epochs": 20}}``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from pipeline.errors import ConfigError

PROFILES = ("demo", "shared", "full")

#: The top-level keys of ``params.yaml``: any other one (a typo such as ``detecton:``, a section
#: no stage reads) is a :class:`ConfigError` naming it. A new section is added here and in
#: ``params.yaml`` (``tests/test_profiles.py`` checks that both list the same keys).
SECTIONS = ("profile", "seed", "device", "orchestration", "demo_data", "datasets", "train", "fusion", "prior",
            "diffif", "metrics", "report", "segmentation", "detection", "perturb", "robustness", "frozen")


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(node: Any, profile: str) -> Any:
    """Apply ``profiles[profile]`` overrides everywhere in ``node`` (see module docstring)."""
    if isinstance(node, dict):
        overrides = node.get("profiles")
        base = {k: resolve(v, profile) for k, v in node.items() if k != "profiles"}
        if overrides is not None:
            if not isinstance(overrides, dict):
                raise ConfigError("'profiles' must map profile names to overrides")
            unknown = set(overrides) - set(PROFILES)
            if unknown:
                raise ConfigError(f"unknown profile(s) {sorted(unknown)}; expected {list(PROFILES)}")
            base = deep_merge(base, resolve(overrides.get(profile) or {}, profile))
        return base
    if isinstance(node, list):
        return [resolve(v, profile) for v in node]
    return node


def safe_yaml(source) -> Any:
    """``yaml.safe_load(source)`` through libyaml's C parser when PyYAML was built with it
    (``CSafeLoader``: the same objects, several times faster; every stage process reads
    ``params.yaml`` a few times), else the pure-Python ``SafeLoader``."""
    return yaml.load(source, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_raw(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("params file not found", path)
    with open(path, encoding="utf-8") as handle:
        data = safe_yaml(handle) or {}
    if not isinstance(data, dict):
        raise ConfigError("params file must hold a mapping", path)
    return data


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> dict:
    """Load ``params.yaml`` and resolve the active profile.

    The profile is, in order: the ``profile`` argument, ``$FUSEBENCH_PROFILE``, the file's
    ``profile`` key, ``"demo"``.
    """
    raw = load_raw(path)
    unknown = sorted(set(raw) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"unknown top-level section(s) {unknown}; known: {list(SECTIONS)}", path)
    chosen = profile or os.environ.get("FUSEBENCH_PROFILE") or raw.get("profile") or "demo"
    if chosen not in PROFILES:
        raise ConfigError(f"unknown profile {chosen!r}; expected one of {list(PROFILES)}", path)
    params = resolve(raw, chosen)
    params["profile"] = chosen
    return params


def section(params: dict, dotted: str, default: Any = None) -> Any:
    """``section(params, "mlfuse.train")`` → nested value, or ``default`` if any key is absent."""
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def checked(mapping: Any, where: str, keys: Iterable[str], optional: Iterable[str] = ()) -> dict:
    """``mapping`` (a params section, ``where`` its dotted name) as a dict holding every one of
    ``keys`` and maybe some of ``optional``: an unknown key (a typo such as ``conventon``) or a
    missing one is a :class:`ConfigError` naming the key and the section. ``params.yaml`` is the
    one place values come from, so the code holds no defaults that could silently differ."""
    keys, optional = tuple(keys), tuple(optional)
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(mapping).__name__}", "params.yaml")
    unknown = sorted(set(mapping) - set(keys) - set(optional))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted({*keys, *optional})}", "params.yaml")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}", "params.yaml")
    return dict(mapping)
