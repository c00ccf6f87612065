"""The ``perturb`` stage: every selected family and level of the test split, written once.

Layout (``perturb.out`` = ``data/perturbed``)::

    <out>/index.json                                   settings, families, levels, images per dataset
    <out>/<dataset>/<family>/<level>/<ir|vis>/<name>.png   only the modalities the level changes

Level 0 (clean) is not written: it is the source pair. A reader takes a perturbed modality from
this folder and the other one from the dataset (:func:`level_pair_paths`). Labels are not copied:
they stay those of the visible image (geometric kinds change the infrared image only).

Settings (``perturb``): ``out``, ``seed``, ``datasets`` (names under ``datasets``), ``split``
(default ``test``), ``max_images`` (first N names of the split in sorted order; null = all; the demo
keeps the robustness cost low), ``families`` (:mod:`pipeline.perturb.families`) and ``run``
(``{family: [levels]}`` to write; null = every family and level).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from pipeline.config import checked, section
from pipeline.datasets import PairDataset, Sample, load_configured, read_pair
from pipeline.errors import ConfigError
from pipeline.imageio import write_image
from pipeline.perturb.families import Family, apply_level, describe, parse_families, selection
from pipeline.results import read_json, write_json

KEYS = ("out", "seed", "datasets", "split", "max_images", "families", "run")


def perturb_settings(params: Mapping) -> dict:
    settings = checked(section(dict(params), "perturb"), "perturb", KEYS)
    if settings["max_images"] is not None and (not isinstance(settings["max_images"], int)
                                               or settings["max_images"] < 1):
        raise ConfigError(f"perturb.max_images must be null or a positive integer, got {settings['max_images']!r}")
    return settings


def has_labels(sample: Sample) -> bool:
    return sample.boxes is not None or sample.seg_label is not None


def split_samples(dataset: PairDataset, split: str, max_images: int | None = None) -> list[Sample]:
    """The labelled samples of ``split`` (first ``max_images`` by name); a split that is empty or
    has no labels is an error naming ``perturb.split``."""
    samples = sorted(dataset.split(split), key=lambda s: s.name)
    if not samples:
        raise ConfigError(f"dataset {dataset.name!r} has no images in split {split!r} (parameter "
                          f"perturb.split; splits: {', '.join(sorted(dataset.splits))})", dataset.root)
    unlabelled = [s.name for s in samples if not has_labels(s)]
    if unlabelled:
        raise ConfigError(f"split {split!r} of dataset {dataset.name!r} has {len(unlabelled)} image(s) without "
                          f"labels (e.g. {unlabelled[0]!r}): perturbed images could not be scored "
                          "(parameter perturb.split)", dataset.root)
    return samples[:max_images] if max_images else samples


def level_dir(out: str | Path, dataset: str, family: str, level: int) -> Path:
    return Path(out) / dataset / family / str(int(level))


def write_level(family: Family, level: int, dataset: PairDataset, samples: list[Sample], out: Path,
                seed: int) -> dict:
    folder = level_dir(out, dataset.name, family.name, level)
    changed = family.modalities(level)
    for sample in samples:
        ir, vis = read_pair(sample)
        images = dict(zip(("ir", "vis"), apply_level(family, level, ir, vis, seed=seed, dataset=dataset.name,
                                                      name=sample.name)))
        for modality in changed:
            write_image(folder / modality / f"{sample.name}.png", images[modality])
    return {"label": family.label(level), "modalities": list(changed), "images": len(samples)}


def run_perturb(params: Mapping, out: str | Path | None = None, log=lambda _: None) -> dict:
    """Write every selected level of every configured dataset; returns (and writes) the index."""
    settings = perturb_settings(params)
    families = parse_families(settings)
    levels = selection(families, settings["run"])
    out = Path(out or settings["out"])
    index = {"settings": {k: settings[k] for k in ("seed", "split", "max_images", "datasets")},
             "families": describe(families, levels), "datasets": {}, "levels": {}}
    for name in settings["datasets"]:
        dataset = load_configured(dict(params), name)
        samples = split_samples(dataset, settings["split"], settings["max_images"])
        index["datasets"][name] = [s.name for s in samples]
        for fam, chosen in levels.items():
            for level in chosen:
                if level == 0:
                    continue
                record = write_level(families[fam], level, dataset, samples, out, int(settings["seed"]))
                index["levels"].setdefault(name, {}).setdefault(fam, {})[str(level)] = record
                log(f"perturb {name}/{fam}/{level}: {record['label']} ({len(samples)} images)")
    write_json(out / "index.json", index)
    return index


def read_index(out: str | Path) -> dict:
    path = Path(out) / "index.json"
    if not path.is_file():
        raise ConfigError("no perturbed data (run the perturb stage first)", path)
    return read_json(path)


def level_pair_paths(out: str | Path, index: dict, sample: Sample, dataset: str, family: str,
                     level: int) -> tuple[Path, Path]:
    """``(ir, vis)`` files of one sample at one level: perturbed modalities from ``out``, the
    others (and level 0) from the dataset."""
    paths = {"ir": Path(sample.ir), "vis": Path(sample.vis)}
    if level:
        record = index["levels"][dataset][family][str(level)]
        for modality in record["modalities"]:
            paths[modality] = level_dir(out, dataset, family, level) / modality / f"{sample.name}.png"
    return paths["ir"], paths["vis"]
