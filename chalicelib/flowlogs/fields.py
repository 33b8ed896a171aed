"""Flow-log record layouts: the default format, custom format strings and S3 header lines."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.errors import EventError

DEFAULT_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} "
    "${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
)
# Every field of versions 2 to 5 (VPC user guide, "Available fields").
KNOWN_FIELDS = frozenset((
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
    "bytes", "start", "end", "action", "log-status", "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type",
    "pkt-srcaddr", "pkt-dstaddr", "region", "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service",
    "pkt-dst-aws-service", "flow-direction", "traffic-path",
))  # fmt: skip
# What the detectors read; a layout without some of them is padded with "-" (those detectors see nothing).
USED = ("srcaddr", "dstaddr", "srcport", "dstport", "bytes", "interface-id", "action")
_TOKEN = re.compile(r"\$\{([a-z0-9-]+)\}")


@dataclass(frozen=True)
class Layout:
    fields: tuple[str, ...]

    def index(self, name: str) -> int | None:
        return self.fields.index(name) if name in self.fields else None

    def position(self, name: str) -> int:
        """The position of a field the layout has (the scanner pads the ones it lacks)."""
        return self.fields.index(name)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in USED if name not in self.fields)


def parse_format(text: str) -> Layout:
    """`${version} ${srcaddr} ...` (the flow log's LogFormat) or the bare names of a header line."""
    names = _TOKEN.findall(text) or text.split()
    unknown = [n for n in names if n not in KNOWN_FIELDS]
    if not names or unknown:
        raise EventError(f"not a flow-log format: unknown field(s) {', '.join(unknown) or '(none given)'}")
    if "srcaddr" not in names or "dstaddr" not in names:
        raise EventError("a flow-log format without srcaddr and dstaddr cannot be scanned")
    return Layout(tuple(names))


def header_layout(line: bytes) -> Layout | None:
    """The layout a header line names, or None when the line is a record."""
    names = line.decode("ascii", "replace").split()
    if names and all(n in KNOWN_FIELDS for n in names):
        return parse_format(" ".join(names))
    return None


DEFAULT = parse_format(DEFAULT_FORMAT)
