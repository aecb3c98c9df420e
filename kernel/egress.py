"""The egress guard: which addresses outbound requests may not reach, shared by the http
task executor (``worker/executors/http.py``), the sandbox's network rules
(``worker/sandbox/net.py``) and the platform's own outbound deliveries (notifications).

No I/O of its own: :func:`checked_addresses` is given the resolver to use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def classify_address(address: IPAddress) -> str | None:
    """The class of address an http task may not reach by default, or None if public."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, inner = embedded
            inner_class = classify_address(inner)
            if inner_class is not None:
                return f"{kind} {inner_class}"
    checks: tuple[tuple[str, bool], ...] = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    return None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


class RefusedAddress(Exception):
    """The task's URL leads somewhere the policy forbids."""


@dataclass(frozen=True)
class Allowlist:
    """``policy.http_allowlist`` parsed: exact hostnames and networks."""

    hostnames: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> Allowlist:
        """Entries that parse as an address or CIDR are networks; the rest are hostnames."""
        hostnames: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            cleaned = entry.strip()
            if not cleaned:
                continue
            try:
                networks.append(ipaddress.ip_network(cleaned.strip("[]"), strict=False))
            except ValueError:
                hostnames.add(cleaned.lower().rstrip("."))
        return cls(frozenset(hostnames), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether the operator allows reaching ``address`` (resolved from ``host``)."""
        if address in METADATA_ADDRESSES:
            return any(net.num_addresses == 1 and address in net for net in self.networks)
        if host.lower().rstrip(".") in self.hostnames:
            return True
        return any(address in net for net in self.networks)


async def checked_addresses(
    host: str,
    port: int,
    allowlist: Allowlist,
    resolver: Resolver,
    *,
    allowlist_name: str = "this worker's http allowlist",
) -> list[str]:
    """The addresses ``host`` may be reached at, or :class:`RefusedAddress`.

    Refused when any address is forbidden and not allow-listed - a name that resolves to
    both a public and an internal address is refused as a whole.
    """
    literal = parse_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            resolved = await resolver(host, port)
        except OSError as exc:
            raise RefusedAddress(f"cannot resolve host {host!r}: {exc}") from exc
        addresses = []
        for raw in resolved:
            parsed = parse_ip(raw)
            if parsed is None:
                raise RefusedAddress(f"resolver returned a non-address for {host!r}: {raw!r}")
            addresses.append(parsed)
        if not addresses:
            raise RefusedAddress(f"host {host!r} resolves to no address")
    for address in addresses:
        refused_class = classify_address(address)
        if refused_class is not None and not allowlist.allows(host, address):
            raise RefusedAddress(
                f"refused to connect to {host!r}: it resolves to {address} "
                f"({refused_class} address), which {allowlist_name} does not allow"
            )
    return [str(address) for address in addresses]


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
