"""Which addresses a task may not reach by default: the http guard's classes, also used to
build the sandbox's network rules (:mod:`worker.sandbox.net`). Defined in
:mod:`kernel.egress`, which the platform's own outbound deliveries use too."""

from __future__ import annotations

from kernel.egress import CGNAT, METADATA_ADDRESSES, NAT64, IPAddress, classify_address

__all__ = ["CGNAT", "METADATA_ADDRESSES", "NAT64", "IPAddress", "classify_address"]
