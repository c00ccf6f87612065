"""Switch ``params.yaml`` to a profile so that DVC has a stage for each of its fusion methods.

DVC expands ``foreach: ${fusion.methods}`` in ``dvc.yaml`` from the *raw* ``params.yaml``, and its
params dependency ``fusion.methods.<name>`` is a raw key too: a method that a profile adds under
``fusion.profiles.<profile>.methods`` (the published networks of ``shared`` and ``full``) would get
no ``fuse@`` / ``metrics@`` / ``detect@`` / ``segment@`` stage, and ``profile`` alone cannot change
that (DVC has no conditional stages). So :func:`switch` (``python -m pipeline profile NAME``)

* sets the ``profile:`` line, and
* writes a marked block at the end of ``fusion.methods`` with a copy of every method the profile
  adds (its resolved options, one flow-style line each), which DVC expands into stages and whose
  options it tracks; switching back to ``demo`` removes the block.

Only that line and that block change: the file keeps its comments and layout (``dvc exp run -S``
re-dumps the whole file). :func:`check_file` (run by every stage's entry point,
:func:`flows._common.main_entry`) fails with
the command to run when the block does not match the active profile, e.g. after editing a
profile's method options or the ``profile:`` line by hand.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipeline.config import safe_yaml
from pipeline.errors import ConfigError

BEGIN = "    # >>> DVC stages of the profile's extra fusion methods: written by `python -m pipeline profile NAME`"
END = "    # <<< end of the profile's extra fusion methods"
_PROFILE_LINE = re.compile(r"^profile:[ \t]*([^\s#]+)(.*)$", re.MULTILINE)


def split_block(text: str) -> tuple[str, str]:
    """``(text without the managed block, the block's YAML lines)``."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    if not starts:
        return text, ""
    start = starts[0]
    stop = next((i for i in range(start, len(lines)) if lines[i].rstrip("\n") == END), None)
    if stop is None:
        raise ConfigError("the profile block of fusion.methods has no end marker "
                          f"({END.strip()!r}); run `python -m pipeline profile NAME`")
    return "".join(lines[:start] + lines[stop + 1:]), "".join(lines[start + 1:stop])


def extra_methods(base_raw: dict, profile: str) -> dict:
    """Methods (name -> resolved options) that ``profile`` adds to the raw ``fusion.methods``."""
    from pipeline.config import resolve

    base = set(((base_raw.get("fusion") or {}).get("methods") or {}))
    resolved = (resolve(base_raw, profile).get("fusion") or {}).get("methods") or {}
    return {name: options or {} for name, options in resolved.items() if name not in base}


def _block(methods: dict) -> str:
    if not methods:
        return ""
    rows = [f"    {name}: {yaml.safe_dump(options, default_flow_style=True, width=10**6).strip()}\n"
            for name, options in methods.items()]
    return BEGIN + "\n" + "".join(rows) + END + "\n"


def _methods_end(lines: list[str]) -> int:
    """Index after the last line of the ``fusion:`` → ``methods:`` mapping in ``lines``."""
    fusion = next((i for i, line in enumerate(lines) if line.startswith("fusion:")), None)
    if fusion is None:
        raise ConfigError("params.yaml has no top-level 'fusion:' section")
    methods = next((i for i in range(fusion + 1, len(lines)) if lines[i].startswith("  methods:")), None)
    if methods is None or lines[methods].split("#")[0].strip() != "methods:":
        raise ConfigError("params.yaml: fusion.methods must be a block mapping ('  methods:' on its own line)")
    end = methods + 1
    for i in range(methods + 1, len(lines)):
        body = lines[i].strip()
        if body and not body.startswith("#") and not lines[i].startswith("    "):
            break
        if body and not body.startswith("#"):
            end = i + 1
    return end


def switch(path: str | Path, profile: str) -> dict:
    """Set ``profile`` in the params file and rewrite the block of its extra fusion methods;
    returns those methods."""
    from pipeline.config import PROFILES

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {list(PROFILES)}", path)
    path = Path(path)
    text, _ = split_block(path.read_text(encoding="utf-8"))
    base_raw = safe_yaml(text) or {}
    methods = extra_methods(base_raw, profile)
    if _PROFILE_LINE.search(text):
        text = _PROFILE_LINE.sub(lambda m: f"profile: {profile}{m.group(2)}", text, count=1)
    else:
        text = f"profile: {profile}\n" + text
    lines = text.splitlines(keepends=True)
    end = _methods_end(lines)
    text = "".join(lines[:end]) + _block(methods) + "".join(lines[end:])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return methods


def check(text: str, profile: str, where: str | Path = "params.yaml") -> None:
    """The managed block must hold exactly the active profile's extra methods (see module docstring)."""
    stripped, block = split_block(text)
    base_raw = safe_yaml(stripped) or {}
    written = (safe_yaml(block) or {}) if block else {}
    expected = extra_methods(base_raw, profile)
    if written != expected:
        missing = sorted(set(expected) - set(written))
        stale = sorted(n for n in written if n not in expected or written[n] != expected[n])
        detail = "; ".join(part for part in (f"no DVC stage for {', '.join(missing)}" if missing else "",
                                             f"out of date or not in this profile: {', '.join(stale)}"
                                             if stale else "") if part)
        raise ConfigError(f"fusion.methods does not match profile {profile!r} ({detail}); "
                          f"run `python -m pipeline profile {profile}`", where)


def check_file(path: str | Path = "params.yaml") -> None:
    """:func:`check` of a params file for its active profile (as :func:`pipeline.config.load_params`
    chooses it); a missing file is left to the params loader."""
    import os

    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    raw = safe_yaml(split_block(text)[0]) or {}
    check(text, os.environ.get("FUSEBENCH_PROFILE") or raw.get("profile") or "demo", path)
