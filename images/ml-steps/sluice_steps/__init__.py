"""Sluice's ML steps (ingest, join, validate, featurize, train, evaluate, champion, publish, batch, score,
features) under contract v1.

Runs unchanged as a pod, a local process or a local container; never imports Airflow.
"""

__version__ = "0.1.0"
