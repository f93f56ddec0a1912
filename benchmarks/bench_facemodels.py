"""Face-model timings: cold conversion and warm load of the default head, fingerprint, forward passes.

Usage: python benchmarks/bench_facemodels.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

LOAD_SNIPPET = "import time; t=time.perf_counter(); import ofer; ofer.load_face_model('default'); print(time.perf_counter()-t)"


def timed_load(cache: str) -> float:
    """Seconds for a fresh Python process to import ofer and load ``default`` (the user's view)."""
    env = dict(os.environ, OFER_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold = timed_load(cache)
        warm = [timed_load(cache) for _ in range(args.repeats)]
        os.environ["OFER_CACHE_DIR"] = cache
        import ofer

        t = time.perf_counter()
        model = ofer.load_face_model("default")
        in_process = time.perf_counter() - t
        print(f"default head: first load (conversion + landmarks) {cold:.2f} s")
        print(f"default head: later loads, fresh process incl. import  median {statistics.median(warm):.3f} s")
        print(f"default head: load_face_model('default') in a warm process {in_process * 1000:.1f} ms")
        print(f"ratio first/later load: {cold / statistics.median(warm):.1f}x")
        t = time.perf_counter()
        fingerprint = model.fingerprint()
        ms = (time.perf_counter() - t) * 1000
        print(f"default head: fingerprint {fingerprint[:12]} in {ms:.1f} ms (once per load)")
        for batch in (1, 100):
            sample = model.sample_prior(batch, torch.Generator().manual_seed(0), expression=True)
            with torch.no_grad():
                model(sample.shape, sample.expression)
                t = time.perf_counter()
                for _ in range(10):
                    model(sample.shape, sample.expression)
            ms = (time.perf_counter() - t) / 10 * 1000
            print(f"default head forward, batch {batch:3d}: {ms:.2f} ms ({ms / batch:.3f} ms per head)")


if __name__ == "__main__":
    main()
