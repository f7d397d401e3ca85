"""What the KEDA operator does with the rendered ScaledObjects, done here: run each one's query.

The query text comes from the rendered ScaledObject (never from the ``sluice`` package), the connection from
the scale target's container env named by ``connectionFromEnv`` (resolved by the kubelet, as KEDA reads it).
Each sample also reads the raw queued/running rows in the same snapshot, so the query's value is checked
against a count made here in Python, not against itself.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import yaml

from tests.chart_runtime.install import Installed


@dataclass
class Trigger:
    pool: str
    queues: list[str]
    concurrency: int
    query: str
    connection: str


@dataclass
class Sample:
    at: float
    value: dict[str, float]  # pool -> the ScaledObject query's value
    expected: dict[str, int]  # pool -> ceil(rows on its queues, KubernetesExecutor excluded / concurrency)


@dataclass
class Sampler:
    """Polls every trigger once a second in a background thread while a run goes on."""

    triggers: list[Trigger]
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Sample:
        connection = psycopg2.connect(self.triggers[0].connection)
        try:
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with connection.cursor() as cur:
                value = {}
                for trigger in self.triggers:
                    cur.execute(trigger.query)
                    value[trigger.pool] = float(cur.fetchone()[0] or 0)
                cur.execute("SELECT queue, executor FROM task_instance WHERE state IN ('queued', 'running')")
                rows = cur.fetchall()
            connection.rollback()
        finally:
            connection.close()
        expected = {}
        for trigger in self.triggers:
            load = sum(1 for queue, executor in rows if queue in trigger.queues and executor != "KubernetesExecutor")
            expected[trigger.pool] = math.ceil(load / trigger.concurrency)
        return Sample(time.monotonic(), value, expected)

    def __enter__(self) -> Sampler:
        def loop() -> None:
            while not self._stop.wait(1.0):
                self.samples.append(self.sample())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def peak(self, pool: str) -> float:
        return max((s.value[pool] for s in self.samples), default=0.0)

    def mismatches(self) -> list[str]:
        return [
            f"t={s.at:.0f} {pool}: query {s.value[pool]} vs counted {s.expected[pool]}"
            for s in self.samples
            for pool in s.value
            if s.value[pool] != s.expected[pool]
        ]


def triggers(installed: Installed) -> list[Trigger]:
    """One Trigger per rendered ScaledObject, with its pool's queues and concurrency from platform.yaml."""
    platform_cm = installed.rendered("ConfigMap", "sluice-platform")
    pools = {p["name"]: p for p in yaml.safe_load(platform_cm["data"]["platform.yaml"])["pools"]}
    out = []
    for scaled in installed.objects.of_kind("ScaledObject"):
        pool = scaled["metadata"]["labels"]["sluice.io/pool"]
        trigger = scaled["spec"]["triggers"][0]
        assert trigger["type"] == "postgresql"
        target = installed.kubelet.pod_of(f"Deployment/{scaled['spec']['scaleTargetRef']['name']}")
        env = target.containers[0].env
        connection = env[trigger["metadata"]["connectionFromEnv"]]
        out.append(
            Trigger(pool, pools[pool]["queues"], pools[pool]["concurrency"], trigger["metadata"]["query"], connection)
        )
    return out
