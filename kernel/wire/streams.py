"""Redis Streams helpers shared by the engine and the workers."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists.

    Called again whenever a read answers NOGROUP: a Redis restart without persistence
    deletes streams and their groups, and readers must recreate them, not crash-loop.
    """
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def is_nogroup(error: ResponseError) -> bool:
    return str(error).startswith("NOGROUP")


def as_text(value: bytes | str) -> str:
    """Redis replies are ``str`` with ``decode_responses``; the type stubs cannot know it."""
    return value.decode() if isinstance(value, bytes) else value
