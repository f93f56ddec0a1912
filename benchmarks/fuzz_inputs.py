"""Fuzz the public commands with hostile inputs: mutated images, damaged checkpoints, npz and pickle
face-model files, and damaged data folders (a mutated manifest or shard of a tiny ``synth train``
folder, read by ``train idgen``, ``train expgen``, ``synth preview`` and a resumed ``synth train``).

Every call runs ``ofer.cli.main.main(argv)`` in a forked child (so a crash or a hang is observed,
not suffered) together with a good input, and is classified:

- ``error``: exit code != 0 and every line on stderr is one ``ofer: error|warning: ...`` line;
- ``ok``: exit code 0 (the input was usable);
- ``traceback``: an exception escaped ``main`` (the child reports it);
- ``crash``: the child died of a signal; ``hang``: it ran past ``--timeout`` seconds.

For image batches the good image's result must be in the call's output (``good_kept``). Usage::

    python benchmarks/fuzz_inputs.py --cases 10000 --seed 0 -o /tmp/fuzz      # the full run
    python benchmarks/fuzz_inputs.py --cases 40                                # CI-sized
    python benchmarks/fuzz_inputs.py --cases 300 --families datafolder         # one family only

Prints the counts per kind and outcome and writes ``fuzz.json`` (every call with its outcome and last line,
and every failing case in full) to ``-o``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO / "src" / "ofer" / "weights" / "default"
ONE_LINE = ("ofer: error:", "ofer: warning:", "ofer: interrupted", "ofer: building the default head")


# -- mutators ---------------------------------------------------------------------------------------
def _flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for i in rng.integers(0, len(out), size=int(rng.integers(1, 64))):
        out[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _cut(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _insert(data: bytes, rng) -> bytes:
    at = int(rng.integers(0, len(data)))
    return data[:at] + rng.bytes(int(rng.integers(1, 4096))) + data[at:]


def _header(data: bytes, rng) -> bytes:
    n = int(rng.integers(1, 64))
    return rng.bytes(n) + data[n:]


def _zero_block(data: bytes, rng) -> bytes:
    at, n = int(rng.integers(0, len(data))), int(rng.integers(1, 8192))
    return data[:at] + bytes(min(n, len(data) - at)) + data[at + n :]


BYTE_MUTATORS = {"flip": _flip, "cut": _cut, "insert": _insert, "header": _header, "zero": _zero_block}


def odd_image(rng) -> tuple[str, bytes]:
    """A valid but unusual picture: odd mode, size or container."""
    from PIL import Image

    kind = str(rng.choice(["1", "L", "P", "LA", "RGBA", "I;16", "I", "F", "CMYK", "tiny", "thin", "wide", "gif"]))
    size = (int(rng.integers(8, 300)), int(rng.integers(8, 300)))
    noise = rng.integers(0, 256, size=(size[1], size[0], 4), dtype=np.uint8)
    image, fmt = Image.fromarray(noise, "RGBA"), "PNG"
    if kind in ("1", "L", "P", "LA", "RGBA", "CMYK"):
        image = image.convert(kind)
        fmt = "JPEG" if kind == "CMYK" else "PNG"
    elif kind == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size=size[::-1], dtype=np.uint16))
    elif kind == "I":
        image, fmt = Image.fromarray(rng.integers(0, 2**31 - 1, size=size[::-1], dtype=np.int32)), "TIFF"
    elif kind == "F":
        image, fmt = Image.fromarray(rng.random(size[::-1]).astype(np.float32) * 3 - 1), "TIFF"
    elif kind == "tiny":
        image = image.resize((1, 1))
    elif kind == "thin":
        image = image.resize((1, 3000))
    elif kind == "wide":
        image = image.resize((3000, 2))
    elif kind == "gif":
        image, fmt = image.convert("P"), "GIF"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"odd-{kind}", buffer.getvalue()


# A fork server started before any torch work: forking a process whose torch thread pool is running
# can deadlock the child (which would count as a false hang).
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["ofer.cli.main"])


# -- running one call -------------------------------------------------------------------------------
def _child(argv: list[str], out: str) -> None:
    import torch

    torch.set_num_threads(1)
    with open(Path(out) / "stdout", "w") as stdout, open(Path(out) / "stderr", "w") as stderr:
        os.dup2(stdout.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
        sys.stdout, sys.stderr = stdout, stderr
        try:
            from ofer.cli.main import main

            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            (Path(out) / "traceback").write_text(traceback.format_exc())
            code = 99
        sys.stdout.flush(), sys.stderr.flush()
    os._exit(int(code))


def run_call(argv: list[str], timeout: float) -> dict:
    """One command in a forked child: {code, outcome, stderr} (outcome as the module says)."""
    with tempfile.TemporaryDirectory(prefix="ofer-fuzz-") as scratch:
        child = CONTEXT.Process(target=_child, args=(argv, scratch))
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            return {"code": None, "outcome": "hang", "stderr": ""}
        stderr = (Path(scratch) / "stderr").read_text(errors="replace")
        if (Path(scratch) / "traceback").exists():
            return {"code": 99, "outcome": "traceback", "stderr": (Path(scratch) / "traceback").read_text()}
        if child.exitcode < 0:
            return {"code": child.exitcode, "outcome": "crash", "stderr": stderr}
        lines = [line for line in stderr.splitlines() if line.strip()]
        if "Traceback (most recent call last)" in stderr:
            outcome = "traceback"
        elif child.exitcode == 0:
            outcome = "ok"
        elif all(line.startswith(ONE_LINE) or line.startswith("usage:") or line.startswith("ofer ") for line in lines):
            outcome = "error"
        else:
            outcome = "messy"  # several or unmarked lines: not a traceback, but not one clean line either
        return {"code": child.exitcode, "outcome": outcome, "stderr": stderr[-2000:]}


# -- case families ----------------------------------------------------------------------------------
def image_cases(rng, seeds: list[bytes], count: int, folder: Path):
    """(name, path) of ``count`` hostile image files."""
    for i in range(count):
        pick = rng.random()
        if pick < 0.75:
            name = str(rng.choice(sorted(BYTE_MUTATORS)))
            data = BYTE_MUTATORS[name](seeds[int(rng.integers(0, len(seeds)))], rng)
            suffix = str(rng.choice([".jpg", ".png", ".jpeg", ".webp", ""]))
        elif pick < 0.95:
            name, data = odd_image(rng)
            suffix = ".png"
        else:
            name, data, suffix = "empty-or-text", [b"", b"hello\n", rng.bytes(10)][int(rng.integers(0, 3))], ".jpg"
        path = folder / f"case{i:05d}{suffix}"
        path.write_bytes(data)
        yield name, path


def detect_batches(rng, seeds, count, folder, good: Path, timeout: float, batch: int = 20):
    """``ofer detect GOOD BAD... --json``: outcome per call and whether GOOD got its record."""
    cases = list(image_cases(rng, seeds, count, folder))
    for start in range(0, len(cases), batch):
        chunk = cases[start : start + batch]
        out = folder / f"detect{start:05d}.json"
        result = run_call(["detect", str(good), *[str(p) for _, p in chunk], "--json", str(out)], timeout)
        kept = False
        if out.is_file():
            records = json.loads(out.read_text())["images"]
            kept = any(r.get("path") == str(good) and "error" not in r for r in records)
        yield [n for n, _ in chunk], result, kept


def reconstruct_batches(rng, seeds, count, folder, good: Path, timeout: float, batch: int = 5):
    cases = list(image_cases(rng, seeds, count, folder))
    for start in range(0, len(cases), batch):
        chunk = cases[start : start + batch]
        out = folder / f"rec{start:05d}"
        argv = ["reconstruct", str(good), *[str(p) for _, p in chunk], "-o", str(out),
                "--shapes", "4", "--expressions", "2", "--steps", "3"]
        result = run_call(argv, timeout)
        yield [n for n, _ in chunk], result, (out / good.stem / "summary.json").is_file()


def damaged_checkpoints(rng, count, folder, good: Path, timeout: float):
    for i in range(count):
        run = folder / f"run{i:04d}"
        shutil.copytree(DEFAULT_WEIGHTS, run)
        network = str(rng.choice(["idgen", "idrank", "expgen"]))
        target = run / network / str(rng.choice(["last.pt", "config.json"]))
        name = str(rng.choice(sorted(BYTE_MUTATORS)))
        target.write_bytes(BYTE_MUTATORS[name](target.read_bytes(), rng))
        argv = ["reconstruct", str(good), "-o", str(folder / f"ckout{i:04d}"), "--checkpoints", str(run),
                "--shapes", "4", "--expressions", "2", "--steps", "3"]
        yield [f"checkpoint-{target.name}-{name}"], run_call(argv, timeout), None
        shutil.rmtree(run, ignore_errors=True)


def face_model_files(rng, count, folder, timeout: float):
    """npz face models with mutated bytes or arrays, and random pickles as FLAME files."""
    base = {"v_template": rng.random((30, 3)).astype(np.float32), "faces": rng.integers(0, 30, (20, 3)),
            "shapedirs": rng.random((30, 3, 4)).astype(np.float32)}
    for i in range(count):
        path = folder / f"model{i:04d}.npz"
        pick = rng.random()
        if pick < 0.4:
            buffer = io.BytesIO()
            np.savez(buffer, **base)
            name = str(rng.choice(sorted(BYTE_MUTATORS)))
            path.write_bytes(BYTE_MUTATORS[name](buffer.getvalue(), rng))
            spec, label = f"npz:{path}", f"npz-{name}"
        elif pick < 0.8:
            arrays = dict(base)
            key = str(rng.choice(sorted(arrays)))
            arrays[key] = [np.zeros((0, 3)), np.array("x"), rng.random((5,)), np.full((30, 3), np.nan, np.float32),
                           rng.integers(-5, 100, (20, 3)), rng.random((30, 3, 4, 2))][int(rng.integers(0, 6))]
            np.savez(path, **arrays)
            spec, label = f"npz:{path}", f"npz-array-{key}"
        else:
            path = path.with_suffix(".pkl")
            path.write_bytes(b"\x80\x02" + rng.bytes(int(rng.integers(1, 2000))))
            spec, label = f"flame:{path}", "flame-random-pickle"
        yield [label], run_call(["facemodel", "export", "--model", spec, "-o", str(folder / f"m{i:04d}.ply")], timeout), None


ODD_VALUES = ([], {}, None, "x", -1, 0, 2**63, 1e308, float("nan"), [1, "a"], {"a": []}, True)


def _json_mutation(text: str, rng) -> tuple[str, str]:
    """(label, new text) of the manifest: another type at the top, a key gone, or a key's odd value."""
    data = json.loads(text)
    pick = rng.random()
    if pick < 0.15:
        return "manifest-top", json.dumps([[], None, 3, "manifest"][int(rng.integers(0, 4))])
    key = str(rng.choice(sorted(data)))
    if pick < 0.4:
        del data[key]
        return f"manifest-drop-{key}", json.dumps(data)
    if isinstance(data[key], dict) and data[key] and rng.random() < 0.5:
        inner = str(rng.choice(sorted(data[key])))
        data[key][inner] = ODD_VALUES[int(rng.integers(0, len(ODD_VALUES)))]
        return f"manifest-{key}.{inner}", json.dumps(data)
    data[key] = ODD_VALUES[int(rng.integers(0, len(ODD_VALUES)))]
    return f"manifest-{key}", json.dumps(data)


