"""docs/chart.md documents every value: its table is generated from values.schema.json."""

from __future__ import annotations

import subprocess
import sys

from tests.chart.render import REPO


def test_values_table_is_in_sync_with_the_schema() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_chart_docs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_default_value_key_is_in_the_schema() -> None:
    import json

    import yaml

    schema = json.loads((REPO / "charts" / "sluice" / "values.schema.json").read_text())
    values = yaml.safe_load((REPO / "charts" / "sluice" / "values.yaml").read_text())
    assert sorted(values) == sorted(schema["properties"])
