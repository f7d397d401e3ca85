"""Sluice's ML steps (ingest, join, validate, featurize, train, evaluate, champion, publish, batch, score,
features; and the sharded pipeline's ingest_shard, merge_stats, featurize_shard, train_sgd, train_sample,
pick_champion, score_shard, over data from ``synth``) under contract v1.

Runs unchanged as a pod, a local process or a local container; never imports Airflow.
"""

__version__ = "0.1.0"
