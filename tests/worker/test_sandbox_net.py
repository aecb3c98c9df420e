"""The sandbox's network filter and the http executor agree on what a public address is."""

from __future__ import annotations

import ipaddress
import random

from worker.addresses import classify_address
from worker.sandbox import net


def test_blocked_networks_are_exactly_the_non_public_addresses() -> None:
    rng = random.Random(20261205)
    samples = [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(50_000)]
    for network in net.blocked_networks():
        # Both ends of every blocked network and the addresses just outside it.
        first, last = int(network[0]), int(network[-1])
        samples += [ipaddress.IPv4Address(n) for n in (first, last) if 0 <= n < 2**32]
        samples += [ipaddress.IPv4Address(n) for n in (first - 1, last + 1) if 0 <= n < 2**32]
    for name in ("169.254.169.254", "127.0.0.1", "10.0.2.2", "10.0.2.3", "100.64.0.1", "8.8.8.8"):
        samples.append(ipaddress.IPv4Address(name))
    disagreements = [
        address
        for address in samples
        if net.is_blocked(address) != (classify_address(address) is not None)
    ]
    assert disagreements == []


def test_the_ruleset_rejects_every_blocked_network() -> None:
    rules = net.iptables_rules()
    for network in net.blocked_networks():
        assert f"-A OUTPUT -d {network} -j REJECT" in rules
    assert "169.254.0.0/16" in rules  # the cloud metadata service among them
    # DNS to slirp's forwarder is the one non-public destination let through.
    assert f"-d {net.SLIRP_DNS}/32 -p udp --dport 53 -j ACCEPT" in rules
