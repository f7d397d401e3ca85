"""The demo's two sources, made from the breast-cancer dataset scikit-learn ships (no download).

A CSV file with ``id`` + the "mean"/"error" measurements, and a SQLite table ``measurements`` with ``id``
+ the "worst" measurements + ``target``: the example pipeline ingests both and joins them on ``id``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import uuid
from pathlib import Path


def write_demo_sources(directory: str | os.PathLike[str]) -> dict[str, str]:
    from sklearn.datasets import load_breast_cancer

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "id", range(1, len(frame) + 1))
    worst = [c for c in frame.columns if c.startswith("worst ")]
    first = frame.drop(columns=[*worst, "target"])
    second = frame[["id", *worst, "target"]]

    csv_path = folder / "measurements.csv"
    tmp = folder / f".measurements.csv.tmp-{uuid.uuid4().hex}"
    first.to_csv(tmp, index=False)
    tmp.replace(csv_path)

    db_path = folder / "measurements.db"
    tmp_db = folder / f".measurements.db.tmp-{uuid.uuid4().hex}"
    with sqlite3.connect(tmp_db) as conn:
        second.to_sql("measurements", conn, index=False)
    tmp_db.replace(db_path)
    return {
        "csv": str(csv_path),
        "sql_url": f"sqlite:///{db_path}",
        "sql_query": "SELECT * FROM measurements",
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sluice_steps.demo_data DIRECTORY")
    print(json.dumps(write_demo_sources(sys.argv[1]), indent=2))
