"""What the fault trials count, from the records each try of ``probe_ledger`` writes (dags/stack_probes.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ledger:
    tasks: int  # tasks the run had
    lost: int  # tasks no try of which ran to the end
    duplicated: int  # tasks more than one try of which ran to the end
    overlapped: int  # tries that started while an earlier try of the same task was still alive
    tries: int  # tries that started, in all

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.overlapped == 0


def read_ledger(folder: Path, tasks: int) -> Ledger:
    records = {
        index: [json.loads(line) for line in (folder / f"{index}.jsonl").read_text().splitlines()]
        if (folder / f"{index}.jsonl").exists()
        else []
        for index in range(tasks)
    }
    ends = {index: sum(r["event"] == "end" for r in rs) for index, rs in records.items()}
    starts = [r for rs in records.values() for r in rs if r["event"] == "start"]
    return Ledger(
        tasks=tasks,
        lost=sum(count == 0 for count in ends.values()),
        duplicated=sum(count > 1 for count in ends.values()),
        overlapped=sum(bool(r["earlier_alive"]) for r in starts),
        tries=len(starts),
    )
