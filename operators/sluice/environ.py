"""Environment variables set for one block of code, then put back as they were (unset ones unset again).

Airflow reads much of its configuration from ``AIRFLOW__*`` variables when it is asked, not once: setting them
around a call is how ``sluice check`` parses DAGs for another target and how the embedded run configures the
executor processes it forks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ while inside; afterwards each name has its old value again, or none."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
