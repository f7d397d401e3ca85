"""``python -m sluice``: the CLI where only ``python`` may start a command (the official Airflow image's
entrypoint runs ``python`` and ``bash`` as given and hands every other command to ``airflow``)."""

from sluice.cli import app

app(prog_name="sluice")
