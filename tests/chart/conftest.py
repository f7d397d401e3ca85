from __future__ import annotations

import pytest

from tests.chart.render import render_chart


@pytest.fixture(scope="session")
def default_docs() -> list[dict]:
    """The default values, rendered once for the many tests that only read them."""
    return render_chart()
