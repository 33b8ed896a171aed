"""Flow-log record layouts: the default formats, custom format strings and S3 header lines, for
VPC Flow Logs (versions 2 to 11) and Transit Gateway Flow Logs (version 6)."""

from __future__ import annotations

from chalicelib.errors import EventError

DEFAULT_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} "
    "${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
)
# Every field of VPC Flow Logs (the VPC user guide, "Available fields"), by the version that added it.
VPC_FIELDS = (
    # 2: the default format
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
    "bytes", "start", "end", "action", "log-status",
    # 3
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
    # 4
    "region", "az-id", "sublocation-type", "sublocation-id",
    # 5
    "pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction", "traffic-path",
    # 7: Amazon ECS tasks
    "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn", "ecs-container-instance-id",
    "ecs-container-id", "ecs-second-container-id", "ecs-service-name", "ecs-task-definition-arn", "ecs-task-arn",
    "ecs-task-id",
    # 8 to 11
    "reject-reason", "resource-id", "encryption-status", "instance-tag", "instance-tag-2", "interface-tag",
    "interface-tag-2", "asg-tag", "asg-tag-2", "interface-type", "next-hop-interface-id", "next-hop-subnet-id",
    "next-hop-az-id", "next-hop-vpc-id", "next-hop-interface-type",
)  # fmt: skip
# Every field of Transit Gateway Flow Logs, in the order of their default format (all of them).
TGW_FIELDS = (
    "version", "resource-type", "account-id", "tgw-id", "tgw-attachment-id", "tgw-src-vpc-account-id",
    "tgw-dst-vpc-account-id", "tgw-src-vpc-id", "tgw-dst-vpc-id", "tgw-src-subnet-id", "tgw-dst-subnet-id",
    "tgw-src-eni", "tgw-dst-eni", "tgw-src-az-id", "tgw-dst-az-id", "tgw-pair-attachment-id", "srcaddr", "dstaddr",
    "srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "log-status", "type",
    "packets-lost-no-route", "packets-lost-blackhole", "packets-lost-mtu-exceeded", "packets-lost-ttl-expired",
    "tcp-flags", "region", "flow-direction", "pkt-src-aws-service", "pkt-dst-aws-service",
)  # fmt: skip
KNOWN_FIELDS = frozenset((*VPC_FIELDS, *TGW_FIELDS))
TGW_RESOURCE_TYPES = (b"TransitGateway", b"TransitGatewayAttachment")
# What the detectors read; a layout without some of them is padded (those detectors see nothing).
USED = ("srcaddr", "dstaddr", "srcport", "dstport", "bytes", "interface-id", "action")
# What a field's name is made of. Names are read without `re`: the scanner's process does not
# import it (nor `enum` with it), some 2.5 ms of every scan.
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LONGEST_NAME = 64


def _tokens(text: str) -> list[str]:
    """The names in `${name}` tokens, in order (a name of lower-case letters, digits and dashes)."""
    names = []
    for piece in text.split("${")[1:]:
        name, closed, _ = piece.partition("}")
        if closed and name and _NAME_CHARACTERS.issuperset(name):
            names.append(name)
    return names


def _is_name(word: str) -> bool:
    """A header line's word that can be a field's name: a lower-case letter, then up to 63 more."""
    return 0 < len(word) <= _LONGEST_NAME and "a" <= word[0] <= "z" and _NAME_CHARACTERS.issuperset(word)


class Layout:
    """A flow log's fields, in order. A plain value class, not a frozen dataclass: the scanner's
    process never imports `dataclasses` (and with it `inspect`, some 17 ms of every scan)."""

    __slots__ = ("_hash", "_indexes", "aliases", "fields", "fills")

    def __init__(
        self,
        fields: tuple[str, ...],
        aliases: tuple[tuple[str, str], ...] = (),
        fills: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.fields = fields
        # Transit Gateway records name what the detectors read otherwise: the field read in place of
        # one (the attachment stands for the interface), and the value of one they have none for (a
        # transit gateway has no security group: what it recorded, it forwarded; losses are counted apart).
        self.aliases = aliases
        self.fills = fills
        # Where each name is (its first place), and each alias of a field the layout has: worked out
        # once per layout.
        found: dict[str, int] = {}
        for place, name in enumerate(fields):
            found.setdefault(name, place)
        for name, used in aliases:
            if name not in found and used in found:
                found[name] = found[used]
        self._indexes = found
        self._hash = hash(self._key())  # the scanner looks its plans up by layout, once a block

    def _key(self) -> tuple[object, ...]:
        return self.fields, self.aliases, self.fills

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self._key() == other._key()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Layout(fields={self.fields!r}, aliases={self.aliases!r}, fills={self.fills!r})"

    def index(self, name: str) -> int | None:
        return self._indexes.get(name)

    def position(self, name: str) -> int:
        """The position of a field the layout has (the scanner pads the ones it lacks)."""
        found = self.index(name)
        if found is None:
            raise ValueError(f"the layout has no {name}")
        return found

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in USED if self.index(name) is None)

    def fill(self, name: str) -> bytes:
        """What a record of this layout says for a field it lacks."""
        return dict(self.fills).get(name, "-").encode()

    @property
    def padded(self) -> Layout:
        """This layout with the fields it lacks appended (the scanner appends their fill to each record)."""
        return Layout((*self.fields, *self.missing), self.aliases)

    @property
    def transit_gateway(self) -> bool:
        return any(name.startswith("tgw-") or name == "resource-type" for name in self.fields)


def parse_format(text: str, *, strict: bool = True) -> Layout:
    """`${version} ${srcaddr} ...` (the flow log's LogFormat) or the bare names of a header line.
    `strict`: every name must be a documented field (a format someone typed); a header line that
    AWS wrote may carry a field added since, which is kept and not read."""
    names = _tokens(text) or text.split()
    unknown = [n for n in names if n not in KNOWN_FIELDS]
    if not names or (unknown and strict):
        raise EventError(f"not a flow-log format: unknown field(s) {', '.join(unknown) or '(none given)'}")
    if "srcaddr" not in names or "dstaddr" not in names:
        raise EventError("a flow-log format without srcaddr and dstaddr cannot be scanned")
    layout = Layout(tuple(names))
    if layout.transit_gateway:
        return Layout(layout.fields, (("interface-id", "tgw-attachment-id"),), (("action", "ACCEPT"),))
    return layout


def header_layout(line: bytes) -> Layout | None:
    """The layout a header line names, or None when the line is a record (a record never holds
    the words srcaddr and dstaddr; every field of a header is a lower-case name)."""
    names = line.decode("ascii", "replace").split()
    if "srcaddr" in names and "dstaddr" in names and all(_is_name(n) for n in names):
        return parse_format(" ".join(names), strict=False)
    return None


DEFAULT = parse_format(DEFAULT_FORMAT)
TGW_DEFAULT = parse_format(" ".join(TGW_FIELDS))


def sniffed(record: bytes) -> Layout | None:
    """The layout of a record without a header and without a configured format, when it can only
    be one: a Transit Gateway record in its default format (all fields, its resource type second)."""
    parts = record.split(None, len(TGW_FIELDS))
    if len(parts) == len(TGW_FIELDS) and parts[1] in TGW_RESOURCE_TYPES:
        return TGW_DEFAULT
    return None
