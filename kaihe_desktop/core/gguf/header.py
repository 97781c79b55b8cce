"""A streaming, bounded parser for the GGUF header (key/values and tensor infos), from any byte stream.

Why not `gguf.GGUFReader`: it memory-maps the whole file and eagerly decodes every array (a 262k-token
vocabulary becomes 262k numpy objects), which cannot work over HTTP Range requests and cannot bound an
absurd header (a claimed 2^40-element array makes it loop or allocate before it notices). This parser pulls
bytes from a file-like object only as it needs them, checks every length against hard caps *before*
reading, and never touches tensor data. It uses the `gguf` package's constants (value types, quant sizes).
The same code reads local files and remote byte ranges (see `gguf_remote.RangeReader`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)

from kaihe_desktop.core.errors import CorruptGGUFError, NotGGUFError, TruncatedGGUFError

MiB = 1024 * 1024

# Hard caps. The largest real headers are tens of MB (a 262k-token vocabulary with merges is ~7 MB).
MAX_HEADER_BYTES = 512 * MiB
MAX_STRING_BYTES = 64 * MiB
MAX_KV_COUNT = 1 << 20
MAX_TENSOR_COUNT = 1 << 20
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 2
# Arrays up to this length are decoded into Python values; longer ones are skipped (length kept) unless
# their key is in KEEP_LONG_ARRAYS.
SMALL_ARRAY_LEN = 4096
KEEP_LONG_ARRAYS = frozenset({"tokenizer.ggml.tokens"})
SUPPORTED_VERSIONS = (2, 3)

_SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}
_MIN_ITEM_BYTES = {**{t: struct.calcsize("<" + f) for t, f in _SCALAR_FORMATS.items()}}
_MIN_ITEM_BYTES[GGUFValueType.STRING] = 8
_MIN_ITEM_BYTES[GGUFValueType.ARRAY] = 12


class ByteStream(Protocol):
    """What the parser reads from: a local file opened "rb" or a gguf_remote.RangeReader."""

    def read(self, n: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArraySummary:
    """A long array that was skipped: its element type and length only."""

    item_type: GGUFValueType
    length: int


@dataclass(frozen=True)
class RawTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    offset: int  # relative to the tensor-data start
    n_elements: int
    n_bytes: int


@dataclass
class GGUFHeader:
    """One file's header. `fields` maps keys to ints/floats/bools/strs, lists, or ArraySummary."""

    source: str
    version: int
    fields: dict[str, Any] = field(default_factory=dict)
    tensors: list[RawTensor] = field(default_factory=list)
    data_offset: int = 0  # where tensor data starts (= header size, padded to the alignment)
    file_size: int | None = None
    bytes_consumed: int = 0  # header bytes actually parsed (before alignment padding)

    @property
    def tensor_data_end(self) -> int:
        """Absolute end of the last tensor's data (what the file size must reach)."""
        if not self.tensors:
            return self.data_offset
        return self.data_offset + max(t.offset + t.n_bytes for t in self.tensors)


