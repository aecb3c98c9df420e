"""The Redis client of every Baton process (one per process), and what production asks of
its URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError


def _retryable(error: Exception) -> bool:
    # A refused login (a revoked or expired worker credential, a wrong password) never
    # succeeds on a retry: fail at once instead of after seconds of backoff.
    return not isinstance(error, AuthenticationError)


def create_redis(url: str) -> Redis:
    # decode_responses: every payload Baton keeps in Redis is JSON text, never pickle.
    # The retry policy is redis-py's default (10 tries, 10 ms to 1 s backoff) but for logins.
    retry = Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=1), retries=10, is_retryable=_retryable
    )
    return Redis.from_url(url, decode_responses=True, health_check_interval=30, retry=retry)


def redis_authenticated(url: str | None) -> bool:
    """True when ``url`` names a password (a Redis ACL user), or when nothing is configured
    (the process then fails on the missing URL itself): what production requires."""
    if url is None:
        return True
    return bool(urlsplit(url).password)