def _shard_mutation(path: Path, rng) -> str:
    """Damage one shard in place: bytes, a field gone, a field of another shape, dtype or NaN, or no file."""
    pick = rng.random()
    if pick < 0.3:
        name = str(rng.choice(sorted(BYTE_MUTATORS)))
        path.write_bytes(BYTE_MUTATORS[name](path.read_bytes(), rng))
        return f"shard-{name}"
    if pick < 0.4:
        path.unlink()
        return "shard-missing"
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    key = str(rng.choice(sorted(arrays)))
    value = arrays[key]
    if pick < 0.55:
        del arrays[key]
        label = f"shard-drop-{key}"
    else:
        variants = [value[:-1], value.reshape(len(value), -1)[:, :1], value.astype(np.float64), np.array("x"),
                    np.zeros((0,) + value.shape[1:], value.dtype), np.full(value.shape, np.nan)]
        choice = int(rng.integers(0, len(variants)))
        arrays[key] = variants[choice]
        label = f"shard-{key}-{['short', 'narrow', 'float64', 'string', 'empty', 'nan'][choice]}"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return label


def data_folders(rng, count, folder, timeout: float):
    """A tiny ``synth train`` folder, damaged once per case, through a command that reads it."""
    from ofer.cli.main import main as ofer_main

    base = folder / "data-good"
    if ofer_main(["synth", "train", "--n", "8", "--shard-size", "4", "--seed", "3", "-o", str(base)]) != 0:
        raise RuntimeError("could not make the good data folder")
    for i in range(count):
        data = folder / f"data{i:04d}"
        shutil.copytree(base, data)
        if rng.random() < 0.4:
            manifest = data / "manifest.json"
            if rng.random() < 0.3:
                name = str(rng.choice(sorted(BYTE_MUTATORS)))
                manifest.write_bytes(BYTE_MUTATORS[name](manifest.read_bytes(), rng))
                label = f"manifest-{name}"
            else:
                label, text = _json_mutation(manifest.read_text(), rng)
                manifest.write_text(text)
        else:
            label = _shard_mutation(data / f"shard_0000{int(rng.integers(0, 2))}.npz", rng)
        command = str(rng.choice(["train-idgen", "train-expgen", "preview", "resume"]))
        run = folder / f"datarun{i:04d}"
        argv = {"train-idgen": ["train", "idgen", "--data", str(data), "-o", str(run), "--epochs", "1", "--batch", "4",
                                "--widths", "16", "8", "4", "--quiet"],
                "train-expgen": ["train", "expgen", "--data", str(data), "-o", str(run), "--epochs", "1", "--batch", "4",
                                 "--widths", "16", "8", "4", "--quiet"],
                "preview": ["synth", "preview", str(data), "-o", str(folder / f"sheet{i:04d}.png"), "--count", "8"],
                "resume": ["synth", "train", "--n", "8", "--shard-size", "4", "--seed", "3", "-o", str(data)]}[command]
        yield [f"{label}-{command}"], run_call(argv, timeout), None
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)


