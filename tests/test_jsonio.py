"""JSON records: strict JSON, undefined numbers as null."""

import json
import math

import numpy as np

from kd_gan._io import read_json, write_json


def test_non_finite_numbers_are_written_as_null_and_the_file_is_strict_json(tmp_path):
    path = tmp_path / "record.json"
    write_json(path, {"fid": float("nan"), "psnr": np.float32(np.inf), "kid": np.float64(0.25),
                      "rows": [1, -math.inf, np.array([0.5, np.nan])], "count": np.int64(3), "name": "x"})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert record == {"fid": None, "psnr": None, "kid": 0.25, "rows": [1, None, [0.5, None]], "count": 3, "name": "x"}
    assert read_json(path) == record
    assert not (tmp_path / "record.json.tmp").exists()
