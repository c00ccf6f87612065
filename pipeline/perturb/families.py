"""Named perturbation families with severity levels (``params.yaml`` ``perturb``), applied to pairs.

A *family* is a list of levels; level ``k`` (1-based) is a list of *steps*, each a kind of
:mod:`pipeline.perturb.kinds` applied to one modality::

    perturb:
      families:
        misregistration:
          levels:
            - [{kind: translate, dx: 2, dy: 1}]
            - [{kind: translate, dx: 4, dy: 2}, {kind: affine, rotate: 1.0, scale: 1.01}]
            - ...
        ir_faults:
          image: ir                   # default modality of the family's steps ("on" is a YAML boolean)
          levels: [...]

Level 0 of every family is the clean pair (the identity). Geometric kinds (translate, affine,
elastic) may only act on the infrared image: the labels stay in the visible frame, so a geometric
change of the visible image would move the image away from its labels.

Determinism: step ``j`` of level ``k`` of family ``f`` on image ``name`` of dataset ``d`` draws from
``numpy.random.default_rng([seed, crc32(d), crc32(f), k, crc32(name), j])``: the same seed gives the
same pixels whatever the order or the process the images are perturbed in.
"""
from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.perturb.kinds import GEOMETRIC, KINDS

MODALITIES = ("ir", "vis")


@dataclass(frozen=True)
class Step:
    kind: str
    on: str
    params: tuple[tuple[str, object], ...]
    where: str                      # the params.yaml path of this step, for error messages

    def label(self) -> str:
        values = " ".join(f"{k}={_short(v)}" for k, v in self.params)
        return f"{self.on} {self.kind}" + (f" {values}" if values else "")


@dataclass(frozen=True)
class Family:
    name: str
    levels: tuple[tuple[Step, ...], ...]     # levels[k - 1] = the steps of level k

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def steps(self, level: int) -> tuple[Step, ...]:
        check_level(self, level)
        return () if level == 0 else self.levels[level - 1]

    def modalities(self, level: int) -> tuple[str, ...]:
        """The modalities a level changes (``()`` for level 0)."""
        return tuple(m for m in MODALITIES if any(s.on == m for s in self.steps(level)))

    def label(self, level: int) -> str:
        return "clean" if level == 0 else "; ".join(s.label() for s in self.steps(level))


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _kind_params(kind: str) -> set[str]:
    return set(list(inspect.signature(KINDS[kind]).parameters)[2:])


def parse_step(raw: Mapping, where: str, default_on: str | None) -> Step:
    if not isinstance(raw, Mapping) or "kind" not in raw:
        raise ConfigError(f"{where} must be a mapping with a 'kind' ({', '.join(KINDS)}), got {raw!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: unknown perturbation kind {kind!r}; known: {', '.join(KINDS)}")
    on = raw.get("image", default_on or ("ir" if kind in GEOMETRIC else None))
    if on not in MODALITIES:
        raise ConfigError(f"{where}.image must be 'ir' or 'vis' (the image the step changes), got {on!r}")
    if kind in GEOMETRIC and on != "ir":
        raise ConfigError(f"{where}: geometric kind {kind!r} may only change the infrared image (image: ir); "
                          "labels stay in the visible frame")
    params = {k: v for k, v in raw.items() if k not in ("kind", "image")}
    unknown = sorted(set(params) - _kind_params(kind))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {unknown} of kind {kind!r}; known: "
                          f"{sorted(_kind_params(kind))}")
    return Step(kind, on, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())),
                where)


def parse_families(config: Mapping | None) -> dict[str, Family]:
    """``perturb.families`` -> ``{name: Family}``; every family needs >= 1 level of >= 1 step."""
    families = (config or {}).get("families") or {}
    if not isinstance(families, Mapping) or not families:
        raise ConfigError("perturb.families must name at least one family (see params.yaml)")
    out = {}
    for name, spec in families.items():
        where = f"perturb.families.{name}"
        levels = (spec or {}).get("levels") if isinstance(spec, Mapping) else None
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{where}.levels must be a non-empty list of levels (lists of steps)")
        parsed = []
        for k, steps in enumerate(levels, 1):
            steps = [steps] if isinstance(steps, Mapping) else steps
            if not isinstance(steps, list) or not steps:
                raise ConfigError(f"{where}.levels[{k}] must be a non-empty list of steps")
            parsed.append(tuple(parse_step(s, f"{where}.levels[{k}][{j}]", spec.get("image"))
                                for j, s in enumerate(steps)))
        out[str(name)] = Family(str(name), tuple(parsed))
    return out


def check_level(family: Family, level: int) -> None:
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool) or not 0 <= level <= family.n_levels:
        raise ConfigError(f"level {level!r} of family {family.name!r} does not exist: levels are 0 (clean) "
                          f"to {family.n_levels} (parameter level)")


def get_family(families: Mapping[str, Family], name: str, where: str = "family") -> Family:
    if name not in families:
        raise ConfigError(f"unknown perturbation family {name!r} (parameter {where}); configured: "
                          f"{', '.join(families)}")
    return families[name]


def selection(families: Mapping[str, Family], chosen: Mapping | None,
              where: str = "perturb.run") -> dict[str, list[int]]:
    """Levels to run per family: ``chosen`` = ``{family: [levels] | null}`` (null: every level) or
    ``None`` (every family, every level). Level 0 is always included (the clean reference)."""
    if chosen is None:
        return {name: list(range(f.n_levels + 1)) for name, f in families.items()}
    out = {}
    for name, levels in chosen.items():
        family = get_family(families, name, where)
        levels = list(range(1, family.n_levels + 1)) if levels is None else list(levels)
        for level in levels:
            check_level(family, level)
        out[name] = sorted({0, *levels})
    return out


def step_rng(seed: int, dataset: str, family: str, level: int, name: str, step: int) -> np.random.Generator:
    crc = lambda text: zlib.crc32(str(text).encode())  # noqa: E731
    return np.random.default_rng([int(seed), crc(dataset), crc(family), int(level), crc(name), int(step)])


def apply_level(family: Family, level: int, ir: np.ndarray, vis: np.ndarray, *, seed: int = 0,
                dataset: str = "", name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The pair after level ``level`` of ``family`` (level 0: unchanged copies)."""
    images = {"ir": np.asarray(ir), "vis": np.asarray(vis)}
    if images["ir"].shape[:2] != images["vis"].shape[:2]:
        raise ConfigError(f"pair {name!r}: infrared {images['ir'].shape[:2]} and visible "
                          f"{images['vis'].shape[:2]} differ in size")
    images = {k: v.copy() for k, v in images.items()}
    for j, step in enumerate(family.steps(level)):
        rng = step_rng(seed, dataset, family.name, level, name, j)
        try:
            images[step.on] = KINDS[step.kind](images[step.on], rng, **dict(step.params))
        except ConfigError as err:
            raise ConfigError(f"{step.where}: {err}") from err
    return images["ir"], images["vis"]


def describe(families: Mapping[str, Family], levels: Mapping[str, Sequence[int]] | None = None) -> dict:
    """``{family: {level: label}}`` for records and plots."""
    levels = levels or {n: range(f.n_levels + 1) for n, f in families.items()}
    return {n: {int(k): families[n].label(int(k)) for k in ks} for n, ks in levels.items()}
