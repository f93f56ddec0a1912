"""A CI-sized run of the fuzz harness (``benchmarks/fuzz_inputs.py``): hostile images, checkpoints,
face-model files and data folders through the public commands give one-line errors or results, never a traceback,
a crash or a hang, and the good image of each call keeps its output."""

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_fuzz_harness_finds_no_traceback_crash_or_hang(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))  # the fork server's children import the harness by name
    try:
        summary = importlib.import_module("fuzz_inputs").run(cases=30, seed=1, out=tmp_path, timeout=300)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert summary["inputs"] >= 25 and summary["calls"] >= 6
    assert {key.split("/")[0] for key in summary["per_family"]} == {"detect", "reconstruct", "checkpoint",
                                                                   "facemodel", "datafolder"}
    assert summary["failures"] == [], summary["failures"][:3]
    assert set(summary["outcomes"]) <= {"ok", "error"} and summary["outcomes"].get("error", 0) > 0
