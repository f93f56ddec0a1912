"""End to end on tiny data: synth -> train the three networks -> reconstruct -> every output file."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from ofer.cli.main import main
from ofer.data.occluders import emoji_available
from ofer.data.shards import read_npz, shard_name
from ofer.data.synth import SynthConfig, generate
from ofer.runs import CHECKPOINT_FILE

pytestmark = pytest.mark.skipif(not emoji_available(), reason="fonts-noto-color-emoji is not installed")
OUTPUT_FILES = {"identity.ply", "kpt7.npy", "params.npz", "summary.json", "preview.png", "uncertainty.png"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, default_model):
    root = tmp_path_factory.mktemp("e2e")
    data, run = root / "data", root / "run"
    generate(data, "default", 192, 5, SynthConfig(image_size=192), shard_size=64, progress=False)
    losses = {}
    common = ["--data", str(data), "-o", str(run), "--quiet", "--seed", "0"]
    for network, extra in (("idgen", ["--epochs", "8", "--batch", "32"]), ("expgen", ["--epochs", "8", "--batch", "32"]),
                           ("idrank", ["--epochs", "6", "--candidates", "8", "--rank-steps", "5", "--rank-images", "96",
                                       "--rank-vertices", "128", "--batch", "8"])):
        assert main(["train", network, *common, *extra]) == 0
        rows = [json.loads(line) for line in (run / network / "log.jsonl").read_text().splitlines()]
        losses[network] = [r["loss"] for r in rows]
    photo = root / "synthetic_face.png"
    Image.fromarray(read_npz(data / shard_name(0))["image"][0]).save(photo)
    return {"data": data, "run": run, "losses": losses, "photo": photo, "root": root}


def test_losses_decrease(trained):
    for network, losses in trained["losses"].items():
        assert losses[-1] < losses[0], network


def reconstruct(out, *images, run, seed=0, shapes=12, extra=()):
    return main(["reconstruct", *map(str, images), "-o", str(out), "--checkpoints", str(run),
                 "--shapes", str(shapes), "--expressions", "4", "--steps", "8", "--seed", str(seed), *extra])


def test_reconstruct_writes_everything_and_is_seeded(trained, tmp_path):
    assert reconstruct(tmp_path / "a", trained["photo"], run=trained["run"]) == 0
    folder = tmp_path / "a" / "synthetic_face"
    names = {p.name for p in folder.iterdir()}
    assert OUTPUT_FILES <= names and {f"expression_{i:02d}.ply" for i in range(4)} <= names
    params = np.load(folder / "params.npz")
    assert params["shapes"].shape == (12, 106) and params["expressions"].shape == (4, 52)
    assert 0 <= int(params["chosen"]) < 12 and params["rank_scores"].shape == (12,)
    assert np.load(folder / "kpt7.npy").shape == (7, 3)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["face_model"]["spec"] == "default" and set(summary["timings_s"]) >= {"idgen", "idrank", "expgen"}
    assert Image.open(folder / "preview.png").size[0] > 500
    assert reconstruct(tmp_path / "b", trained["photo"], run=trained["run"]) == 0
    again = np.load(tmp_path / "b" / "synthetic_face" / "params.npz")
    assert all(np.array_equal(params[k], again[k]) for k in params.files)


def test_bad_inputs_fail_alone(trained, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(grey)
    code = reconstruct(tmp_path / "out", text, grey, trained["photo"], run=trained["run"])
    err = capsys.readouterr().err
    assert code == 1
    assert "notes.txt: not an image" in err and "grey.png: no face found" in err and "Traceback" not in err
    assert (tmp_path / "out" / "synthetic_face" / "params.npz").is_file()


def test_checkpoint_for_another_face_model_is_refused(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    path = run / "idgen" / CHECKPOINT_FILE
    payload = torch.load(path, weights_only=True)
    payload["config"]["face_model"]["num_vertices"] = 5023
    payload["config"]["face_model"]["spec"] = "flame:/x/generic_model.pkl"
    torch.save(payload, path)
    code = reconstruct(tmp_path / "out", trained["photo"], run=run)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "trained for face model 'flame:/x/generic_model.pkl', which cannot be loaded" in err
    assert len(err.splitlines()) == 1
    code = main(["reconstruct", str(trained["photo"]), "-o", str(tmp_path / "out"), "--checkpoints", str(run),
                 "--model", "default"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not 'default' (num_vertices 5023 vs 4558)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED / "assets/faces/obama.jpg").is_file(), reason="../shared photos not available")
def test_reconstruct_real_photo(trained, tmp_path):
    assert reconstruct(tmp_path, SHARED / "assets/faces/obama.jpg", run=trained["run"]) == 0
    assert OUTPUT_FILES <= {p.name for p in (tmp_path / "obama").iterdir()}


def test_eval_commands_on_a_tiny_protocol(trained, tmp_path, capsys):
    from ofer.data.synth import protocol_config

    config = protocol_config(image_size=192, identities=3)
    generate(tmp_path / "p", "default", 6, 545, config, kind="protocol", shard_size=6, progress=False)
    common = ["--data", str(tmp_path / "p"), "--checkpoints", str(trained["run"]), "--shapes", "6", "--steps", "5"]
    report = tmp_path / "rep"
    assert main(["eval", "co545", *common, "--samples", "3", "-o", str(report)]) == 0
    assert {"metrics.json", "report.md", "cdf.png", "vertex_error.png", "worst.png"} <= {p.name for p in report.iterdir()}
    text = (report / "report.md").read_text()
    assert "| OFER |" in text and "| random prior |" in text
    methods = json.loads((report / "metrics.json").read_text())["methods"]
    for key in ("se_vis", "cse_vis", "min_asd_v", "max_asd_v", "asd_o", "ode"):
        assert np.isfinite(methods["OFER"][key]) and np.isfinite(methods["random prior"][key])
    assert methods["OFER"]["cse_vis"] <= methods["OFER"]["se_vis"]
    chunk = next((report / "cache" / "OFER").glob("chunk_*.npz"))
    stamp = chunk.stat().st_mtime_ns
    assert main(["eval", "co545", *common, "--samples", "3", "-o", str(report)]) == 0
    assert chunk.stat().st_mtime_ns == stamp  # finished per-image results are reused
    capsys.readouterr()
    assert main(["eval", "rank", *common]) == 0
    out = capsys.readouterr().out
    assert "OFER-rank" in out and "gap closed" in out and "precision" in out
    assert main(["eval", "shape", *common, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "OFER-rank" in out and "random prior" in out


def test_demo_runs_on_the_builtin_example(trained, tmp_path, capsys):
    code = main(["demo", "-o", str(tmp_path), "--checkpoints", str(trained["run"])])
    out = capsys.readouterr().out
    assert code == 0 and "built-in example" in out
    assert (tmp_path / "demo_input.png").is_file()
    assert OUTPUT_FILES <= {p.name for p in (tmp_path / "demo_input").iterdir()}


def test_shipped_weights_load_when_present():
    from ofer.errors import CheckpointError
    from ofer.methods import OFER, ReconstructionSettings
    from ofer.weights import default_run

    try:
        run = default_run()
    except CheckpointError:
        pytest.skip("no weights shipped in this checkout")
    pipe = OFER.from_run(run)
    assert pipe.face_model.spec == "default"
    settings = ReconstructionSettings(shapes=4, expressions=2, sampler="ddim", steps=5, seed=0)
    identity = np.ones((1, 512), np.float32) / np.sqrt(512)
    rec = pipe.reconstruct_embeddings(identity, np.zeros((1, 260), np.float32), settings, ["x"])[0]
    assert rec.expression_vertices.shape == (2, pipe.face_model.num_vertices, 3)


def _second_photo(trained, tmp_path):
    other = tmp_path / "other_face.png"
    Image.fromarray(read_npz(trained["data"] / shard_name(0))["image"][1]).save(other)
    return other


def test_result_does_not_depend_on_other_images_or_batch(trained, tmp_path):
    other = _second_photo(trained, tmp_path)
    assert reconstruct(tmp_path / "x", other, trained["photo"], run=trained["run"]) == 0
    assert reconstruct(tmp_path / "y", trained["photo"], run=trained["run"], extra=("--batch", "1")) == 0
    a = np.load(tmp_path / "x" / "synthetic_face" / "params.npz")
    b = np.load(tmp_path / "y" / "synthetic_face" / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert (tmp_path / "x" / "synthetic_face" / "params.npz").read_bytes() == (tmp_path / "y" / "synthetic_face" / "params.npz").read_bytes()


def test_expressions_do_not_depend_on_the_number_of_shapes(trained, tmp_path):
    assert reconstruct(tmp_path / "a", trained["photo"], run=trained["run"], shapes=5) == 0
    assert reconstruct(tmp_path / "b", trained["photo"], run=trained["run"], shapes=10) == 0
    a = np.load(tmp_path / "a" / "synthetic_face" / "params.npz")
    b = np.load(tmp_path / "b" / "synthetic_face" / "params.npz")
    assert np.array_equal(a["expressions"], b["expressions"])
    assert a["shapes"].shape == (5, 106) and b["shapes"].shape == (10, 106)


@pytest.mark.parametrize("option, value, message", [
    ("--steps", "2000", "--steps must be an integer >= 1 and <= 1000, got 2000"),
    ("--batch", "0", "--batch must be an integer >= 1"),
    ("--batch", "-1", "--batch must be an integer >= 1"),
    ("--shapes", "0", "--shapes must be an integer >= 1"),
    ("--sampler", "euler", "--sampler must be one of ddim, ddpm"),
    ("--method", "nope", "--method must be one of"),
    ("--device", "tpu", "--device must be one of cpu, cuda, mps"),
])
def test_bad_options_are_refused_before_any_work(trained, tmp_path, capsys, option, value, message):
    code = main(["reconstruct", str(trained["photo"]), "-o", str(tmp_path / "out"), "--checkpoints",
                 str(trained["run"]), option, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_hostile_names_never_destroy_earlier_files(trained, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    user = out / "synthetic_face"
    user.mkdir()
    (user / "mine.txt").write_text("not ofer's")
    dotted = tmp_path / "..jpg"
    dotted.write_bytes(trained["photo"].read_bytes())
    code = reconstruct(out, dotted, trained["photo"], run=trained["run"])
    err = capsys.readouterr().err
    assert code == 1 and "was not written by ofer" in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "earlier result" and (user / "mine.txt").read_text() == "not ofer's"
    assert (out / "image" / "params.npz").is_file()  # '..jpg' got a safe name inside OUT


def test_duplicate_stems_get_distinct_folders(trained, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [tmp_path / "a" / "face.png", tmp_path / "b" / "face.png", tmp_path / "face_2.png"]
    for p in paths:
        p.write_bytes(trained["photo"].read_bytes())
    assert reconstruct(tmp_path / "out", *paths, run=trained["run"]) == 0
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == ["face", "face_2", "face_3"]
    sources = {json.loads((tmp_path / "out" / f / "summary.json").read_text())["image"] for f in folders}
    assert sources == {str(p) for p in paths}


@pytest.mark.parametrize("method", ["prior", "ofer"])
def test_reconstruct_with_each_registered_method(trained, tmp_path, method):
    assert reconstruct(tmp_path, trained["photo"], run=trained["run"], extra=("--method", method)) == 0
    summary = json.loads((tmp_path / "synthetic_face" / "summary.json").read_text())
    assert summary["method"] == method and OUTPUT_FILES <= {p.name for p in (tmp_path / "synthetic_face").iterdir()}
