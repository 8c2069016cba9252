"""Tables as Apache Arrow IPC streams and Parquet files, both ways, and the Accept header that
picks between them and JSON.

A DataFrame is written as the JSON records show it (an informative index as the leading columns,
MultiIndex column labels joined, only the declared columns of a ``Row``), with its dtypes: ints
stay ints, categoricals are dictionaries, timezone-aware timestamps keep their zone, nullable
integers keep their nulls (pyarrow's pandas metadata restores them in ``to_pandas()``). A Series
is a one-column table named after it (``values`` without a name); an ndarray is the column
``values``, one row per first-axis entry (an Arrow fixed-shape tensor for two or more axes).

pyarrow is the ``arrow`` extra; without it these media types are refused with a message naming it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._lazy import LazyModule, data_types
from .accept import accepted, quality

np = LazyModule("numpy")
pd = LazyModule("pandas")
frames = LazyModule(".frames", __package__)  # imports pandas and numpy
arrowframe = LazyModule(".arrowframe", __package__)  # imports pandas and numpy

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
COLUMNAR = (ARROW, PARQUET)
# Also read, never written: the Arrow file format, and Parquet's older unofficial name.
_ARROW_FILE = "application/vnd.apache.arrow.file"
_READ_AS = {ARROW: ARROW, _ARROW_FILE: ARROW, PARQUET: PARQUET,
            "application/x-parquet": PARQUET, "application/parquet": PARQUET}
NEEDS_EXTRA = "Arrow and Parquet need pyarrow: pip install 'nb2api[arrow]'"
_PARQUET_MAGIC = b"PAR1"
_ARROW_FILE_MAGIC = b"ARROW1"
_VALUES = "values"

# Tables become Arrow one at a time. The conversion is mostly Python between many short calls that
# release the GIL (one or two per column); workers converting side by side hand the GIL back and
# forth at each of them: 86 context switches per answer with 6 workers, against 22 with this lock,
# and 1.4x the req/s of 10,000-row answers (bench/bench_dataframe.py, 8 connections). Workers
# wait for the lock without asking for the GIL. JSON writing keeps its parallel Arrow kernels:
# the same lock there cost it req/s.
_one_at_a_time = threading.Lock()

Check = Callable[[int, int], None]  # (rows, decoded bytes) so far -> raises to refuse


class ColumnarError(ValueError):
    """A body that does not read as the Arrow or Parquet table it says it is."""


def available() -> bool:
    """Whether pyarrow can be imported (the ``arrow`` extra is installed)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# -- content negotiation ---------------------------------------------------------------------


def negotiate(header: str | None, offered: Iterable[str]) -> str | None:
    """The offered media type the ``Accept`` header prefers (RFC 9110): the highest q-value;
    on a tie, the type named exactly over a wildcard, then the range the client wrote first,
    then the first offered. None when it accepts none of them. No header, or an empty one,
    accepts anything: the first offered."""
    offered = list(offered)
    ranges = accepted(header)
    if not ranges:
        return offered[0] if offered else None
    best, best_score = None, (0.0, -1, 0)
    for media_type in offered:
        score = quality(media_type, ranges)
        if score[0] > 0 and score > best_score:
            best, best_score = media_type, score
    return best


def asks_columnar(header: str | None) -> bool:
    """Whether ``Accept`` names Arrow or Parquet itself (not through a wildcard)."""
    return any(kind in COLUMNAR and q > 0 for kind, q in accepted(header))


def body_media_type(content_type: str | None) -> str | None:
    """ARROW or PARQUET when a request's ``Content-Type`` says the body is such a table."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return _READ_AS.get(kind)


# -- writing ---------------------------------------------------------------------------------


def is_table(value: Any) -> bool:
    """A DataFrame, a Series or an ndarray (without importing pandas or numpy to say no)."""
    kinds = data_types()
    return bool(kinds) and isinstance(value, kinds)


def write(value: Any, media_type: str) -> memoryview:
    """``value`` as an Arrow IPC stream or a Parquet file (``media_type``), in Arrow's own
    buffer (no copy into a Python ``bytes``; a ``Response`` sends the view as it is). A
    DataFrame is written as given: pass it through :func:`.frames.shown_table` first."""
    import pyarrow as pa

    with _one_at_a_time:
        table = _arrow_table(value, pa)
        if media_type != PARQUET:
            # Measured first (no data copied), then written once into a buffer of that size: no
            # buffer grown and copied again as the stream is written.
            size = pa.MockOutputStream()
            _write_stream(table, size, pa)
            buffer = pa.allocate_buffer(size.size())
            _write_stream(table, pa.FixedSizeBufferWriter(buffer), pa)
            return memoryview(buffer).cast("B")
    import pyarrow.parquet as pq

    # Compression is long calls without the GIL: Parquet files are written side by side.
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    buffer = sink.getvalue()
    return memoryview(buffer).cast("B")


def _write_stream(table: Any, sink: Any, pa: Any) -> None:
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def _arrow_table(value: Any, pa: Any) -> Any:
    if isinstance(value, pd.Series):
        name = _VALUES if value.name is None else value.name
        value = frames.shown_table(value.to_frame(name))
    if isinstance(value, pd.DataFrame):
        if not all(type(name) is str for name in value.columns):
            value = value.set_axis([str(name) for name in value.columns], axis=1)
        return arrowframe.table(value, pa)  # what from_pandas makes, in less time
    array = np.asarray(value)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim == 1:
        return pa.table({_VALUES: pa.array(array)})
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(array))
    return pa.table({_VALUES: tensor})


# -- reading ---------------------------------------------------------------------------------


def read(data: bytes, media_type: str, check: Check) -> Any:
    """A DataFrame from an Arrow IPC stream (or file) or a Parquet file. ``check(rows, bytes)``
    hears the rows and decoded bytes before they are turned into a DataFrame, and raises to
    refuse them, before anything is decoded: from the Parquet file's footer, from the Arrow
    stream's message metadata (what each batch decodes to, compressed or not)."""
    import pyarrow as pa

    def checked(rows: int, size: int) -> None:
        try:
            check(rows, size)
        except Exception as exc:
            raise _Refused(exc) from exc

    try:
        if media_type == PARQUET or data[:4] == _PARQUET_MAGIC:
            return _read_parquet(data, checked, pa)
        return _read_arrow(data, checked, pa).to_pandas()
    except _Refused as refused:
        raise refused.reason from None
    except ColumnarError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow and pandas (its metadata) raise many types
        what = "Parquet file" if media_type == PARQUET else "Arrow IPC stream"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ColumnarError(f"not a readable {what}: {text}") from None


