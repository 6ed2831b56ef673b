"""JSON outputs are JSON: undefined numbers become null, never the bare NaN or Infinity json.dumps writes."""

import json
import math

from image2point.io import json_out


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"miou": math.nan, "per_class": [0.5, math.inf, -math.inf], "nested": {"x": (1, math.nan)}, "n": 3}
    text = json_out.dumps(value, indent=2)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda word: (_ for _ in ()).throw(ValueError(word))) == {
        "miou": None, "per_class": [0.5, None, None], "nested": {"x": [1, None]}, "n": 3}


def test_finite_values_are_written_as_json_dumps_writes_them():
    value = {"a": 0.1, "b": [1, 2.5e-300], "c": "text", "d": None, "e": True}
    assert json_out.dumps(value) == json.dumps(value)
