"""Flow-log inputs as blocks of lines: gzip objects from S3 (streamed) and CloudWatch Logs payloads."""

from __future__ import annotations

import zlib

from chalicelib.errors import EventError
from chalicelib.flowlogs.fields import DEFAULT, Layout, header_layout, sniffed
from chalicelib.flowlogs.values import Value

TYPE_CHECKING = False  # no `typing` in the scanner's process (addresses.py says why)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, BinaryIO

# Compressed bytes read at a time, and the most one inflate call writes: a block (at most BLOCK bytes,
# about 2,000 records) is inflated and then scanned while it is still in the core's L2 cache, however
# well the object compresses. By compressed size alone, one 64 KB chunk of v5 records inflated to more
# than 1 MB (of repetitive records, 4 MB): bounding the output took the v5 scan from 0.86-0.90x to
# 0.49-0.57x `gzip -dc` on the bench's machine (docs/performance.md); 128 KB blocks were no better.
CHUNK = 1 << 16
BLOCK = 1 << 18


class _Read:
    """What an inflater has read of a stream: bytes, and whether its last gzip member ended."""

    __slots__ = ("compressed", "ended")

    def __init__(self) -> None:
        self.compressed = 0
        self.ended = False


def _zlib_inflated(stream: BinaryIO, chunk: int, block: int, read: _Read) -> Iterator[bytes]:
    """A gzip stream (several members allowed) inflated at most `block` bytes at a time, by zlib."""
    inflate = zlib.decompressobj(31)
    pending = b""
    while True:
        if not pending:
            pending = stream.read(chunk)
            if not pending:
                return
            read.compressed += len(pending)
        out = inflate.decompress(pending, block)
        pending = inflate.unconsumed_tail
        if inflate.eof and inflate.unused_data:  # the next gzip member
            pending = inflate.unused_data
            inflate = zlib.decompressobj(31)
        read.ended = inflate.eof
        yield out


_inflate: Callable[[BinaryIO, int, int, _Read], Iterator[bytes]] = _zlib_inflated
_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:  # ISA-L's inflate (0.3 MB wheel) decompresses about three times faster than zlib, same format
    from isal import igzip_lib

    def _isal_inflated(stream: BinaryIO, chunk: int, block: int, read: _Read) -> Iterator[bytes]:
        """The same by ISA-L, through its decompressor that keeps what it has not inflated yet
        (zlib's interface copies that tail out at every call: the v2 file's inflate 5 % faster)."""
        inflate = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        pending = b""
        while True:
            if inflate.eof:  # a member ended: what follows is the next one
                if not pending:
                    pending = stream.read(chunk)
                    if not pending:
                        return
                    read.compressed += len(pending)
                inflate = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
            if not pending and inflate.needs_input:
                pending = stream.read(chunk)
                if not pending:
                    return
                read.compressed += len(pending)
            out = inflate.decompress(pending, block)
            pending = inflate.unused_data if inflate.eof else b""
            read.ended = inflate.eof
            yield out

    _inflate = _isal_inflated
    _ERRORS = (zlib.error, igzip_lib.IsalError, EOFError)  # type: ignore[assignment]  # its stubs call the class an instance
except ImportError:  # pragma: no cover - the packaged Lambda has it
    pass


class ReadError(EventError):
    """The input ended early or is corrupt: what came before it was scanned."""


# A delivery is bounded however it was made: flow-log records are a few hundred bytes and S3
# objects tens of megabytes, so a line or a file beyond these is damage or a decompression bomb.
MAX_LINE = 64 * 1024
MAX_EXPANDED = 4 * 1024 * 1024 * 1024


def _bounded(leftover: bytes, expanded: int) -> None:
    if len(leftover) > MAX_LINE:
        raise ReadError(f"a line longer than {MAX_LINE} bytes: not a flow log (or a decompression bomb); not read")
    if expanded > MAX_EXPANDED:
        raise ReadError(f"the object expands beyond {MAX_EXPANDED} bytes: read up to there, the rest not read")


