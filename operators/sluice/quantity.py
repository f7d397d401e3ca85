"""Kubernetes resource quantities ("500m", "2", "1.5Gi", "1e3") as exact numbers, without the kubernetes client.

The local launcher sizes a step's CPUs and memory limit from its profile. ``kubernetes.utils.quantity`` parses the
same strings, but importing it loads the whole kubernetes client (~10 s of imports on a loaded 2-core machine) into
every worker that runs steps as local processes. This follows the same grammar (Kubernetes' resource.Quantity:
a signed decimal number, then a binary suffix Ki…Ei, a decimal suffix n u m k M G T P E, or an exponent e/E),
and tests check it against the client's own parser.
"""

from __future__ import annotations

import re
from decimal import Decimal

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?P<suffix>[eE][+-]?\d+|[KMGTPE]i|[numkMGTPE]?)")


def parse_quantity(quantity: str | int | float | Decimal) -> Decimal:
    """The quantity's value: ``"500m"`` → 0.5, ``"1Gi"`` → 1073741824. Raises ValueError naming the bad input."""
    if isinstance(quantity, int | float | Decimal):
        return Decimal(quantity)
    match = _QUANTITY.fullmatch(str(quantity).strip())
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1.5Gi)")
    number = Decimal(match["number"])  # the pattern admits only plain decimal numbers
    suffix = match["suffix"]
    if suffix in _BINARY:
        return number * Decimal(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:  # "E" alone is exa; "E3" is an exponent
        return number * Decimal(10) ** _DECIMAL[suffix]
    return number * Decimal(10) ** int(suffix[1:])
