"""The local distributed stack: real Airflow components, PostgreSQL, Redis and one Celery worker per pool.

``sluice up`` / ``sluice status`` / ``sluice down``. Pools come from the same platform definition the chart
renders (``SLUICE_PLATFORM_FILE`` or the chart's own values), so the laptop and the cluster agree.
"""

from sluice.stack.errors import StackError

__all__ = ["StackError"]