def gzip_blocks(stream: BinaryIO, chunk: int = CHUNK, block: int = BLOCK) -> Iterator[bytes]:
    """Whole lines of a gzip stream (several members allowed), block by block, in bounded memory."""
    read = _Read()
    inflated = _inflate(stream, chunk, block, read)
    leftover = b""
    expanded = 0
    while True:
        try:
            out = next(inflated, None)
        except _ERRORS as exc:
            if leftover:
                yield leftover
            raise ReadError(f"corrupt gzip data after {read.compressed} compressed bytes: {exc}") from None
        if out is None:
            break
        expanded += len(out)
        cut = out.rfind(b"\n")
        if cut < 0:
            leftover += out
            _bounded(leftover, expanded)
            continue
        # One copy of what was inflated, not two (a concatenation, then a slice of it).
        lines = b"".join((leftover, memoryview(out)[:cut]))
        leftover = out[cut + 1 :]
        _bounded(leftover, expanded)
        yield lines
    if leftover:
        yield leftover
    if read.compressed and not read.ended:
        raise ReadError(f"gzip data ends early (truncated after {read.compressed} compressed bytes)")
    if not read.compressed:
        raise ReadError("empty object")


def text_blocks(stream: BinaryIO, chunk: int = 8 * CHUNK) -> Iterator[bytes]:
    """An uncompressed flow-log file (the S3 layout after gunzip), block by block."""
    leftover = b""
    total = 0
    while data := stream.read(chunk):
        total += len(data)
        buffer = leftover + data
        cut = buffer.rfind(b"\n")
        leftover = buffer[cut + 1 :] if cut >= 0 else buffer
        _bounded(leftover, total)
        if cut >= 0:
            yield buffer[:cut]
    if leftover:
        yield leftover


def with_layout(blocks: Iterator[bytes], configured: Layout | None) -> Iterator[tuple[Layout, bytes]]:
    """Take the layout from a header line when the input starts with one, else the configured one
    (without one: the default format, or Transit Gateway's when the first record can only be that)."""
    layout = configured or DEFAULT
    first = True
    for block in blocks:
        body = block
        if first and block:
            first = False
            head, _, rest = block.partition(b"\n")
            named = header_layout(head)
            if named is not None:
                layout, body = named, rest
            elif configured is None:
                layout = sniffed(head) or layout
        if body:
            yield layout, body


# A subscription delivery is at most 1 MB compressed; what it expands to is bounded too, so a small
# gzip bomb cannot fill a 1 GB function.
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024


class LogsPayload(Value):
    """A CloudWatch Logs subscription delivery, decoded."""

    __slots__ = ("control", "log_group", "log_stream", "messages", "owner")

    def __init__(self, *, log_group: str, log_stream: str, owner: str, control: bool, messages: list[bytes]) -> None:
        self.log_group = log_group
        self.log_stream = log_stream
        self.owner = owner
        self.control = control  # CloudWatch Logs' own reachability check: no records
        self.messages = messages


def logs_payload(event: Any) -> LogsPayload:
    """`{"awslogs": {"data": base64(gzip(JSON))}}` as a subscription filter delivers it."""
    # Imported here: an S3 object's scan needs none of them.
    import base64
    import binascii
    import json

    from chalicelib.validation import check_depth

    awslogs = event.get("awslogs") if isinstance(event, dict) else None
    data = awslogs.get("data") if isinstance(awslogs, dict) else None
    if not isinstance(data, str):
        raise EventError("not a CloudWatch Logs subscription event: no awslogs.data")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise EventError(f"CloudWatch Logs payload is {len(data)} bytes encoded, more than {MAX_PAYLOAD_BYTES}")
    try:
        inflate = zlib.decompressobj(31)
        raw = inflate.decompress(base64.b64decode(data, validate=True), MAX_PAYLOAD_BYTES)
        if inflate.unconsumed_tail:
            raise EventError(f"CloudWatch Logs payload expands beyond {MAX_PAYLOAD_BYTES} bytes: not read")
        body = json.loads(raw)
        check_depth(body)
    except (binascii.Error, zlib.error, ValueError, RecursionError) as exc:
        raise EventError(f"CloudWatch Logs payload cannot be decoded: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("logEvents", []), list):
        raise EventError("CloudWatch Logs payload has no logEvents list")
    messages = [
        e["message"].encode()
        for e in body.get("logEvents", [])
        if isinstance(e, dict) and isinstance(e.get("message"), str)
    ]
    return LogsPayload(
        log_group=_text(body.get("logGroup")),
        log_stream=_text(body.get("logStream")),
        owner=_text(body.get("owner")),
        control=body.get("messageType") == "CONTROL_MESSAGE",
        messages=messages,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
