"""The docs say what the code does, and point only at files in this repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Notes kept beside a checkout (e.g. a shared FACTS page) are not part of the repository: never cite them.
OUTSIDE = re.compile(r"\bFACTS\b|\.\./shared/|/work/shared")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in out.stdout.split("\0") if name and (REPO / name).is_file()]


def test_no_source_or_doc_cites_a_file_outside_the_repository() -> None:
    here = Path(__file__).resolve()
    files = [p for p in tracked("*.md", "*.py", "*.yaml", "*.tpl", "*.txt", "Makefile") if p.resolve() != here]
    # tracked() lists committed files; the new ones of a working tree count too
    files += [p for p in (REPO / "tests").rglob("*.py") if p not in files and p.resolve() != here]
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []


def test_every_markdown_link_resolves_to_a_file_in_the_repository() -> None:
    broken = []
    for doc in tracked("*.md"):
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert broken == []


def test_every_variable_the_step_contract_documents_is_set_by_the_launchers() -> None:
    """docs/step-contract.md's table of what the launcher gives the step is what sluice.contract.step_env sets
    (both launchers pass it), and every SLUICE_* variable the step side reads is in that table."""
    from sluice.contract import step_env

    doc = (REPO / "docs" / "step-contract.md").read_text()
    table = doc.split("## What the launcher gives the step (environment)", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\| `(SLUICE_[A-Z_]+)` \|", table, flags=re.M))
    assert documented == set(step_env({}, {}, {}, "/a/d/r/t", root="/a"))
    step_side = (REPO / "images" / "ml-steps" / "sluice_steps" / "contract.py").read_text()
    assert set(re.findall(r"\"(SLUICE_[A-Z_]+)\"", step_side)) <= documented


def test_the_scaling_bench_figures_say_how_many_polls_the_bench_makes() -> None:
    bench = (REPO / "bench" / "scaling_query.py").read_text()
    repeats = re.search(r'"--repeats", type=int, default=(\d+)', bench).group(1)  # type: ignore[union-attr]
    ticks = re.search(r'"--ticks", type=int, default=(\d+)', bench).group(1)  # type: ignore[union-attr]
    doc = (REPO / "docs" / "performance.md").read_text()
    section = " ".join(doc.split("## The per-pool scaling query", 1)[1].split())
    assert f"({repeats} polls per pool and query)" in section
    assert f"**end of day**: {repeats} polls" in section
    assert f"in {ticks} ticks" in section and f"({ticks} polls each)" in section


def test_the_worst_case_for_a_killed_workers_task_adds_up() -> None:
    """operations.md: heartbeat timeout (values) + Airflow's detection interval, plus retry_delay."""
    from airflow.configuration import conf

    timeout = yaml.safe_load((REPO / "charts" / "sluice" / "values.yaml").read_text())["recovery"][
        "taskInstanceHeartbeatTimeout"
    ]
    detection = int(float(conf.get_default_value("scheduler", "task_instance_heartbeat_timeout_detection_interval")))
    retry = int(conf.get_default_value("core", "default_task_retry_delay"))
    total = timeout + detection
    doc = " ".join((REPO / "docs" / "operations.md").read_text().split())
    assert f"({timeout} s heartbeat timeout, Airflow's {detection} s detection interval)" in doc
    assert f"about {total // 60} min {total % 60} s plus `retry_delay`" in doc
    assert f"which is Airflow's {retry // 60} minutes" in doc
    assert f"about {(total + retry) // 60} min {(total + retry) % 60} s in all" in doc
