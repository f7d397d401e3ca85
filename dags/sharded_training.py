"""A pipeline over a dataset of any size, sharded: every step's memory stays flat as the data grows.

list_shards → ingest[shard] → stats (reduce) → featurize[shard] → split
    split → train_sgd (out of core, over every training shard) ─┐ each scores itself on the
    featurize → train_sample[candidate] (on a sample) ──────────┘ held-out shards → champion → score[shard]

The source is a folder (or ``s3://`` prefix) of Parquet shards; ``list_shards`` lists it when the run starts,
so the number of mapped instances follows the data, not the code. Each shard step streams record batches
(memory bounded by the batch, not the shard or the dataset); shard steps run on the default pool and
profile, the training steps on ``highmem``. ``sluice demo sharded_training`` makes a 200 k-row set first
(``python -m sluice_steps.synth``); a run whose source holds no shard fails at once naming that command;
``make bench-scale`` runs it at 20 M rows. docs/pipelines.md walks
through it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException
from fsspec.core import url_to_fs
from sluice.operators import MLStepOperator
from sluice.platform import sluice_home

SOURCE = str(Path(os.environ.get("SLUICE_DEMO_DATA") or sluice_home() / "demo-data") / "sharded")
STEP = ["sluice-step"]
CANDIDATES = [
    {"algorithm": "logistic_regression"},
    {"algorithm": "hist_gradient_boosting", "hyperparams": {"max_iter": 100}},
    {"algorithm": "random_forest"},
]
BATCH_ROWS = "{{ params.batch_rows }}"


def listed(values: Sequence[str]) -> list[str]:
    """A mapped task's outputs as a list, read by count and index: iterating Airflow's lazy XCom sequence reads
    one past the end, which it logs as an "XCom not found" error."""
    return [values[i] for i in range(len(values))]


with DAG(
    dag_id="sharded_training",
    description="Ingest, featurize, train out of core, evaluate and score a sharded dataset of any size",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "source": Param(SOURCE, type="string", description="folder or fsspec URI holding the *.parquet shards"),
        "holdout_fraction": Param(
            0.2, type="number", exclusiveMinimum=0, exclusiveMaximum=1, description="share of shards held out"
        ),
        "epochs": Param(1, type="integer", minimum=1, description="passes of the out-of-core model over the data"),
        "batch_rows": Param(65536, type="integer", minimum=1024, description="rows a step holds at a time"),
        "sample_rows": Param(50000, type="integer", minimum=100, description="rows the candidates train on"),
        "candidates": Param(CANDIDATES, type="array", minItems=1, description="[{algorithm, hyperparams}]"),
    },
    tags=["sluice", "example", "scale"],
) as dag:

    @task
    def list_shards(source: str) -> list[dict[str, str]]:
        """One ``{"shard": uri}`` per Parquet file under the source: what ingest is mapped over."""
        fs, path = url_to_fs(source)
        files = sorted(fs.glob(f"{path.rstrip('/')}/*.parquet"))
        if not files:  # a retry finds the same nothing: fail at once, saying how to make a set or point elsewhere
            raise AirflowFailException(
                f"no Parquet shards (*.parquet) under {source}: make a set there with "
                f"`python -m sluice_steps.synth {source} --rows 200000`, or point the run's 'source' param at a "
                'folder or fsspec URI of shards (trigger with config {"source": "..."})'
            )
        return [{"shard": fs.unstrip_protocol(file)} for file in files]

    @task
    def per_shard(clean: Sequence[str], stats: str) -> list[dict[str, str]]:
        return [{"clean": uri, "stats": stats} for uri in listed(clean)]

    @task(multiple_outputs=True)
    def split(shards: Sequence[str], holdout_fraction: float) -> dict[str, list[str]]:
        """The last shards are held out for evaluation; at least one each side."""
        features = listed(shards)
        if len(features) < 2:
            raise ValueError(
                f"{len(features)} shard(s): holding shards out needs at least 2; make more, smaller shards"
            )
        holdout = min(len(features) - 1, max(1, round(len(features) * holdout_fraction)))
        return {"train": features[:-holdout], "holdout": features[-holdout:]}

    @task
    def plan_candidates(candidates: list[dict[str, Any]], sample_rows: int) -> list[dict[str, Any]]:
        return [{**entry, "max_rows": sample_rows} for entry in candidates]

    @task
    def to_score(features: Sequence[str], model: str) -> list[dict[str, str]]:
        return [{"features": uri, "model": model} for uri in listed(features)]

    ingest = MLStepOperator.partial(
        task_id="ingest",
        image="ml-steps",
        command=[*STEP, "ingest_shard"],
        outputs={"clean": "clean.parquet", "stats": "stats.json"},
        step_params={"batch_rows": BATCH_ROWS},
        # Each shard is an input, fingerprinted by its bytes: a shard replaced under the same name runs again.
    ).expand(inputs=list_shards(source="{{ params.source }}"))
    stats = MLStepOperator(
        task_id="stats",
        image="ml-steps",
        command=[*STEP, "merge_stats"],
        inputs={"parts": ingest.output["stats"]},
        outputs={"stats": "stats.json"},
    )
    featurize = MLStepOperator.partial(
        task_id="featurize",
        image="ml-steps",
        command=[*STEP, "featurize_shard"],
        outputs={"features": "features.parquet", "sample": "sample.parquet"},
        step_params={"batch_rows": BATCH_ROWS, "sample_rows": "{{ params.sample_rows }}"},
    ).expand(inputs=per_shard(clean=ingest.output["clean"], stats=stats.output["stats"]))
    shards = split(shards=featurize.output["features"], holdout_fraction="{{ params.holdout_fraction }}")
    train_sgd = MLStepOperator(
        task_id="train_sgd",
        image="ml-steps",
        command=[*STEP, "train_sgd"],
        queue="highmem",
        profile="highmem",
        inputs={"shards": shards["train"], "holdout": shards["holdout"]},
        outputs={"model": "model.joblib", "evaluation": "evaluation.json"},
        step_params={"epochs": "{{ params.epochs }}", "batch_rows": BATCH_ROWS},
    )
    train_sample = MLStepOperator.partial(
        task_id="train_sample",
        image="ml-steps",
        command=[*STEP, "train_sample"],
        queue="highmem",
        profile="highmem",
        inputs={"sample": featurize.output["sample"], "holdout": shards["holdout"]},
        outputs={"model": "model.joblib", "evaluation": "evaluation.json"},
        retries=0,  # deterministic: a bad candidate fails once
    ).expand(step_params=plan_candidates(candidates="{{ params.candidates }}", sample_rows="{{ params.sample_rows }}"))
    champion = MLStepOperator(
        task_id="champion",
        image="ml-steps",
        command=[*STEP, "pick_champion"],
        inputs={"evaluations": [train_sgd.output["evaluation"], train_sample.output["evaluation"]]},
        outputs={"evaluation": "leaderboard.json", "model": "model.joblib"},
    )
    MLStepOperator.partial(
        task_id="score",
        image="ml-steps",
        command=[*STEP, "score_shard"],
        outputs={"scores": "scores.parquet"},
        step_params={"batch_rows": BATCH_ROWS},
    ).expand(inputs=to_score(features=featurize.output["features"], model=champion.output["model"]))
