"""Redis client factory. One client per process, created in the app lifespan."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    # decode_responses: every payload Baton keeps in Redis is JSON text, never pickle.
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)
