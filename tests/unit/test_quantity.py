"""sluice.quantity reads Kubernetes quantities as the kubernetes client does, without loading the client."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity as client_parse_quantity
from sluice.quantity import parse_quantity

VALID = [
    "0", "1", "2", "250m", "500m", "1500m", "0.5", ".5", "1.", "+1", "-1", "100n", "10u",
    "1k", "3M", "2G", "1T", "1P", "1E", "1Ki", "512Mi", "1Gi", "1.5Gi", "16Gi", "2Ti", "1Pi", "1Ei",
    "1e3", "1E3", "5e-3", "2E+2", 3, 0.25, Decimal("7.5"),
]  # fmt: skip


@pytest.mark.parametrize("quantity", VALID, ids=str)
def test_valid_quantities_read_as_the_kubernetes_client_reads_them(quantity: object) -> None:
    assert parse_quantity(quantity) == client_parse_quantity(quantity)  # type: ignore[arg-type]


def test_exact_values() -> None:
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1.5Gi") == 3 * 2**29


@pytest.mark.parametrize("quantity", ["lots", "", "Gi", "1 Gi", "1gi", "1ki", "1mi", "1Kb", "1..5", "0x10", "1e"])
def test_anything_else_is_refused_naming_the_input(quantity: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(quantity)
