"""Failed-login throttling per account and per client address, counted in Redis.

A fixed window per key: the first failure starts the window (``EXPIRE``), each further
failure increments. While a counter is at its limit every attempt is refused with 429,
before the password is even checked, so guessing costs the attacker the whole window.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.core.errors import RateLimited, ServiceUnavailable
from backend.core.settings import Settings
from kernel.wire import keys


class LoginThrottle:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    def _limits(self, email: str, ip: str | None) -> list[tuple[str, int]]:
        limits = [
            (keys.login_failures_account(email), self.settings.login_max_failures_per_account)
        ]
        if ip:
            limits.append((keys.login_failures_ip(ip), self.settings.login_max_failures_per_ip))
        return limits

    async def check(self, email: str, ip: str | None) -> None:
        """Raise ``RateLimited`` while the account or the address is over its limit."""
        limits = self._limits(email, ip)
        try:
            counts = await self.redis.mget([key for key, _ in limits])
            for (key, limit), count in zip(limits, counts, strict=True):
                if count is not None and int(count) >= limit:
                    ttl = await self.redis.ttl(key)
                    raise RateLimited(
                        "Too many failed logins; try again later",
                        retry_after=max(int(ttl), 1),
                    )
        except RedisError as error:
            raise ServiceUnavailable("Login is unavailable: Redis did not answer") from error

    async def record_failure(self, email: str, ip: str | None) -> None:
        window = self.settings.login_failure_window_seconds
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, _ in self._limits(email, ip):
                    # SET NX EX starts the window once; INCR counts within it. (EXPIRE NX
                    # would do both but needs Redis 7, and the embedded server is 6.2.)
                    pipe.set(key, 0, ex=window, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except RedisError as error:
            raise ServiceUnavailable("Login is unavailable: Redis did not answer") from error

    async def clear_account(self, email: str) -> None:
        try:
            await self.redis.delete(keys.login_failures_account(email))
        except RedisError as error:
            raise ServiceUnavailable("Login is unavailable: Redis did not answer") from error
