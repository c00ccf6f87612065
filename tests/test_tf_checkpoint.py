"""The TF1 checkpoint reader (pipeline.fusion.tf_checkpoint): a bundle written here from the format
description, corrupt files, and the authors' real checkpoints in ../shared/weights."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.fusion.tf_checkpoint import TFCheckpoint, crc32c, mask_crc, read_checkpoint


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB block; keys prefix-compressed against the previous key, one restart point."""
    out, previous = bytearray(), b""
    for key, value in entries:
        shared = 0
        while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
            shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    return bytes(out) + struct.pack("<II", 0, 1)


def write_bundle(prefix, tensors: dict[str, np.ndarray]) -> None:
    """A single-shard TF "V2" tensor bundle, written independently of the reader."""
    codes = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}
    data, entries = bytearray(), []
    for name in sorted(tensors):
        arr = np.array(tensors[name], order="C")  # (ascontiguousarray would make a scalar 1-d)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        shape = b"".join(_field(2, 2, _varint(len(d)) + d) for d in (_field(1, 0, _varint(s)) for s in arr.shape))
        proto = (_field(1, 0, _varint(codes[arr.dtype])) + _field(2, 2, _varint(len(shape)) + shape)
                 + _field(4, 0, _varint(len(data))) + _field(5, 0, _varint(len(raw)))
                 + _field(6, 5, struct.pack("<I", mask_crc(crc32c(raw)))))
        entries.append((name.encode(), proto))
        data += raw
    header = _field(1, 0, _varint(1)) + _field(3, 2, _varint(2) + _field(1, 0, _varint(1)))
    table = bytearray()

    def add(block: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(block))
        table.extend(block + b"\0" + struct.pack("<I", mask_crc(crc32c(block + b"\0"))))
        return handle

    data_handle = add(_block([(b"", header)] + entries))
    meta_handle = add(_block([]))
    index_handle = add(_block([(entries[-1][0], data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    (prefix.parent / (prefix.name + ".index")).write_bytes(bytes(table) + footer)
    (prefix.parent / (prefix.name + ".data-00000-of-00001")).write_bytes(bytes(data))


@pytest.fixture
def bundle(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"net/layer1/w1": rng.standard_normal((5, 5, 3, 16)).astype(np.float32),
               "net/layer1/b1": rng.standard_normal(16).astype(np.float32),
               "net/layer1_vi/b1_vi": rng.standard_normal(16).astype(np.float64),
               "global_step": np.array(1234567890123, dtype=np.int64),
               "net/counts": np.arange(7, dtype=np.int32)}
    prefix = tmp_path / "model.ckpt-7"
    write_bundle(prefix, tensors)
    return prefix, tensors


def test_crc32c_check_values():
    assert crc32c(b"123456789") == 0xE3069283          # RFC 3720 / iSCSI check value
    assert crc32c(bytes(32)) == 0x8A9136AA             # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43          # RFC 3720 B.4: 32 bytes of ones
    assert crc32c(bytes(range(32))) == 0x46DD794E      # RFC 3720 B.4: incrementing
    assert crc32c(b"") == 0
    rng = np.random.default_rng(1)
    blob = rng.integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    # the lane-combined CRC equals a byte-at-a-time CRC of the same data
    crc = 0xFFFFFFFF
    for byte in blob[:5000]:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    assert crc32c(blob[:5000]) == crc ^ 0xFFFFFFFF


def test_reads_synthetic_bundle(bundle):
    prefix, tensors = bundle
    for path in (prefix, prefix.with_name(prefix.name + ".index")):
        ckpt = TFCheckpoint(path)
        assert ckpt.names() == sorted(tensors)
        for name, arr in tensors.items():
            assert ckpt.shape(name) == arr.shape
            assert ckpt.dtype(name) == str(arr.dtype)
            np.testing.assert_array_equal(ckpt.read(name), arr)
            assert ckpt.read(name).dtype == arr.dtype
    assert set(read_checkpoint(prefix.parent)) == set(tensors)   # a folder with one bundle


def test_corrupt_files_name_the_file(bundle):
    prefix, tensors = bundle
    data = prefix.with_name(prefix.name + ".data-00000-of-00001")
    index = prefix.with_name(prefix.name + ".index")
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0x01                                        # inside net/counts or the first tensor
    data.write_bytes(bytes(raw))
    ckpt = TFCheckpoint(prefix)
    bad = [n for n in tensors if _fails(ckpt, n)]
    assert len(bad) == 1
    with pytest.raises(DataError, match="CRC-32C") as err:
        ckpt.read(bad[0])
    assert str(data) in str(err.value)
    np.testing.assert_array_equal(ckpt.read(bad[0], verify=False).shape, tensors[bad[0]].shape)

    data.write_bytes(bytes(raw[:-8]))                     # truncated data file
    with pytest.raises(DataError, match="truncated"):
        TFCheckpoint(prefix).read(sorted(tensors)[-1])
    data.unlink()
    with pytest.raises(DataError, match="data file not found"):
        TFCheckpoint(prefix).read("global_step")

    table = bytearray(index.read_bytes())
    table[3] ^= 0x40                                       # a bit of the first block
    index.write_bytes(bytes(table))
    with pytest.raises(DataError, match="CRC-32C") as err:
        TFCheckpoint(prefix)
    assert str(index) in str(err.value)
    index.write_bytes(bytes(table[:-1]) + b"\0")           # bad magic
    with pytest.raises(DataError, match="magic"):
        TFCheckpoint(prefix)
    with pytest.raises(DataError, match="no .index"):
        TFCheckpoint(prefix.with_name("other"))


def _fails(ckpt, name) -> bool:
    try:
        ckpt.read(name)
    except DataError:
        return True
    return False


def test_unknown_variable(bundle):
    with pytest.raises(DataError, match="no variable 'net/missing'"):
        TFCheckpoint(bundle[0]).read("net/missing")


# (folder, variable count, floats in the generator: spec/methods.md §7, §8, §11 and Appendix B)
REAL = [("u2fusion", 20, "Generator", 659_217), ("pmgi/IR_VI", 74, "fusion_model/layer", 41_633 + 12 * 64),
        ("pmgi/Medical", 74, "fusion_model/layer", 41_633 + 12 * 64), ("mff_gan/Lytro", 48, "fusion_model", None)]


@pytest.mark.shared
@pytest.mark.parametrize("folder,count,prefix,floats", REAL)
def test_reads_authors_checkpoints(shared, folder, count, prefix, floats):
    ckpt = TFCheckpoint(shared / "weights" / folder)
    assert len(ckpt.names()) == count
    arrays = read_checkpoint(shared / "weights" / folder)          # every tensor's CRC-32C checked
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays.values())
    total = sum(a.size for n, a in arrays.items() if n.startswith(prefix))
    if floats is not None:
        assert total == floats
    data = ckpt.data_path(0)
    assert data.stat().st_size == sum(a.nbytes for a in arrays.values())
