"""Controls (pipeline/fusion/controls.py): the demo generator's evidence maps, the `oracle` takes each
region from the modality that carries its evidence, `shuffled` never gives a scene its own image."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets import Sample, load_dataset, read_pair
from pipeline.demo_data import DemoConfig, generate
from pipeline.demo_evidence import IR_ONLY, NONE, VIS_ONLY, evidence_map
from pipeline.errors import ConfigError, DataError
from pipeline.fusion.controls import derangement, evidence_path
from pipeline.fusion.registry import get_method
from pipeline.fusion.stage import fuse_samples
from pipeline.imageio import read_image, write_image

TINY = DemoConfig(seed=1, m3fd_pairs=16, msrs_train=6, msrs_test=4, height=96, width=128, night_fraction=0.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    generate(out, TINY, workers=1)
    return out


def test_evidence_map_codes_follow_the_contrast():
    """A bright square in IR only -> 1; a coloured square in VIS only -> 2; in both -> 0."""
    rng = np.random.default_rng(0)
    ir = np.clip(100 + rng.normal(0, 2, (64, 96)), 0, 255)
    vis = np.clip(100 + rng.normal(0, 2, (64, 96, 3)), 0, 255)
    inst = np.zeros((64, 96), np.int32)
    inst[10:20, 5:15], inst[10:20, 40:50], inst[10:20, 75:85] = 1, 2, 3
    ir[10:20, 5:15] += 60                                   # 1: infrared only
    vis[10:20, 40:50, 0] += 80                              # 2: visible only (colour)
    ir[10:20, 75:85] += 60
    vis[10:20, 75:85] += 60                                 # 3: both
    codes = evidence_map(ir.astype(np.uint8), vis.astype(np.uint8), np.zeros_like(inst), inst, False)
    assert (codes[inst == 1] == IR_ONLY).all() and (codes[inst == 2] == VIS_ONLY).all()
    assert (codes[inst == 3] == NONE).all() and (codes[inst == 0] == NONE).all()


def test_demo_writes_evidence_maps_and_documents_them(demo):
    for folder in (demo / "M3FD/evidence", demo / "MSRS/train/evidence", demo / "MSRS/test/evidence"):
        maps = sorted(folder.glob("*.png"))
        assert maps and all(set(np.unique(read_image(p))) <= {0, 1, 2} for p in maps)
    msrs = load_dataset("msrs", demo / "MSRS")
    assert all(evidence_path(s).is_file() for s in msrs.samples)
    codes = np.concatenate([read_image(evidence_path(s)).ravel() for s in msrs.samples])
    assert (codes == VIS_ONLY).any() and (codes == IR_ONLY).any()
    assert "evidence" in (demo / "README.txt").read_text()


def test_oracle_takes_each_region_from_the_right_modality(tmp_path):
    """Far from visible-only regions the oracle is the infrared image exactly (also on infrared-only
    regions); inside a visible-only region it is the visible image exactly; between, a blend."""
    rng = np.random.default_rng(2)
    ir = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    vis = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    evidence = np.zeros((48, 64), np.uint8)
    evidence[10:30, 10:30] = VIS_ONLY
    evidence[10:30, 40:60] = IR_ONLY
    for sub, image in (("ir", ir), ("vi", vis), ("evidence", evidence)):
        write_image(tmp_path / "set" / sub / "s1.png", image)
    sample = Sample("s1", "test", tmp_path / "set/ir/s1.png", tmp_path / "set/vi/s1.png")
    oracle = get_method("oracle", kind="oracle", grow=2, soften=1.5)
    assert oracle.kind == "control" and oracle.role == "positive"
    stats = fuse_samples(oracle, [sample], tmp_path / "out", progress=False)
    out = read_image(tmp_path / "out/s1.png", mode="rgb").astype(int)
    ir3 = np.repeat(ir[:, :, None], 3, axis=2).astype(int)
    assert stats["computed"] == 1
    assert (out[10:30, 10:30] == vis[10:30, 10:30]).all()                 # visible-only region: VIS
    far = np.ones((48, 64), bool)
    far[10 - 8:30 + 8, 10 - 8:30 + 8] = False                             # beyond grow + 4 sigma
    assert (out[far] == ir3[far]).all()                                   # everywhere else: IR
    assert (out[10:30, 40:60] == ir3[10:30, 40:60]).all()                 # IR-only region: IR
    edge = out[9 - 2 - 2, 20].astype(float)                               # soft boundary: a blend
    w = (edge - ir3[5, 20]) / np.where(vis[5, 20] != ir3[5, 20], vis[5, 20] - ir3[5, 20], 1)
    assert ((w > 0) & (w < 1)).any()


def test_oracle_outside_the_demo_data_is_an_error_naming_the_param(tmp_path):
    for sub in ("ir", "vi"):
        write_image(tmp_path / "set" / sub / "a.png", np.zeros((16, 16), np.uint8))
    sample = Sample("a", "test", tmp_path / "set/ir/a.png", tmp_path / "set/vi/a.png")
    with pytest.raises(ConfigError, match="evidence maps") as err:
        fuse_samples(get_method("oracle"), [sample], tmp_path / "out", progress=False)
    assert "fusion.methods.oracle" in str(err.value)


def test_shuffled_is_never_the_scenes_own_image_and_stays_in_its_split(demo, tmp_path):
    m3fd = load_dataset("m3fd", demo / "M3FD", split="meta")
    donors = derangement(m3fd.samples, seed=0)
    by_name = {s.name: s for s in m3fd.samples}
    assert set(donors) == set(by_name)
    for name, donor in donors.items():
        assert donor.name != name and donor.split == by_name[name].split
    for split in {s.split for s in m3fd.samples}:        # every donor used once: a permutation
        names = [n for n, s in by_name.items() if s.split == split]
        assert sorted(donors[n].name for n in names) == sorted(names)
    assert {n: d.name for n, d in derangement(m3fd.samples, 0).items()} == {n: d.name for n, d in donors.items()}
    # through the stage, one batch at a time with the dataset as population (as flows/fuse.py does)
    method = get_method("shuffled", kind="shuffled")
    assert method.role == "negative"
    batch = m3fd.samples[:3]
    fuse_samples(method, batch, tmp_path / "out", progress=False, population=m3fd.samples)
    for sample in batch:
        out = read_image(tmp_path / f"out/{sample.name}.png")
        own_ir, _ = read_pair(sample)
        assert (out == read_image(donors[sample.name].ir)).all()
        assert not (out == own_ir).all()


def test_shuffled_needs_two_scenes_per_split(tmp_path):
    one = [Sample("a", "test", tmp_path / "a.png", tmp_path / "a.png")]
    with pytest.raises(DataError, match="two scenes"):
        derangement(one)
    with pytest.raises(ConfigError, match="source"):
        get_method("shuffled", source="thermal")
