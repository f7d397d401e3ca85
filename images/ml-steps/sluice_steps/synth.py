"""A tabular classification set of any size, generated (never downloaded), as Parquet shards.

    python -m sluice_steps.synth DEST --rows 200000 --shard-rows 50000 [--seed 7]

DEST is a directory or an fsspec URI (``s3://bucket/data/set``). Deterministic: a shard's rows depend only on
the seed and its index, so any shard can be (re)made alone and a re-run writes the same bytes. Messy the way
real exports are: 16 correlated numeric features on different scales, nulls (f03 2 %, f07 5 %, amount 3 %,
region 1 %), a skewed amount (log-normal), a categorical region with a Zipf-like long tail, and ~0.5 % of
rows repeated within their shard (same id: what ingest de-duplicates). The label follows a logistic model of
the features, the amount and the region, so a model has something to learn.

Shards are ``part-00000.parquet`` …; ``_manifest.json`` is written last, so a half-generated set is never
taken for a complete one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from sluice_steps.contract import atomic_open, atomic_write
from sluice_steps.shards import BATCH_ROWS, CATEGORY, FEATURES, ID, LABEL, RAW_SCHEMA, SKEWED, parquet_writer

REGIONS = [f"r{i:02d}" for i in range(12)]
MANIFEST = "_manifest.json"
NULL_RATES = {"f03": 0.02, "f07": 0.05, SKEWED: 0.03, CATEGORY: 0.01}
DUPLICATE_RATE = 0.005


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _model(seed: int) -> dict[str, np.ndarray]:
    """The set's fixed structure (same for every shard): mixing matrix, scales, offsets, label weights."""
    rng = np.random.default_rng([seed, 2**31])
    width = len(FEATURES)
    return {
        "mix": np.tril(rng.normal(0, 0.5, (width, width))) + np.eye(width),
        "scale": 10.0 ** rng.uniform(-1, 2, width),
        "offset": rng.uniform(-50, 50, width),
        "weights": rng.normal(0, 1, width) * (rng.random(width) < 0.6),
        "region_p": (p := 1 / np.arange(1, len(REGIONS) + 1) ** 1.2) / p.sum(),
        "region_effect": rng.normal(0, 0.8, len(REGIONS)),
    }


def batch(seed: int, shard: int, start: int, rows: int, first_id: int, model: dict[str, np.ndarray]) -> pa.Table:
    """Rows ``start`` … ``start + rows`` of one shard."""
    rng = np.random.default_rng([seed, shard, start])
    z = rng.standard_normal((rows, len(FEATURES)))
    latent = z @ model["mix"].T
    features = latent * model["scale"] + model["offset"]
    region = rng.choice(len(REGIONS), size=rows, p=model["region_p"])
    amount = rng.lognormal(mean=3.0, sigma=1.2, size=rows)
    logit = (
        latent @ model["weights"] / math.sqrt(len(FEATURES))
        + model["region_effect"][region]
        + 0.4 * (np.log1p(amount) - 3)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    ids = np.arange(first_id + start, first_id + start + rows, dtype=np.int64)
    # Repeated rows: copies of other rows of this batch, id and all.
    copies = np.flatnonzero(rng.random(rows) < DUPLICATE_RATE)
    sources = rng.integers(0, rows, size=len(copies))
    for array in (features, region, amount, label, ids):
        array[copies] = array[sources]
    columns: dict[str, Any] = {
        ID: pa.array(ids),
        CATEGORY: pa.array(
            np.array(REGIONS, dtype=object)[region], pa.string(), mask=rng.random(rows) < NULL_RATES[CATEGORY]
        ),
        SKEWED: pa.array(amount, mask=rng.random(rows) < NULL_RATES[SKEWED]),
    }
    for i, name in enumerate(FEATURES):
        rate = NULL_RATES.get(name)
        columns[name] = pa.array(features[:, i], mask=rng.random(rows) < rate if rate else None)
    columns[LABEL] = pa.array(label)
    return pa.table(columns, schema=RAW_SCHEMA)


def write_shard(dest: str, seed: int, shard: int, rows: int, first_id: int) -> str:
    """One shard, written batch by batch (memory bounded by the batch) and landed atomically."""
    uri = f"{dest.rstrip('/')}/{shard_name(shard)}"
    model = _model(seed)
    with atomic_open(uri) as handle, parquet_writer(handle, RAW_SCHEMA) as writer:
        for start in range(0, rows, BATCH_ROWS):
            writer.write_table(batch(seed, shard, start, min(BATCH_ROWS, rows - start), first_id, model))
    return uri


def read_manifest(dest: str) -> dict[str, Any] | None:
    try:
        with fsspec.open(f"{dest.rstrip('/')}/{MANIFEST}", "r") as handle:
            manifest: dict[str, Any] = json.load(handle)
            return manifest
    except FileNotFoundError:
        return None


def generate(dest: str, rows: int, shard_rows: int, seed: int = 7) -> dict[str, Any]:
    """The whole set; a set already at ``dest`` with the same figures is kept (generating is the slow part)."""
    if rows < 1 or shard_rows < 1:
        raise ValueError(f"rows ({rows}) and shard rows ({shard_rows}) must be at least 1")
    wanted = {"rows": rows, "shard_rows": shard_rows, "seed": seed}
    manifest = read_manifest(dest)
    if manifest is not None and {k: manifest.get(k) for k in wanted} == wanted:
        return manifest
    shards = math.ceil(rows / shard_rows)
    for shard in range(shards):
        write_shard(dest, seed, shard, min(shard_rows, rows - shard * shard_rows), shard * shard_rows)
    manifest = {
        **wanted,
        "shards": shards,
        "files": [shard_name(i) for i in range(shards)],
        "columns": RAW_SCHEMA.names,
    }
    atomic_write(f"{dest.rstrip('/')}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice_steps.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", help="directory or fsspec URI to write the shards to")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        manifest = generate(args.dest, args.rows, args.shard_rows, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"{manifest['rows']} rows in {manifest['shards']} shards at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
