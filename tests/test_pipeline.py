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
from ofer.training.checkpoint import CHECKPOINT_FILE

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


def reconstruct(out, *images, run, seed=0):
    return main(["reconstruct", *map(str, images), "-o", str(out), "--checkpoints", str(run),
                 "--shapes", "12", "--expressions", "4", "--steps", "8", "--seed", str(seed)])


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

    config = protocol_config()
    config.image_size, config.identities = 192, 3
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
    from ofer.pipeline.ofer import OFER, ReconstructionSettings
    from ofer.weights import default_run

    try:
        run = default_run()
    except CheckpointError:
        pytest.skip("no weights shipped in this checkout")
    pipe = OFER.from_checkpoints(run)
    assert pipe.face_model.spec == "default"
    settings = ReconstructionSettings(shapes=4, expressions=2, sampler="ddim", steps=5, seed=0)
    identity = np.ones((1, 512), np.float32) / np.sqrt(512)
    rec = pipe.reconstruct_embeddings(identity, np.zeros((1, 260), np.float32), settings, ["x"])[0]
    assert rec.expression_vertices.shape == (2, pipe.face_model.num_vertices, 3)