FAMILIES = ("detect", "reconstruct", "checkpoint", "facemodel", "datafolder")


def run(cases: int, seed: int, out: Path, timeout: float, only: tuple[str, ...] = FAMILIES) -> dict:
    from ofer.cli.demo import demo_image
    from PIL import Image

    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="fuzz-", dir=out))
    faces = REPO.parent / "shared" / "assets" / "faces"
    good = work / "good.png"
    Image.fromarray(demo_image()).save(good)
    seeds = [good.read_bytes()]
    for name in ("obama.jpg", "biden.jpg", "astronaut.png", "32bit.png"):
        if (faces / name).is_file():
            seeds.append((faces / name).read_bytes())
    # the slow families (a network run per call) are capped; detection takes the rest
    shares = {"reconstruct": (0.08, 250), "checkpoint": (0.04, 100), "facemodel": (0.08, 400),
              "datafolder": (0.04, 300)}
    shares = {k: v for k, v in shares.items() if k in only}
    sizes = {k: max(1, min(cap, int(round(cases * v)))) for k, (v, cap) in shares.items()}
    if "detect" in only:
        sizes["detect"] = max(1, cases - sum(sizes.values()))
    elif len(only) == 1:  # one slow family alone takes every case
        sizes[only[0]] = cases
    makers = {
        "detect": lambda n: detect_batches(rng, seeds, n, work, good, timeout),
        "reconstruct": lambda n: reconstruct_batches(rng, seeds, n, work, good, timeout),
        "checkpoint": lambda n: damaged_checkpoints(rng, n, work, good, timeout),
        "facemodel": lambda n: face_model_files(rng, n, work, timeout),
        "datafolder": lambda n: data_folders(rng, n, work, timeout),
    }
    families = [(name, makers[name](sizes[name])) for name in FAMILIES if name in sizes]
    counts, failures, inputs, lost, detail = Counter(), [], 0, 0, []
    started = time.perf_counter()
    for family, calls in families:
        for names, result, kept in calls:
            inputs += len(names)
            counts[(family, result["outcome"])] += 1
            last = ([line for line in result["stderr"].splitlines() if line.strip()] or [""])[-1]
            detail.append({"family": family, "inputs": names[:3], "outcome": result["outcome"], "said": last[:300]})
            if kept is False:
                lost += 1
            if result["outcome"] in ("traceback", "crash", "hang", "messy") or kept is False:
                failures.append({"family": family, "inputs": names, **result, "good_kept": kept})
    shutil.rmtree(work, ignore_errors=True)
    outcomes = Counter()
    for (_, outcome), n in counts.items():
        outcomes[outcome] += n
    summary = {"inputs": inputs, "calls": sum(counts.values()), "seconds": round(time.perf_counter() - started, 1),
               "outcomes": dict(outcomes), "per_family": {f"{f}/{o}": n for (f, o), n in sorted(counts.items())},
               "good_inputs_lost": lost, "failures": failures, "calls_detail": detail}
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="hostile inputs in all (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per call before it counts as a hang")
    parser.add_argument("-o", "--output", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                        help="case families to run (default: all)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    summary = run(args.cases, args.seed, args.output, args.timeout, tuple(args.families))
    (args.output / "fuzz.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['inputs']} hostile inputs in {summary['calls']} calls, {summary['seconds']} s")
    for key, n in summary["per_family"].items():
        print(f"  {key:<28}{n:>6}")
    bad = {k: summary["outcomes"].get(k, 0) for k in ("traceback", "crash", "hang", "messy")}
    print(f"tracebacks {bad['traceback']}, crashes {bad['crash']}, hangs {bad['hang']}, messy {bad['messy']}; "
          f"good inputs that lost their output: {summary['good_inputs_lost']}")
    print(f"wrote {args.output / 'fuzz.json'}")
    return 1 if any(bad.values()) or summary["good_inputs_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
