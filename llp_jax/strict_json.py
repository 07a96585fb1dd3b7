"""JSON that every reader takes: non-finite numbers written as the strings "nan", "inf", "-inf".

Why: Python's `json` writes NaN and infinities as the bare tokens NaN and Infinity, which are not
JSON. JavaScript's JSON.parse and Go's encoding/json refuse the whole file, and jq 1.6 reads
Infinity as 1.797e308 and NaN as null, silently. A diverged model's perplexity is inf
(`losses.perplexity`), and a benchmark point that died is nan, so summary.json, eval_*.json and
the results pages' JSON met them in real runs. metrics.jsonl wrote them as strings first; every
result file now does, and `loads` reads them back as floats (and still reads the bare tokens of
files written before).
"""

from __future__ import annotations

import json
import math
from typing import Any

NON_FINITE = ("nan", "inf", "-inf")


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` with every non-finite float (in any nesting) as its string."""
    return json.dumps(_as_strings(value), allow_nan=False, **kwargs)


def loads(text: str | bytes) -> Any:
    """`json.loads` with the strings "nan", "inf", "-inf" (in any nesting) read as floats."""
    return _as_floats(json.loads(text))


def _as_strings(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        return {key: _as_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_strings(item) for item in value]
    return value


def _as_floats(value: Any) -> Any:
    if isinstance(value, str) and value in NON_FINITE:
        return float(value)
    if isinstance(value, dict):
        return {key: _as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_floats(item) for item in value]
    return value