class _Cursor:
    """Pulls bytes from a stream on demand; every read is checked against the header cap and file size."""

    def __init__(self, stream: ByteStream, *, name: str, file_size: int | None, limit: int) -> None:
        self._stream = stream
        self._name = name
        self._file_size = file_size
        self._limit = limit
        self._buf = bytearray()
        self._off = 0
        self.pos = 0
        self.context = "the header"

    def _fill(self, n: int) -> None:
        have = len(self._buf) - self._off
        if have >= n:
            return
        if self._off:
            del self._buf[: self._off]
            self._off = 0
        while len(self._buf) < n:
            chunk = self._stream.read(max(n - len(self._buf), 64 * 1024))
            if not chunk:
                size = self.pos + len(self._buf)
                raise TruncatedGGUFError(
                    f"{self._name} is truncated: reading {self.context} needs byte {self.pos + n:,} "
                    f"but the file ends at byte {size:,}"
                )
            self._buf += chunk

    def need(self, n: int, what: str) -> None:
        """Refuse a read of n bytes that would push the header past its cap or past the end of the file."""
        end = self.pos + n
        if end > self._limit:
            raise CorruptGGUFError(
                f"{self._name} has an absurd header: {what} would make the header {end:,} bytes "
                f"(the cap is {self._limit:,})"
            )
        if self._file_size is not None and end > self._file_size:
            raise TruncatedGGUFError(
                f"{self._name} is truncated: {what} needs byte {end:,} of the header "
                f"but the file has {self._file_size:,} bytes"
            )

    def take(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[self._off : self._off + n])
        self._off += n
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, 4 * MiB)
            self._fill(step)
            self._off += step
            self.pos += step
            n -= step

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self._fill(size)
        value = struct.unpack_from(fmt, self._buf, self._off)[0]
        self._off += size
        self.pos += size
        return value

    def string(self, what: str) -> str:
        length = self.unpack("<Q")
        if length > MAX_STRING_BYTES:
            raise CorruptGGUFError(
                f"{self._name} has an absurd header: a string of {length:,} bytes in {what} "
                f"(the cap is {MAX_STRING_BYTES:,})"
            )
        self.need(length, f"a string of {length:,} bytes in {what}")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.unpack("<Q")
            if length > MAX_STRING_BYTES:
                raise CorruptGGUFError(
                    f"{self._name} has an absurd header: a string of {length:,} bytes in {self.context}"
                )
            self.need(length, f"a string of {length:,} bytes in {self.context}")
            self.skip(length)


