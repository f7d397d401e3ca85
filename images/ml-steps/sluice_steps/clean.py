"""Cleaning a raw shard, batch by batch: the one rule ingest_shard (statistics, validation) and featurize_shard
(features) both apply to the raw shard, so no cleaned copy is written between them.

Cleaning conforms each batch to ``RAW_SCHEMA`` (a column that does not fit fails, naming it), drops repeated ids
(the first row of an id, in file order, is kept: the same rows on every pass) and adds ``log_amount`` =
log1p(max(amount, 0)), null where the amount is (imputed at featurize, never taken for 0). Recomputing it costs
less than writing and reading back a float64 copy of the shard (measured: docs/pipelines.md, sharded_training).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice_steps.contract import StepError
from sluice_steps.shards import (
    BATCH_ROWS,
    ID,
    LABEL,
    LOG_SKEWED,
    RAW_SCHEMA,
    SKEWED,
    column_range,
    iter_batches,
    parquet_metadata,
)

CLEAN_SCHEMA = RAW_SCHEMA.append(pa.field(LOG_SKEWED, pa.float64()))


def conform(batch: pa.RecordBatch, uri: str) -> pa.RecordBatch:
    """The batch in the raw schema's column order and types, or a StepError naming what does not fit."""
    arrays = []
    for field in RAW_SCHEMA:
        column = batch.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise StepError(
                    f"input 'shard' ({uri}): column {field.name!r} is {column.type}, expected {field.type}"
                ) from None
        arrays.append(column)
    labels = arrays[RAW_SCHEMA.get_field_index(LABEL)]
    bad = pc.filter(labels, pc.invert(pc.is_in(labels, value_set=pa.array([0, 1], pa.int8()))))
    if len(bad) or labels.null_count:
        example = bad[0].as_py() if len(bad) else None
        raise StepError(f"input 'shard' ({uri}): column {LABEL!r} must be 0 or 1, found {example!r}")
    if arrays[RAW_SCHEMA.get_field_index(ID)].null_count:
        raise StepError(f"input 'shard' ({uri}): column {ID!r} has nulls; every row needs an id")
    return pa.RecordBatch.from_arrays(arrays, schema=RAW_SCHEMA)


class SeenIds:
    """The ids of a shard seen so far. A byte per id of the shard's id range when that range is compact (at
    most 4 ids per row: 1 MB for a million rows, no sorting); else a sorted array (8 bytes a row, plus the
    temporaries of merging it)."""

    def __init__(self, id_range: tuple[int, int] | None, rows: int) -> None:
        compact = id_range is not None and id_range[1] - id_range[0] + 1 <= 4 * max(rows, 1)
        self.low = id_range[0] if compact and id_range else 0
        self.flags = np.zeros(id_range[1] - id_range[0] + 1, dtype=bool) if compact and id_range else None
        self.sorted = np.empty(0, dtype=np.int64)

    def keep(self, ids: np.ndarray) -> np.ndarray:
        """Mask of the rows whose id is new (not seen before, first of its kind in this batch); marks them seen."""
        _, first = np.unique(ids, return_index=True)
        mask = np.zeros(len(ids), dtype=bool)
        mask[first] = True
        if self.flags is not None:
            mask &= ~self.flags[ids - self.low]
            self.flags[ids[mask] - self.low] = True
        else:
            mask &= ~np.isin(ids, self.sorted)
            self.sorted = np.union1d(self.sorted, ids[mask])
        return mask


def clean_batch(batch: pa.RecordBatch, seen: SeenIds, uri: str) -> pa.RecordBatch:
    """One raw batch conformed, its repeated ids dropped, with ``log_amount``: a batch of ``CLEAN_SCHEMA``."""
    batch = conform(batch, uri)
    batch = batch.filter(pa.array(seen.keep(batch.column(ID).to_numpy())))
    # skip_nulls=False: a missing amount stays missing (featurize imputes it like any feature) instead of
    # becoming max(null, 0) = 0, a made-up amount of 0.
    logged = pc.log1p(pc.max_element_wise(batch.column(SKEWED), 0.0, skip_nulls=False))
    return pa.RecordBatch.from_arrays([*batch.columns, logged], schema=CLEAN_SCHEMA)


def clean_batches(uri: str, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(raw rows read, clean batch) for each batch of a raw shard, streamed: memory is a batch plus the ids seen."""
    footer = parquet_metadata(uri)
    seen = SeenIds(column_range(footer, ID), footer.num_rows)
    for raw in iter_batches(uri, RAW_SCHEMA.names, batch_rows):
        yield raw.num_rows, clean_batch(raw, seen, uri)
