"""The sandbox's network: user-mode egress (slirp4netns) to public IPv4 addresses only.

slirp4netns gives the task's network namespace a ``tap0`` with a default route through a
user-mode TCP/IP stack that opens ordinary sockets on the worker's host, so by itself it
would forward to *any* address the worker can reach: its loopback (``--disable-host-loopback``
closes the 10.0.2.2 alias of it), PostgreSQL or Redis on a private network, the cloud
metadata service. Before the task's command starts, an iptables ruleset is loaded into the
task's namespace (from outside it; the task has no capability over it) that rejects every
destination that is not public - the same notion of "public" as http tasks
(:func:`worker.addresses.classify_address`), computed from it. Only the namespace's own
loopback and DNS to slirp's forwarder (10.0.2.3, port 53) are allowed besides. IPv6 is not
enabled: the task has no IPv6 route at all.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from worker.addresses import classify_address

TAP = "tap0"
MTU = 65520
SLIRP_DNS = "10.0.2.3"

# IANA's special-purpose IPv4 registry, with multicast and the reserved 240/4 - every range
# that may hold a non-public address. Small ones are checked address by address against
# classify_address (some hold globally reachable exceptions); a large one whose two ends are
# non-public is taken whole (the tests sample inside), else split in halves.
_CANDIDATES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
_EXACT_PREFIX = 24


@cache
def blocked_networks() -> tuple[ipaddress.IPv4Network, ...]:
    """Every IPv4 network the sandbox rejects: exactly the non-public ones of http tasks."""
    blocked: list[ipaddress.IPv4Network] = []
    for text in _CANDIDATES:
        blocked.extend(_non_public(ipaddress.IPv4Network(text)))
    return tuple(ipaddress.collapse_addresses(blocked))


def _non_public(network: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    if network.prefixlen >= _EXACT_PREFIX:
        hosts = [ipaddress.IPv4Network(a) for a in network if classify_address(a) is not None]
        return list(ipaddress.collapse_addresses(hosts))
    if all(classify_address(end) is not None for end in (network[0], network[-1])):
        return [network]
    return [part for half in network.subnets(1) for part in _non_public(half)]


def is_blocked(address: ipaddress.IPv4Address) -> bool:
    """Whether the sandbox's filter rejects ``address``."""
    return any(address in network for network in blocked_networks())


def iptables_rules() -> str:
    """The ruleset (``iptables-restore`` input) loaded into each task's network namespace."""
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A OUTPUT -o lo -j ACCEPT",
        f"-A OUTPUT -o {TAP} -d {SLIRP_DNS}/32 -p udp --dport 53 -j ACCEPT",
        f"-A OUTPUT -o {TAP} -d {SLIRP_DNS}/32 -p tcp --dport 53 -j ACCEPT",
    ]
    lines += [
        f"-A OUTPUT -d {network} -j REJECT --reject-with icmp-net-prohibited"
        for network in blocked_networks()
    ]
    # Anything else that is not plain public IPv4 over tap0 (there is nothing else today).
    lines += [f"-A OUTPUT ! -o {TAP} -j REJECT --reject-with icmp-net-prohibited", "COMMIT", ""]
    return "\n".join(lines)


def slirp_argv(
    slirp: str, netns_path: str, *, ready_fd: int, exit_fd: int, userns: str | None = None
) -> list[str]:
    """slirp4netns for one task's namespace (it exits when ``exit_fd``'s writer closes).

    ``userns``: the namespace's user namespace, which a worker that is not root must join
    (slirp4netns's own mount-namespace sandbox needs root there, which it is not then).
    """
    return [
        slirp,
        *([f"--userns-path={userns}"] if userns else ["--enable-sandbox"]),
        "--configure",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        "--enable-seccomp",
        f"--ready-fd={ready_fd}",
        f"--exit-fd={exit_fd}",
        "--netns-type=path",
        netns_path,
        TAP,
    ]
