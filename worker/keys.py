"""Every Redis key name Baton uses, in one place.

Tenant keys look like ``baton:{<tenant_id>}:...``: the braces are a Redis Cluster hash
tag, so one tenant's keys share a slot while tenants spread over the cluster.
"""

from __future__ import annotations

import hashlib

PREFIX = "baton"


def _digest(value: str) -> str:
    # Hash free-form input (emails, addresses) so key names stay short and carry no PII.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def login_failures_account(email: str) -> str:
    """Counter of failed logins for one account (email), expiring with its window."""
    return f"{PREFIX}:auth:fail:acct:{_digest(email.lower())}"


def login_failures_ip(ip: str) -> str:
    """Counter of failed logins from one client address."""
    return f"{PREFIX}:auth:fail:ip:{_digest(ip)}"


def revoked_access_token(jti: str) -> str:
    """Marks a logged-out access token until it would have expired anyway."""
    return f"{PREFIX}:auth:revoked:{jti}"
