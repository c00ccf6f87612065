"""Content fingerprints (pipeline.fingerprint) and the repository import graph (pipeline.codegraph)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline import codegraph
from pipeline import fingerprint as fp


def _write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    path = _write(tmp_path / "a.bin", b"x" * 3_000_000)
    assert fp.file_digest(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_same_name_same_size_same_mtime_new_bytes_changes_the_digest(tmp_path):
    """The defect of issue #18: names + sizes (+ mtimes) kept a replaced file's old key. The memo
    is keyed by the inode too, so a file replaced by rename (how images are written) is re-read."""
    path = _write(tmp_path / "img.png", b"AAAA", mtime_ns=10**18)
    first = fp.tree_digest(tmp_path)
    replacement = _write(tmp_path / "tmp.png", b"BBBB", mtime_ns=10**18)
    os.replace(replacement, path)
    assert path.stat().st_size == 4 and path.stat().st_mtime_ns == 10**18
    assert fp.tree_digest(tmp_path) != first


def test_tree_digest_names_order_and_location(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    for root, order in ((a, ("x.txt", "sub/y.txt")), (b, ("sub/y.txt", "x.txt"))):
        for name in order:  # different creation order, same content
            _write(root / name, name.encode())
    assert fp.tree_digest(a) == fp.tree_digest(b)            # location and listing order do not count
    _write(b / "sub" / "z.txt", b"new")
    assert fp.tree_digest(a) != fp.tree_digest(b)            # an added file counts
    (b / "sub" / "z.txt").unlink()
    os.replace(b / "x.txt", b / "w.txt")
    assert fp.tree_digest(a) != fp.tree_digest(b)            # a rename counts


def test_tree_digest_filters_and_missing_paths(tmp_path):
    _write(tmp_path / "m.py", b"print(1)")
    base = fp.tree_digest(tmp_path, suffixes=(".py",))
    _write(tmp_path / "notes.txt", b"ignored")
    _write(tmp_path / "__pycache__" / "m.cpython.pyc", b"ignored")
    _write(tmp_path / ".x.partial-abc" / "m.py", b"ignored")
    assert fp.tree_digest(tmp_path, suffixes=(".py",)) == base
    assert fp.tree_digest(tmp_path) != base                 # without suffixes the .txt counts
    assert fp.tree_digest(tmp_path, suffixes=(".py",), hidden=True) != base
    with pytest.raises(FileNotFoundError, match="nope"):
        fp.tree_digest([tmp_path / "nope"])


def test_params_digest_is_canonical_and_strict():
    assert fp.params_digest({"a": 1, "b": [1, 2]}) == fp.params_digest({"b": (1, 2), "a": 1})
    assert fp.params_digest({"a": 1}) != fp.params_digest({"a": 1.5})
    assert fp.params_digest({"x": np.float32(0.5), "p": Path("a/b")}) == fp.params_digest({"x": 0.5, "p": "a/b"})
    assert fp.canonical_json({"b": 1, "a": {"d": None, "c": True}}) == '{"a":{"c":true,"d":null},"b":1}'
    assert fp.params_digest({"v": float("nan")}) != fp.params_digest({"v": None})
    with pytest.raises(TypeError, match="function"):
        fp.params_digest({"f": lambda: 0})


def test_content_key_combines_named_parts():
    key = fp.content_key(params={"a": 1}, inputs="00ff")
    assert len(key) == fp.KEY_LENGTH and key == fp.content_key(inputs="00ff", params={"a": 1})
    assert key != fp.content_key(params={"a": 1}, inputs="00fe")
    assert key != fp.content_key(params={"a": 1}, data="00ff")  # the part names count
    assert len(fp.content_key(length=40, a=1)) == 40
    with pytest.raises(ValueError):
        fp.content_key()


def test_samples_digest_reads_every_file_of_a_sample(tmp_path):
    from pipeline.datasets import Sample

    ir, vis, label = (_write(tmp_path / n, n.encode()) for n in ("ir.png", "vi.png", "lab.png"))
    sample = Sample("s0", "train", ir, vis, seg_label=label)
    before = fp.samples_digest([sample])
    assert before != fp.samples_digest([Sample("s0", "test", ir, vis, seg_label=label)])  # the split counts
    _write(tmp_path / "new.png", b"other")
    os.replace(tmp_path / "new.png", label)
    assert fp.samples_digest([sample]) != before


def test_import_graph_follows_lazy_relative_and_parent_imports(tmp_path):
    root = tmp_path
    _write(root / "pipeline" / "__init__.py", b"from pipeline import hermetic as _h\n")
    _write(root / "pipeline" / "hermetic.py", b"import os\n")
    _write(root / "pipeline" / "sub" / "__init__.py", b"")
    _write(root / "pipeline" / "sub" / "a.py", b"def f():\n    from . import b\n    from ..c import g\n")
    _write(root / "pipeline" / "sub" / "b.py", b"import numpy\n")
    _write(root / "pipeline" / "c.py", b"import importlib\nimportlib.import_module('pipeline.d')\n")
    _write(root / "pipeline" / "d.py", b"")
    _write(root / "pipeline" / "unused.py", b"")
    closure = codegraph.module_closure(["pipeline.sub.a"], root)
    assert closure == ["pipeline", "pipeline.c", "pipeline.d", "pipeline.hermetic", "pipeline.sub",
                       "pipeline.sub.a", "pipeline.sub.b"]
    with pytest.raises(ModuleNotFoundError, match="pipeline.nothing"):
        codegraph.module_closure(["pipeline.nothing"], root)


def test_code_digest_changes_with_an_imported_module_only():
    before = fp.code_digest("flows.detect")
    assert before == fp.code_digest(["flows.detect"])
    files = {p.name for p in codegraph.closure_files(["flows.detect"])}
    assert {"imageio.py", "layouts.py", "yolo.py", "stage.py"} <= files   # read through imports
    assert "mlfuse_net.py" not in files                                    # not imported by detection
    assert fp.code_digest("flows.detect", transitive=False) != before
