"""Celery worker-side behaviour: scale-in that never kills a running task."""
