"""Kubernetes resource quantities (``1Gi``, ``1294Mi``, ``512e6``, ``1.5Gi``, ``100m``) as whole bytes.

The grammar is k8s.io/apimachinery pkg/api/resource/quantity.go ``ParseQuantity``: a signed decimal
number, then one suffix: binary (Ki Mi Gi Ti Pi Ei), decimal (n u m, none, k M G T P E) or a decimal
exponent (``e6``, ``E-3``). A byte count is ``Quantity.Value()``, which rounds a fraction up (``100m`` of
memory is 1 byte). What is not a quantity (garbage, a negative amount, a value beyond int64) is None:
the API server validates these fields, so None means "not known" rather than an error to raise.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_INT64_MAX = 2**63 - 1
_MAX_EXPONENT = 30  # 10**30 bytes is far beyond int64 already; larger exponents are not computed


def parse_quantity(value: object) -> int | None:
    """Whole bytes of a quantity (a string, or a JSON number), rounded up; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= _INT64_MAX else None
    if isinstance(value, float):
        return math.ceil(value) if math.isfinite(value) and 0 <= value <= _INT64_MAX else None
    if not isinstance(value, str):
        return None
    return _parse_text(value)


@functools.lru_cache(maxsize=1024)
def _parse_text(value: str) -> int | None:
    """A quantity string: few distinct ones (every launcher pod of a size repeats them), so cached."""
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    sign, number, suffix = match.group(1), Fraction(match.group(2)), match.group(3) or ""
    if suffix in _BINARY:
        amount = number * 1024 ** _BINARY[suffix]
    else:
        exponent = int(suffix[1:]) if suffix[:1] in ("e", "E") and len(suffix) > 1 else _DECIMAL[suffix]
        if exponent > _MAX_EXPONENT:
            return None
        amount = number * Fraction(10) ** max(exponent, -_MAX_EXPONENT)
    if sign == "-" and amount:
        return None
    whole = math.ceil(amount)
    return whole if whole <= _INT64_MAX else None
