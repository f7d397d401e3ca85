"""Pools without KEDA (`keda.enabled: false`): nothing idles, nothing hangs `helm install --wait`, nothing is lost.

An HPA cannot scale to zero (without the alpha HPAScaleToZero gate, and even then not on CPU), so a pool whose
`autoscaling.minReplicas` is 0 gets no HPA: its Deployment starts at 0 workers and is scaled by hand; an upgrade keeps
the count it finds. A pool that must keep a worker says so with `minReplicas: 1` (an HPA, 1..max).
"""

from __future__ import annotations

from pathlib import Path

from tests.chart.lookup_api import LookupApi
from tests.chart.render import by_kind, get, render_chart, render_notes

SHOW = ["templates/workers.yaml"]
NO_KEDA = {"keda": {"enabled": False}}


def deployment(docs: list[dict], pool: str) -> dict:
    return get(docs, "Deployment", f"sluice-worker-{pool}")


def autoscalers(docs: list[dict]) -> dict[str, dict]:
    return {
        d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    }


def test_a_pool_with_min_replicas_0_gets_no_hpa_and_starts_at_0_workers() -> None:
    """The default highmem (16Gi) and gpu pools: without KEDA they neither idle nor leave a GPU worker Pending."""
    docs = render_chart(NO_KEDA, show_only=SHOW)
    assert set(autoscalers(docs)) == {"sluice-worker-default"}
    for pool in ("highmem", "gpu"):
        assert deployment(docs, pool)["spec"]["replicas"] == 0, pool


def test_install_wait_has_no_worker_to_wait_for_but_the_pools_that_keep_one() -> None:
    """`helm install --wait` waits for each Deployment's replicas: 0 of 0 is ready at once. Only a pool whose
    autoscaler keeps a worker (minReplicas >= 1) starts one."""
    docs = render_chart(NO_KEDA, show_only=SHOW)
    scaled = autoscalers(docs)
    starting = {
        d["metadata"]["name"]
        for d in by_kind(docs, "Deployment")
        if d["spec"].get("replicas", 1) > 0 or d["metadata"]["name"] in scaled
    }
    assert starting == {"sluice-worker-default"}
    assert scaled["sluice-worker-default"]["spec"]["minReplicas"] == 1


def test_min_replicas_1_is_the_per_pool_choice_of_an_hpa_that_keeps_a_worker() -> None:
    pools = [{"name": "gpu", "queues": ["gpu"], "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}]
    docs = render_chart({**NO_KEDA, "pools": pools}, show_only=SHOW)
    hpa = autoscalers(docs)["sluice-worker-gpu"]
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert "replicas" not in deployment(docs, "gpu")["spec"], "the HPA owns the count"


def test_with_keda_a_min_replicas_0_pool_still_scales_from_zero_on_its_own() -> None:
    docs = render_chart(show_only=SHOW)
    assert autoscalers(docs)["sluice-worker-gpu"]["spec"]["minReplicaCount"] == 0
    assert "replicas" not in deployment(docs, "gpu")["spec"], "KEDA owns the count"


def test_a_pool_without_autoscaling_keeps_its_fixed_count_with_or_without_keda() -> None:
    pools = [{"name": "p", "queues": ["q"], "autoscaling": {"enabled": False, "minReplicas": 0}}]
    for values in ({"pools": pools}, {**NO_KEDA, "pools": pools}):
        docs = render_chart(values, show_only=SHOW)
        assert [d["kind"] for d in docs] == ["Deployment"] and docs[0]["spec"]["replicas"] == 0


def scaled_by_hand(deployment: dict, replicas: int) -> dict:
    """The Deployment as `kubectl scale --replicas=N` leaves it in the cluster."""
    return {**deployment, "spec": {**deployment["spec"], "replicas": replicas}}


def test_an_upgrade_keeps_the_count_someone_scaled_the_pool_to(tmp_path: Path) -> None:
    """Helm (3 and 4) sets every field it renders: a rendered `replicas: 0` would scale a busy GPU pool back to zero on
    every upgrade (a step image bump included). The chart renders the count it finds instead."""
    install = render_chart(NO_KEDA)
    with LookupApi.for_render(install) as api:
        api.store(scaled_by_hand(deployment(install, "gpu"), 2))
        upgrade = api.render(tmp_path, NO_KEDA)
    assert deployment(upgrade, "gpu")["spec"]["replicas"] == 2
    assert deployment(upgrade, "highmem")["spec"]["replicas"] == 0, "a pool not found in the cluster starts at 0"
    assert "sluice-worker-gpu" not in autoscalers(upgrade)


def test_a_render_without_a_cluster_starts_every_hand_scaled_pool_at_0() -> None:
    """`helm template` (Argo CD) cannot look: 0. docs/operations.md says how Argo CD users keep a hand-scaled count."""
    docs = render_chart(NO_KEDA, show_only=SHOW, upgrade=True)
    assert [deployment(docs, p)["spec"]["replicas"] for p in ("highmem", "gpu")] == [0, 0]


def test_notes_say_how_to_scale_such_a_pool_and_what_its_queued_tasks_do() -> None:
    notes = render_notes(NO_KEDA)
    assert "kubectl -n ml scale deployment/sluice-worker-gpu --replicas=1   (at most 2;" in notes
    assert "kubectl -n ml scale deployment/sluice-worker-highmem --replicas=1" in notes
    assert "kubectl -n ml scale deployment/sluice-worker-default" not in notes, "the default pool has an HPA"
    assert "Tasks routed to highmem, gpu wait `queued` until that pool has a worker" in notes
    assert "fails it\nthe third time (after about 1800 s)" in notes
    assert "scaled by hand" not in render_notes(), "with KEDA every pool scales itself"


def test_parallelism_counts_a_hand_scaled_pool_at_its_max_replicas() -> None:
    """Scaled by hand up to autoscaling.maxReplicas (what NOTES.txt says), its slots must not wait `scheduled`."""
    assert "[core] parallelism: 54 per scheduler" in render_notes(NO_KEDA)