def _value_type(raw: int, cursor: _Cursor, name: str, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise CorruptGGUFError(
            f"{name} has a corrupt header: unknown value type {raw} in {what} (at byte {cursor.pos:,})"
        ) from None


def _read_value(cursor: _Cursor, vtype: GGUFValueType, *, key: str, name: str, depth: int = 0) -> Any:
    if vtype == GGUFValueType.STRING:
        return cursor.string(f"key {key}")
    if vtype != GGUFValueType.ARRAY:
        return cursor.unpack("<" + _SCALAR_FORMATS[vtype])
    if depth >= MAX_ARRAY_DEPTH:
        raise CorruptGGUFError(f"{name} has a corrupt header: arrays nested too deep in key {key}")
    item_type = _value_type(cursor.unpack("<I"), cursor, name, f"key {key}")
    length = cursor.unpack("<Q")
    min_bytes = length * _MIN_ITEM_BYTES[item_type]
    if cursor.pos + min_bytes > MAX_HEADER_BYTES:
        power = length.bit_length() - 1
        approx = f"2^{power}" if length == 1 << power else f"{length:,}"
        raise CorruptGGUFError(
            f"{name} has an absurd header: array of {approx} elements in key {key} "
            f"(at least {min_bytes:,} bytes; the header cap is {MAX_HEADER_BYTES:,})"
        )
    cursor.need(min_bytes, f"an array of {length:,} elements in key {key}")
    keep = length <= SMALL_ARRAY_LEN or key in KEEP_LONG_ARRAYS
    if item_type == GGUFValueType.STRING:
        if keep:
            return [cursor.string(f"key {key}") for _ in range(length)]
        cursor.skip_strings(length)
        return ArraySummary(item_type, length)
    if item_type == GGUFValueType.ARRAY:
        items = [_read_value(cursor, item_type, key=key, name=name, depth=depth + 1) for _ in range(length)]
        return items if keep else ArraySummary(item_type, length)
    fmt = _SCALAR_FORMATS[item_type]
    if keep:
        raw = cursor.take(min_bytes)
        return list(struct.unpack(f"<{length}{fmt}", raw))
    cursor.skip(min_bytes)
    return ArraySummary(item_type, length)


def _tensor_nbytes(
    name: str, tensor: str, shape: tuple[int, ...], ggml_type: GGMLQuantizationType
) -> tuple[int, int]:
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    if shape and shape[0] % block_size:
        raise CorruptGGUFError(
            f"{name} has a corrupt header: tensor {tensor} has {shape[0]} columns, "
            f"not a multiple of the {ggml_type.name} block size {block_size}"
        )
    return n_elements, n_elements // block_size * type_size


def parse_header(
    stream: ByteStream, *, name: str, file_size: int | None = None, max_header_bytes: int = MAX_HEADER_BYTES
) -> GGUFHeader:
    """Parse one GGUF header from `stream` (positioned at byte 0). `name` is used in every error message.

    `file_size`, when known, turns reads past the end into TruncatedGGUFError before they are attempted.
    """
    cursor = _Cursor(stream, name=name, file_size=file_size, limit=max_header_bytes)
    try:
        magic = cursor.take(4)
    except TruncatedGGUFError:
        raise NotGGUFError(f"{name} is not a GGUF file (it is shorter than the 4-byte magic)") from None
    if struct.unpack("<I", magic)[0] != GGUF_MAGIC:
        raise NotGGUFError(f"{name} is not a GGUF file (starts with {magic!r})")
    version = cursor.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        raise CorruptGGUFError(
            f"{name} has GGUF version {version}, which this reader does not support "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))}; "
            "a big-endian file reads as a huge version)"
        )
    tensor_count = cursor.unpack("<Q")
    kv_count = cursor.unpack("<Q")
    if kv_count > MAX_KV_COUNT:
        raise CorruptGGUFError(
            f"{name} has an absurd header: {kv_count:,} key/value pairs (cap {MAX_KV_COUNT:,})"
        )
    if tensor_count > MAX_TENSOR_COUNT:
        raise CorruptGGUFError(
            f"{name} has an absurd header: {tensor_count:,} tensors (cap {MAX_TENSOR_COUNT:,})"
        )
    header = GGUFHeader(source=name, version=version, file_size=file_size)

    for index in range(kv_count):
        cursor.context = f"key/value #{index}"
        key = cursor.string(f"the name of key/value #{index}")
        cursor.context = f"key {key}"
        vtype = _value_type(cursor.unpack("<I"), cursor, name, f"key {key}")
        if key in header.fields:
            raise CorruptGGUFError(f"{name} has a corrupt header: duplicate key {key}")
        header.fields[key] = _read_value(cursor, vtype, key=key, name=name)

    for index in range(tensor_count):
        cursor.context = f"tensor info #{index}"
        tname = cursor.string(f"the name of tensor #{index}")
        cursor.context = f"tensor {tname}"
        n_dims = cursor.unpack("<I")
        if not 0 < n_dims <= MAX_DIMS:
            raise CorruptGGUFError(f"{name} has a corrupt header: tensor {tname} has {n_dims} dimensions")
        shape = tuple(cursor.unpack("<Q") for _ in range(n_dims))
        if any(d <= 0 or d >= 1 << 40 for d in shape):
            raise CorruptGGUFError(
                f"{name} has a corrupt header: tensor {tname} has absurd shape {list(shape)}"
            )
        raw_type = cursor.unpack("<I")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise CorruptGGUFError(
                f"{name} has a corrupt header: tensor {tname} has unknown type {raw_type}"
            ) from None
        offset = cursor.unpack("<Q")
        n_elements, n_bytes = _tensor_nbytes(name, tname, shape, ggml_type)
        header.tensors.append(RawTensor(tname, shape, ggml_type, offset, n_elements, n_bytes))

    alignment = header.fields.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CorruptGGUFError(
            f"{name} has a corrupt header: general.alignment {alignment!r} is not a power of two"
        )
    header.bytes_consumed = cursor.pos
    header.data_offset = -(-cursor.pos // alignment) * alignment
    for tensor in header.tensors:
        if tensor.offset % alignment:
            raise CorruptGGUFError(
                f"{name} has a corrupt header: tensor {tensor.name} starts at offset {tensor.offset}, "
                f"not aligned to {alignment}"
            )
    return header


def check_tensor_data(header: GGUFHeader) -> None:
    """Raise TruncatedGGUFError when the file ends before the tensor data does (file size must be known)."""
    if header.file_size is not None and header.tensor_data_end > header.file_size:
        raise TruncatedGGUFError(
            f"{header.source} is truncated: its tensor data ends at byte {header.tensor_data_end:,} "
            f"but the file has {header.file_size:,} bytes (header ends at byte {header.data_offset:,})"
        )
