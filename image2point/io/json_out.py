"""JSON that every parser reads: a value that is not a finite number (NaN, Infinity) is written as null.

``json.dumps`` writes NaN and Infinity as bare words, which are not JSON; a metric that is undefined
(the IoU of a class absent from both prediction and truth) is written as null instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (see the module docstring)."""
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False)
