"""Wait for a condition, within a bound: never a fixed sleep, which flakes on a loaded machine or passes by luck."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], what: str, timeout: float = 30, every: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``
    seconds (a last call is made at the bound)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