class _Refused(Exception):
    """``check`` refused the table: its own exception (``reason``) is what the caller gets."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_arrow(data: bytes, check: Check, pa: Any) -> Any:
    buffer = pa.py_buffer(data)
    is_file = data[:6] == _ARROW_FILE_MAGIC
    # What each batch decodes to, from its metadata, before a compressed buffer (a possible
    # decompression bomb) is expanded. A file holds a stream after its 8-byte magic.
    rows = size = 0
    for batch_rows, batch_bytes in _batch_sizes(buffer[8:] if is_file else buffer, pa):
        rows, size = rows + batch_rows, size + batch_bytes
        check(rows, size)
    if is_file:
        reader = pa.ipc.open_file(buffer)
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        return pa.Table.from_batches(batches, schema=reader.schema)
    return pa.ipc.open_stream(buffer).read_all()


def _batch_sizes(buffer: Any, pa: Any) -> Iterator[tuple[int, int]]:
    """(rows, decoded bytes) of each record batch and dictionary of an IPC stream, read from
    the messages' metadata without decoding their bodies."""
    for message in pa.ipc.MessageReader.open_stream(buffer):
        if message.type in ("record batch", "dictionary"):
            body = memoryview(message.body) if message.body is not None else memoryview(b"")
            try:
                yield _decoded_size(memoryview(message.metadata), body)
            except (struct.error, IndexError, ValueError):
                raise ColumnarError("not a readable Arrow IPC stream: its metadata is "
                                    "malformed") from None


def _decoded_size(meta: memoryview, body: memoryview) -> tuple[int, int]:
    """Rows and decoded bytes of one message, from its flatbuffer ``Message`` (Arrow's
    ``Message.fbs``): the ``RecordBatch`` header's ``length`` and ``buffers``; a compressed
    buffer starts with its decoded length (-1: stored as is)."""
    message = _table(meta, 0)
    kind_at = _field(meta, message, 1)  # header_type: 2 DictionaryBatch, 3 RecordBatch
    header_at = _field(meta, message, 2)
    kind = meta[kind_at] if kind_at is not None else 0
    if kind not in (2, 3) or header_at is None:
        return 0, 0
    batch = _table(meta, header_at)
    rows = 0
    if kind == 2:  # a dictionary's values: bytes, not rows of the table
        data_at = _field(meta, batch, 1)
        if data_at is None:
            return 0, 0
        batch = _table(meta, data_at)
    else:
        length_at = _field(meta, batch, 0)
        rows = struct.unpack_from("<q", meta, length_at)[0] if length_at is not None else 0
    buffers_at = _field(meta, batch, 2)
    compressed = _field(meta, batch, 3) is not None
    size = 0
    if buffers_at is not None:
        vector = _table(meta, buffers_at)
        for i in range(struct.unpack_from("<I", meta, vector)[0]):
            offset, length = struct.unpack_from("<qq", meta, vector + 4 + 16 * i)
            if compressed and length >= 8:
                decoded = struct.unpack_from("<q", body, offset)[0]
                size += length - 8 if decoded == -1 else decoded
            else:
                size += length
    if rows < 0 or size < 0:
        raise ValueError("negative size")
    return rows, size


def _table(buffer: memoryview, at: int) -> int:
    """Where the flatbuffer table (or vector) that the offset at ``at`` points to starts."""
    return at + struct.unpack_from("<I", buffer, at)[0]


def _field(buffer: memoryview, table: int, index: int) -> int | None:
    """Where field ``index`` of the flatbuffer table at ``table`` is, None when it is absent."""
    vtable = table - struct.unpack_from("<i", buffer, table)[0]
    size = struct.unpack_from("<H", buffer, vtable)[0]
    if 4 + 2 * index >= size:
        return None
    offset = struct.unpack_from("<H", buffer, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _read_parquet(data: bytes, check: Check, pa: Any) -> Any:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(pa.py_buffer(data))
    meta = file.metadata
    # Compressed pages can hide a huge table (a decompression bomb): decide before decoding
    # anything, from what the file says of its rows and its decoded size.
    decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    check(meta.num_rows, max(decoded, meta.num_rows * meta.num_columns * 8))
    return file.read().to_pandas()
