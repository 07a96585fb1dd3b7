"""A strict JSON reader for tests: what JavaScript's JSON.parse and Go's decoder accept."""

from __future__ import annotations

import json
from typing import Any


def strict(text: str) -> Any:
    """json.loads refusing the bare NaN / Infinity tokens that Python's json writes by default
    (they are not JSON: JSON.parse refuses the file, jq 1.6 reads null and 1.797e308)."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)
