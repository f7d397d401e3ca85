"""Partitioned tables under the artifact root: ``tables/{table}/…/{partition}/{file}.parquet``.

A partition's files are each replaced whole (temp + rename on a filesystem, one PUT on an object store),
so re-running an interval replaces its rows and never appends a second copy.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice_steps.contract import StepContext, StepError, atomic_write


def slot(value: str, minutes: int) -> datetime:
    """The start of the ``minutes``-long slot holding ``value`` (an ISO timestamp), in UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise StepError(f"param 'interval_start': {value!r} is not an ISO timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + timedelta(minutes=(moment - epoch) // timedelta(minutes=minutes) * minutes)


def slot_minutes(ctx: StepContext, default: int) -> int:
    minutes: int = ctx.param("interval_minutes", default)
    if minutes < 1 or 1440 % minutes:
        raise StepError(f"param 'interval_minutes' must divide a day (15, 60, 1440, ...), got {minutes}")
    return minutes


def partition_name(start: datetime, minutes: int) -> str:
    return f"ds={start:%Y-%m-%d}" if minutes == 1440 else f"interval={start:%Y-%m-%dT%H%M}"


def write_partition_file(ctx: StepContext, uri: str, frame: Any) -> str:
    """Replace one partition file atomically with ``frame``; returns its URI."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write(uri, buffer.getvalue())
    return uri
