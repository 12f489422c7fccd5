"""Read TensorFlow "tensor bundle" checkpoints without TensorFlow.

This module owns the on-disk format that ``tf.train.Saver`` (V2) writes:

* ``<prefix>.index`` -- a LevelDB-style SSTable.  Its data blocks hold
  prefix-compressed keys with restart points; an index block points at the data
  blocks; a 48-byte footer holds the two block handles (varints) and the table
  magic number.  Every value is a serialized ``BundleEntryProto`` (dtype, shape,
  shard, offset, size, crc32c), except the entry under the empty key, which is the
  ``BundleHeaderProto`` (number of shards, endianness).
* ``<prefix>.data-SSSSS-of-NNNNN`` -- the raw tensor bytes, one shard per file.

Protobuf messages are decoded by hand (a few dozen lines) so that the project
needs neither ``protobuf`` nor TensorFlow.  Checksums (block CRCs in the index,
per-tensor CRC32C of the data) are verified, with a vectorised CRC32C so that a
10 MB checkpoint is checked in well under a second.

Public API: :func:`read_checkpoint`, :class:`CheckpointError` (and :func:`crc32c`).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.catalog.tf_checkpoint is a module of the train package: import it, or use python -m")

import functools
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CheckpointError", "crc32c", "read_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48  # 2 block handles padded to 40 bytes + 8-byte magic
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto -> numpy dtype (little-endian form).
_DTYPES: dict[int, tuple[str, str]] = {
    1: ("DT_FLOAT", "<f4"),
    2: ("DT_DOUBLE", "<f8"),
    3: ("DT_INT32", "<i4"),
    4: ("DT_UINT8", "u1"),
    5: ("DT_INT16", "<i2"),
    6: ("DT_INT8", "i1"),
    8: ("DT_COMPLEX64", "<c8"),
    9: ("DT_INT64", "<i8"),
    10: ("DT_BOOL", "?"),
    14: ("DT_BFLOAT16", "<u2"),  # widened to float32 after reading
    17: ("DT_UINT16", "<u2"),
    18: ("DT_COMPLEX128", "<c16"),
    19: ("DT_HALF", "<f2"),
    22: ("DT_UINT32", "<u4"),
    23: ("DT_UINT64", "<u8"),
}
_DTYPE_NAMES_UNSUPPORTED = {7: "DT_STRING", 20: "DT_RESOURCE", 21: "DT_VARIANT"}


class CheckpointError(ValueError):
    """The checkpoint is missing, malformed, or uses a feature this reader lacks."""


# --------------------------------------------------------------------------- CRC32C
# Castagnoli polynomial, reflected.  TF/LevelDB store "masked" CRCs so that a CRC
# of data that itself contains CRCs does not degenerate.
_POLY = 0x82F63B78


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _make_table()
_CRC_TABLE_PY = [int(v) for v in _CRC_TABLE]
_LANE = 512  # bytes per lane in the vectorised CRC


def _crc_lanes(lanes: np.ndarray) -> np.ndarray:
    """Finalised CRC32C of each row of a (K, L) uint8 array, computed column by column."""
    cols = np.ascontiguousarray(lanes.T)  # (L, K): one numpy op per byte position
    crc = np.full(lanes.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for col in cols:
        crc = _CRC_TABLE[(crc ^ col) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


_SHIFTS = np.arange(32, dtype=np.uint32)


@functools.lru_cache(maxsize=256)
def _zeros_operator(n_bytes: int) -> np.ndarray:
    """32 columns of the GF(2) matrix that advances a CRC register over n zero bytes."""
    # One zero byte: the register image of each basis vector.
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    op = _CRC_TABLE[basis & 0xFF] ^ (basis >> 8)
    result = basis.copy()  # identity
    while n_bytes:
        if n_bytes & 1:
            result = _apply(op, result)
        n_bytes >>= 1
        if n_bytes:
            op = _apply(op, op)
    result.flags.writeable = False  # cached: shared between callers
    return result


def _apply(op: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the GF(2) operator ``op`` (32 columns) to every uint32 in ``x``."""
    bits = (x[None, :] >> _SHIFTS[:, None]) & np.uint32(1)  # (32, N)
    return np.bitwise_xor.reduce(bits * op[:, None], axis=0)


