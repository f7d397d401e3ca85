"""A throwaway Redis per test (pytest-redis) for the real Celery workers these tests start."""

from __future__ import annotations

import pytest
from pytest_redis import factories

redis_server = factories.redis_proc(port=None)


@pytest.fixture
def redis_url(redis_server) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"
