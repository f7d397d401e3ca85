"""A pipeline over a dataset of any size, sharded: every step's memory stays flat as the data grows.

list_shards → ingest[shard] → split → stats (reduce, training shards) → featurize[shard] → roles
    roles → train_sgd (out of core, over every training shard) ─┐ each scores itself on the
    roles → train_sample[candidate] (on a sample) ──────────────┘ held-out shards → champion → score[shard]

The held-out shards are chosen once (``split``, before anything is learnt): the statistics come from the training
shards only and a held-out shard draws no sample, so no held-out row reaches a training step. ``ingest`` validates
each raw shard and outputs its statistics only; ``featurize`` reads the raw shard again and cleans it by the same
rule (``sluice_steps.clean``), which costs less than writing a clean copy and reading it back.

The source is a folder (or ``s3://`` prefix) of Parquet shards; ``list_shards`` lists it when the run starts,
so the number of mapped instances follows the data, not the code. Each shard step streams record batches
(memory bounded by the batch, not the shard or the dataset); shard steps run on the default pool and
profile, the training steps on ``highmem``. ``sluice demo sharded_training`` makes a 200 k-row set first
(``python -m sluice_steps.synth``); a run whose source holds no shard fails at once naming that command;
``make bench-scale`` runs it at 20 M rows. docs/pipelines.md walks
through it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException
from fsspec.core import url_to_fs
from sluice.demo import Example, data_dir
from sluice.operators import MLStepOperator

SOURCE = str(data_dir() / "sharded")
# The demo set: 200 k rows in 4 shards.
DEMO_ROWS, DEMO_SHARD_ROWS = 200_000, 50_000


def make_shards(folder: Path) -> None:
    """The demo set under ``folder/sharded``, generated (nothing downloaded) by `python -m sluice_steps.synth`,
    which keeps a set that already has these figures."""
    argv = [sys.executable, "-m", "sluice_steps.synth", str(folder / "sharded")]
    argv += ["--rows", str(DEMO_ROWS), "--shard-rows", str(DEMO_SHARD_ROWS)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


# What `sluice demo` does before running this DAG (sluice.demo): make the shards its source param points at.
EXAMPLE = Example(prepare=make_shards)
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

    @task(multiple_outputs=True)
    def split(shards: Sequence[dict[str, str]], parts: Sequence[str], holdout_fraction: float) -> dict[str, list[Any]]:
        """The last shards are held out for evaluation, at least one each side: each raw shard (ingest validated
        it; featurize cleans it again by the same rule, so no clean copy is kept) with its role, and the statistics
        of the training shards (what the features' transform and the sample are drawn from). ``parts`` is ingest's
        stats, in ``shards``' order (ingest is mapped over them)."""
        raw, stats = [entry["shard"] for entry in listed(shards)], listed(parts)
        if len(raw) < 2:
            raise ValueError(f"{len(raw)} shard(s): holding shards out needs at least 2; make more, smaller shards")
        if len(stats) != len(raw):
            raise ValueError(f"{len(raw)} shards but {len(stats)} statistics: ingest ran over another listing")
        train = len(raw) - min(len(raw) - 1, max(1, round(len(raw) * holdout_fraction)))
        return {
            "shards": [{"shard": uri, "held_out": index >= train} for index, uri in enumerate(raw)],
            "train_parts": stats[:train],
        }

    @task
    def per_shard(shards: list[dict[str, Any]], stats: str, batch_rows: int, sample_rows: int) -> list[dict[str, Any]]:
        """featurize's arguments per shard: a held-out shard draws no sample."""
        return [
            {
                "inputs": {"shard": shard["shard"], "stats": stats},
                "step_params": {"batch_rows": batch_rows, "sample_rows": sample_rows, "held_out": shard["held_out"]},
            }
            for shard in shards
        ]

    @task(multiple_outputs=True)
    def roles(shards: list[dict[str, Any]], features: Sequence[str], samples: Sequence[str]) -> dict[str, list[str]]:
        """The featurized shards by role (featurize maps over ``shards`` in order): what each training step reads."""
        held_out = [shard["held_out"] for shard in shards]
        features, samples = listed(features), listed(samples)
        return {
            "train": [uri for uri, out in zip(features, held_out, strict=True) if not out],
            "holdout": [uri for uri, out in zip(features, held_out, strict=True) if out],
            "samples": [uri for uri, out in zip(samples, held_out, strict=True) if not out],
        }

    @task
    def plan_candidates(candidates: list[dict[str, Any]], sample_rows: int) -> list[dict[str, Any]]:
        return [{**entry, "max_rows": sample_rows} for entry in candidates]

    @task
    def to_score(features: Sequence[str], model: str) -> list[dict[str, str]]:
        return [{"features": uri, "model": model} for uri in listed(features)]

    sources = list_shards(source="{{ params.source }}")
    ingest = MLStepOperator.partial(
        task_id="ingest",
        image="ml-steps",
        command=[*STEP, "ingest_shard"],
        outputs={"stats": "stats.json"},  # no clean copy: featurize re-cleans the raw shard
        step_params={"batch_rows": BATCH_ROWS},
        # Each shard is an input, fingerprinted by its bytes: a shard replaced under the same name runs again.
    ).expand(inputs=sources)
    split_shards = split(shards=sources, parts=ingest.output["stats"], holdout_fraction="{{ params.holdout_fraction }}")
    stats = MLStepOperator(
        task_id="stats",
        image="ml-steps",
        command=[*STEP, "merge_stats"],
        inputs={"parts": split_shards["train_parts"]},
        outputs={"stats": "stats.json"},
    )
    featurize = MLStepOperator.partial(
        task_id="featurize",
        image="ml-steps",
        command=[*STEP, "featurize_shard"],
        outputs={"features": "features.parquet", "sample": "sample.parquet"},
    ).expand_kwargs(
        per_shard(
            shards=split_shards["shards"],
            stats=stats.output["stats"],
            batch_rows=BATCH_ROWS,
            sample_rows="{{ params.sample_rows }}",
        )
    )
    shards = roles(
        shards=split_shards["shards"], features=featurize.output["features"], samples=featurize.output["sample"]
    )
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
        inputs={"sample": shards["samples"], "holdout": shards["holdout"]},
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
