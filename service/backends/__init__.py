"""Where the gateway's jobs go: `build_backend` picks the embedded batcher or Redis + Celery.

`contract` holds what both implement (`Backend`, `JobView`); `embedded` and `redis_celery` are
the two implementations.
"""

from __future__ import annotations

from service.backends.contract import Backend, JobView
from service.settings import Settings

__all__ = ["Backend", "JobView", "build_backend"]


def build_backend(settings: Settings) -> Backend:
    """The embedded backend without Redis, the Redis/Celery one with it."""
    if settings.embedded:
        from service.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(settings)
    from service.backends.redis_celery import RedisBackend  # only Redis mode needs redis and celery

    return RedisBackend(settings)