def _combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A||B from CRC(A), CRC(B) and len(B) (as zlib's crc32_combine)."""
    if len_b == 0:
        return crc_a
    return int(_apply(_zeros_operator(len_b), np.array([crc_a], dtype=np.uint32))[0]) ^ crc_b


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC32C (Castagnoli) of ``data``; vectorised over 512-byte lanes for speed."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    n = buf.size
    n_lanes = n // _LANE
    if n_lanes == 0:
        crc = 0xFFFFFFFF
        for b in buf.tobytes():
            crc = _CRC_TABLE_PY[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    lane_crcs = _crc_lanes(buf[: n_lanes * _LANE].reshape(n_lanes, _LANE))
    # Pad to a power of two with *leading* empty lanes: CRC("") == 0 and the
    # zero-shift of 0 is 0, so they vanish and every right operand is full-length.
    size = 1 << (n_lanes - 1).bit_length()
    crcs = np.concatenate([np.zeros(size - n_lanes, dtype=np.uint32), lane_crcs])
    seg = _LANE
    while crcs.size > 1:
        crcs = _apply(_zeros_operator(seg), crcs[0::2]) ^ crcs[1::2]
        seg *= 2
    total = int(crcs[0])
    tail = buf[n_lanes * _LANE :]
    return _combine(total, crc32c(tail.tobytes()), tail.size) if tail.size else total


def _unmask(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints / protobuf
def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{where}: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{where}: varint longer than 10 bytes")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _proto_fields(buf: bytes, where: str):
    """Yield (field_number, wire_type, value) of a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed64 field {field}")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise CheckpointError(f"{where}: truncated length-delimited field {field}")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed32 field {field}")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"{where}: unsupported protobuf wire type {wire} (field {field})")
        yield field, wire, value


@dataclass(frozen=True)
class _Entry:
    """Decoded BundleEntryProto."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    has_slices: bool


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _, value in _proto_fields(buf, where):
        if field == 2:  # repeated Dim {int64 size = 1; string name = 2}
            size = 0
            for f, _, v in _proto_fields(value, where):
                if f == 1:
                    size = _signed64(v)
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointError(f"{where}: tensor shape has unknown rank")
    if any(d < 0 for d in dims):
        raise CheckpointError(f"{where}: tensor shape {dims} has unknown dimensions")
    return tuple(dims)


def _parse_entry(buf: bytes, where: str) -> _Entry:
    dtype, shape, shard, offset, size, crc, slices = 0, (), 0, 0, 0, None, False
    for field, _, value in _proto_fields(buf, where):
        if field == 1:
            dtype = value
        elif field == 2:
            shape = _parse_shape(value, where)
        elif field == 3:
            shard = value
        elif field == 4:
            offset = _signed64(value)
        elif field == 5:
            size = _signed64(value)
        elif field == 6:
            crc = value
        elif field == 7:
            slices = True
    return _Entry(dtype, shape, shard, offset, size, crc, slices)


def _parse_header(buf: bytes, where: str) -> tuple[int, int]:
    """BundleHeaderProto -> (num_shards, endianness: 0 little / 1 big)."""
    num_shards, endianness = 1, 0
    for field, _, value in _proto_fields(buf, where):
        if field == 1:
            num_shards = value
        elif field == 2:
            endianness = value
    return num_shards, endianness


# --------------------------------------------------------------------------- SSTable
def _block_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return offset, size, pos


def _read_block(table: bytes, offset: int, size: int, path: Path, what: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_LEN
    if end > len(table) - _FOOTER_LEN:
        raise CheckpointError(
            f"{path}: truncated file: {what} at bytes {offset}..{end} lies past the data ({len(table)} bytes)"
        )
    block = table[offset : offset + size]
    ctype = table[offset + size]
    if ctype != 0:
        kind = {1: "snappy", 2: "zlib"}.get(ctype, f"type {ctype}")
        raise CheckpointError(f"{path}: {what} is {kind}-compressed; only uncompressed tables are supported")
    (stored,) = struct.unpack_from("<I", table, offset + size + 1)
    if _unmask(stored) != crc32c(table[offset : offset + size + 1]):
        raise CheckpointError(f"{path}: checksum mismatch in {what} at offset {offset} (corrupt file)")
    return block


def _block_entries(block: bytes, path: Path, what: str):
    """Yield (key, value) pairs of one SSTable block (prefix-compressed keys)."""
    where = f"{path}: {what}"
    if len(block) < 4:
        raise CheckpointError(f"{where}: block shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{where}: restart array ({num_restarts} entries) larger than the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        non_shared, pos = _varint(block, pos, where)
        value_len, pos = _varint(block, pos, where)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CheckpointError(f"{where}: corrupt entry at block offset {pos}")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _read_index(path: Path) -> tuple[tuple[int, int], dict[str, _Entry]]:
    try:
        table = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint index file not found") from None
    if len(table) < _FOOTER_LEN:
        raise CheckpointError(f"{path}: truncated file: {len(table)} bytes, shorter than the {_FOOTER_LEN}-byte footer")
    footer = table[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, 40)
    if magic != _TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: bad magic number {magic:#018x} (expected {_TABLE_MAGIC:#018x}); "
            "not a TF tensor-bundle index or truncated file"
        )
    where = f"{path}: footer"
    _, _, pos = _block_handle(footer, 0, where)  # metaindex: unused by tensor bundles
    idx_off, idx_size, _ = _block_handle(footer, pos, where)
    index_block = _read_block(table, idx_off, idx_size, path, "index block")

    header: tuple[int, int] | None = None
    entries: dict[str, _Entry] = {}
    for _, handle in _block_entries(index_block, path, "index block"):
        off, size, _ = _block_handle(handle, 0, f"{path}: index block")
        data_block = _read_block(table, off, size, path, f"data block @{off}")
        for key, value in _block_entries(data_block, path, f"data block @{off}"):
            if key == b"":
                header = _parse_header(value, f"{path}: header entry")
                continue
            name = key.decode("utf-8", errors="replace")
            entries[name] = _parse_entry(value, f"{path}: entry {name!r}")
    if header is None:
        raise CheckpointError(f"{path}: no BundleHeaderProto (empty-key entry); not a tensor bundle")
    return header, entries


# --------------------------------------------------------------------------- public API
def _split_prefix(prefix: str | Path) -> tuple[Path, str]:
    """Checkpoint prefixes may end in '/' (musicnn's do: files are 'dir/.index')."""
    s = str(prefix)
    if s.endswith(".index"):
        s = s[: -len(".index")]
    return Path(s + ".index"), s


def read_checkpoint(prefix: str | Path, verify: bool = True) -> dict[str, np.ndarray]:
    """Read every tensor of a TF V2 checkpoint into numpy arrays.

    ``prefix`` is what ``Saver.save`` returned, i.e. the path without the
    ``.index`` / ``.data-*`` suffix (a trailing ``/`` is kept, as musicnn's
    checkpoints are named ``<dir>/.index``).  With ``verify`` (default) the block
    and per-tensor CRC32C checksums are checked.  Raises :class:`CheckpointError`
    naming the file and the problem.
    """
    index_path, base = _split_prefix(prefix)
    (num_shards, endianness), entries = _read_index(index_path)
    if endianness not in (0, 1):
        raise CheckpointError(f"{index_path}: unknown endianness {endianness}")

    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if e.has_slices:
            raise CheckpointError(f"{index_path}: tensor {name!r} is partitioned (slices); not supported")
        if e.dtype not in _DTYPES:
            label = _DTYPE_NAMES_UNSUPPORTED.get(e.dtype, f"enum {e.dtype}")
            raise CheckpointError(f"{index_path}: tensor {name!r} has unsupported dtype {label}")
        dname, np_dtype = _DTYPES[e.dtype]
        dt = np.dtype(np_dtype)
        if endianness == 1:
            dt = dt.newbyteorder(">")
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * dt.itemsize:
            raise CheckpointError(
                f"{index_path}: tensor {name!r} ({dname}{list(e.shape)}) has size {e.size}, "
                f"expected {count * dt.itemsize} bytes"
            )
        if not 0 <= e.shard_id < num_shards:
            raise CheckpointError(f"{index_path}: tensor {name!r} in shard {e.shard_id}, but there are {num_shards}")
        data_path = Path(f"{base}.data-{e.shard_id:05d}-of-{num_shards:05d}")
        if e.shard_id not in shards:
            try:
                shards[e.shard_id] = data_path.read_bytes()
            except FileNotFoundError:
                raise CheckpointError(f"{data_path}: data shard not found") from None
        shard = shards[e.shard_id]
        if e.offset < 0 or e.offset + e.size > len(shard):
            raise CheckpointError(
                f"{data_path}: truncated file: tensor {name!r} needs bytes {e.offset}..{e.offset + e.size}, "
                f"file has {len(shard)}"
            )
        raw = shard[e.offset : e.offset + e.size]
        if verify and e.crc32c is not None and _unmask(e.crc32c) != crc32c(raw):
            raise CheckpointError(f"{data_path}: checksum mismatch for tensor {name!r} (corrupt file)")
        arr = np.frombuffer(raw, dtype=dt).reshape(e.shape)
        if dname == "DT_BFLOAT16":
            # bfloat16 is the top half of a float32: widen exactly.
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)  # native order, writable, detached
    return out
