"""The chart, installed once for this directory (``install.install``) and proven by its tests.

``make chart-smoke`` runs this directory; the table at the end says what each test proved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.chart_runtime.install import Installed, install
from tests.support.s3 import moto_s3


@pytest.fixture(scope="package")
def s3_endpoint() -> Iterator[str]:
    """One S3 server for the installation (see tests.support.s3)."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def installed(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The chart with its default values: the bundled PostgreSQL, Redis and statsd exporter are its own pods."""
    with install(s3_endpoint, tmp_path_factory.mktemp("chart-runtime")) as cluster:
        yield cluster


@pytest.fixture
def prove(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Record what the test proved, for the table ``make chart-smoke`` prints."""
    return lambda text: record_property("proven", text)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The table `make chart-smoke` prints: each test and what it proved (its ``proven`` property)."""
    reports = [r for key in ("passed", "failed", "error") for r in terminalreporter.stats.get(key, [])]
    rows = [r for r in reports if r.when == "call" and "chart_runtime" in r.nodeid]
    if not rows:
        return
    terminalreporter.section(
        "the chart, run: helm template → local processes (step pods: the step image, through the container engine), "
        "only the kubelet replaced"
    )
    width = max(len(r.nodeid.split("::")[-1]) for r in rows)
    for report in rows:
        proven = dict(report.user_properties).get("proven", "")
        verdict = "PASS" if report.passed else "FAIL"
        terminalreporter.write_line(f"{verdict}  {report.nodeid.split('::')[-1].ljust(width)}  {proven}")
