"""``ofer train focus`` on a tiny photo folder: the stages run in order, a kill resumes exactly, variants,
the Pretrained snapshot, one-line errors."""

import json

import numpy as np
import pytest
import torch

from ofer.cli.main import main
from ofer.data.occluders import emoji_available
from ofer.data.stylegan import photo_engine_available

pytestmark = pytest.mark.skipif(not (photo_engine_available() and emoji_available()),
                                reason="needs the photo extra (openvino, random-face) and fonts-noto-color-emoji")

TINY = dict(image_size=32, backbone="tiny", unet_width=4, batch_size=2, r_init_steps=3, s_pretrain_steps=2,
            em_cycles=1, em_s_steps=1, save_every=2, landmarks="oracle", progress=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, default_model):
    from ofer.data.photo import PhotoConfig, generate_photo
    from ofer.fitting import FitOptions

    path = tmp_path_factory.mktemp("focus") / "photos"
    config = PhotoConfig(image_size=128, variants=2, fit=FitOptions(rigid_steps=40, full_steps=80).to_dict())
    generate_photo(path, "default", 2, 3, config, faces_per_shard=1, progress=False)
    return path


def train(photos, run, **changes):
    from ofer.training import train

    return train("focus", data=[photos], run=run, **{**TINY, **changes})


def weights(run):
    payload = torch.load(run / "focus" / "last.pt", weights_only=True)
    return payload, {k: v.clone() for k, v in payload["model"].items()}


def test_stages_run_in_order_and_write_the_pretrained_snapshot(photos, tmp_path):
    log = train(photos, tmp_path / "run")
    assert [(r["stage"], r["step"]) for r in log] == [("r_init", 2), ("r_init", 3), ("s_pretrain", 2),
                                                       ("em", 2), ("em", 4), ("em", 6)]
    em = [r for r in log if r["stage"] == "em"]
    assert "S_loss" in em[0] and "R_loss" in em[-1]  # the cycle starts with S: 1 S-step, then 5 R-steps
    payload, _ = weights(tmp_path / "run")
    assert payload["stage"] == 3 and payload["step"] == 0
    assert (tmp_path / "run" / "focus" / "pretrained.pt").is_file()
    assert (tmp_path / "run" / "focus" / "loss.png").is_file()
    config = json.loads((tmp_path / "run" / "focus" / "config.json").read_text())
    assert config["net"]["variant"] == "focus" and config["extra"]["stages"] == [["r_init", 3], ["s_pretrain", 2],
                                                                                  ["em", 6]]


def test_a_killed_run_resumes_exactly(photos, tmp_path, monkeypatch):
    from ofer.training import focus

    train(photos, tmp_path / "whole")
    calls = {"n": 0}
    original = focus._Stages.iterate

    def dying(self, name, step, steps):
        calls["n"] += 1
        if calls["n"] == 6:  # inside EM, after the checkpoint at the end of S's pretraining
            raise KeyboardInterrupt
        return original(self, name, step, steps)

    monkeypatch.setattr(focus._Stages, "iterate", dying)
    with pytest.raises(KeyboardInterrupt):
        train(photos, tmp_path / "killed")
    monkeypatch.setattr(focus._Stages, "iterate", original)
    train(photos, tmp_path / "killed", resume=True)
    _, a = weights(tmp_path / "whole")
    _, b = weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_variants_train_r_alone_with_the_same_number_of_r_steps(photos, tmp_path, default_model):
    log = train(photos, tmp_path / "mofa", variant="mofa")
    assert [r["stage"] for r in log] == ["r_mofa"] * 4 and log[-1]["step"] == 3 + 5
    supervised = train(photos, tmp_path / "sup", variant="supervised")
    assert supervised[-1]["stage"] == "r_supervised"
    trained = torch.load(tmp_path / "mofa" / "focus" / "last.pt", weights_only=True)["model"]
    from ofer.methods.focus.model import FocusModel
    from ofer.training.focus import FocusOptions

    torch.manual_seed(0)  # the trainer's seed, before it builds the networks
    fresh = FocusModel(default_model, FocusOptions(data=[photos], run=tmp_path, **TINY).net_config()).trainable_state()
    segmenter = [k for k in fresh if k.startswith("segmenter.")]
    assert segmenter and all(torch.equal(trained[k], fresh[k]) for k in segmenter)  # S never trained
    assert not all(torch.equal(trained[k], fresh[k]) for k in fresh if k.startswith("encoder."))


def test_variant_losses_drop_the_named_terms():
    from ofer.methods.focus.model import FocusConfig

    assert FocusConfig(variant="focus").losses().eta == (15.0, 3.0, 0.5, 2.5, 10.0)
    baseline = FocusConfig(variant="baseline").losses()
    assert baseline.eta == (15.0, 0.0, 0.5, 0.0, 10.0) and baseline.window == 1
    assert FocusConfig(variant="neighbor").losses().eta == (15.0, 0.0, 0.5, 0.0, 10.0)
    assert FocusConfig(variant="perceptual").losses().eta == (0.0, 3.0, 0.5, 2.5, 10.0)
    assert FocusConfig(variant="perceptual", preset="code").losses().eta[3] == 0.25


@pytest.mark.parametrize("args, message", [
    (["--xi", "0"], "--xi must be a positive number"),
    (["--em-cycles", "-1"], "--em-cycles"),
    (["--image-size", "8"], "--image-size"),
    (["--data-weights", "1"], "--data-weights is not supported"),
])
def test_bad_options_are_one_line(capsys, tmp_path, photos, args, message):
    assert main(["train", "focus", "--data", str(photos), "-o", str(tmp_path / "r"), *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and message in err[-1] and "Traceback" not in "\n".join(err)


def test_supervised_needs_visible_masks(tmp_path, capsys):
    from ofer.data.synth import SynthConfig, generate

    data = tmp_path / "renders"
    generate(data, "default", 2, 0, SynthConfig(image_size=64), shard_size=2, progress=False)
    assert main(["train", "focus", "--data", str(data), "-o", str(tmp_path / "r"), "--variant", "supervised",
                 "--landmarks", "oracle", "--image-size", "32", "--backbone", "tiny", "--unet-width", "4",
                 "--r-init-steps", "1", "--em-cycles", "0", "--quiet"]) != 0
    assert "no face silhouette stored" in capsys.readouterr().err


def test_pictures_are_resized_with_their_landmarks(photos, default_model):
    from ofer.training.common import TrainingData
    from ofer.training.focus_data import load_pictures

    data = TrainingData.open([photos])
    pictures = load_pictures(data, 32, "oracle", with_visible=True, progress=False)
    stored = data.parts[0].dataset[0]
    assert pictures.images.shape == (4, 3, 32, 32) and pictures.images.dtype == torch.uint8
    assert np.allclose(pictures.landmarks[0].numpy(), stored["landmarks2d"].numpy() * 32 / 128, atol=1e-4)
    visible = pictures.visible[0, 0].numpy()
    assert 0.05 < visible.mean() < 0.8  # a face region, partly occluded


@pytest.fixture(scope="module")
def tiny_run(photos, tmp_path_factory):
    run = tmp_path_factory.mktemp("focus_run")
    train(photos, run)
    return run


def test_reconstruct_writes_mesh_mask_and_overlay(tiny_run, tmp_path, capsys):
    from PIL import Image

    photo = "../shared/assets/faces/obama.jpg"
    for method in ("focus", "focus-pretrained"):
        out = tmp_path / method
        assert main(["reconstruct", "--method", method, "--checkpoints", str(tiny_run), photo, "-o", str(out)]) == 0
        folder = out / "obama"
        for name in ("identity.ply", "expression_00.ply", "mask.png", "overlay.png", "params.npz"):
            assert (folder / name).is_file(), (method, name)
        mask = np.asarray(Image.open(folder / "mask.png"))
        image = np.asarray(Image.open(photo))
        assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
        params = np.load(folder / "params.npz")
        assert params["rotation"].shape == (2, 3, 3)
    assert "nan" not in capsys.readouterr().out


def test_the_placement_maps_the_crop_camera_into_the_photo(tiny_run):
    import torch

    from ofer.frontend import load_image
    from ofer.methods.focus.method import FocusMethod, crop_intrinsics

    k = crop_intrinsics(100.0, 64, (10, 20, 128))  # crop pixel u <-> photo 10 + 2 u
    assert torch.allclose(k, torch.tensor([[200.0, 0, 10 + 64], [0, 200.0, 20 + 64], [0, 0, 1]], dtype=k.dtype))
    method = FocusMethod.from_run(tiny_run)
    image = load_image("../shared/assets/faces/obama.jpg")
    rec = method.reconstruct([image])[0]
    nose = rec.landmarks68_2d[0, 30]
    x1, y1, x2, y2 = rec.box
    assert x1 < nose[0] < x2 and y1 < nose[1] < y2  # the (nearly mean) face lands on the detected face


def test_paste_mask_puts_the_crop_back_where_it_came_from():
    from ofer.methods.focus.method import paste_mask

    crop = np.zeros((4, 4), bool)
    crop[1, 2] = True  # crop pixel (row 1, col 2) covers photo rows 2-3, cols 4-5 of window (0, 0, 8)
    out = paste_mask(crop, (0, 0, 8), (10, 6))
    assert out.shape == (10, 6) and out[2:4, 4:6].all() and out.sum() == 4
    shifted = paste_mask(crop, (-2, 3, 8), (10, 6))  # a window partly left of the photo
    assert shifted[5:7, 2:4].all() and shifted.sum() == 4


def test_missing_or_damaged_checkpoints_are_one_line(tiny_run, tmp_path, capsys):
    import shutil

    photo = "../shared/assets/faces/obama.jpg"
    assert main(["reconstruct", "--method", "focus", photo, "-o", str(tmp_path / "a")]) != 0
    assert "no shipped weights" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "focus" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(["reconstruct", "--method", "focus", "--checkpoints", str(broken), photo, "-o", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert "corrupt checkpoint" in err and "Traceback" not in err


def test_eval_pictures_reports_every_row(tiny_run, photos, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", "pictures", str(tiny_run), "--data", str(photos), "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["results"]) == ["Pretrained (FOCUS)", "FOCUS"]
    pretrained = metrics["results"]["Pretrained (FOCUS)"]
    assert pretrained["all"]["count"] == 4 and "mpre_f1_0.17" in pretrained["all"]
    assert (out / "pictures.png").is_file() and "| FOCUS |" in (out / "report.md").read_text()
    assert main(["eval", "pictures", str(tiny_run), str(tiny_run), "--data", str(photos), "-o", str(out)]) != 0
    assert "same row" in capsys.readouterr().err


def test_co545_runs_focus_on_the_protocol_pictures(tiny_run, tmp_path, capsys):
    import test_eval_protocol as T

    model = T._model()
    rng = np.random.default_rng(0)
    shape, expression = T.coefficients(4, 1)
    front = np.repeat(model.front_mask.numpy()[None], 4, 0)
    arrays = {"shape": shape, "expression": expression, "arcface": rng.normal(size=(4, 4)).astype(np.float32),
              "appearance": rng.normal(size=(4, 3)).astype(np.float32), "front": T.pack_bits(front),
              "unoccluded": T.pack_bits(front & (rng.random(front.shape) < 0.6)),
              "identity": np.arange(4, dtype=np.int32), "category": np.zeros(4, np.int8),
              "image": rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)}
    folder = T.write_folder(tmp_path / "protocol", "protocol", arrays)
    out = tmp_path / "report"
    assert main(["eval", "co545", "--data", str(folder), "--method", "focus", "--checkpoints", str(tiny_run),
                 "-o", str(out), "--reference-samples", "300"]) == 0
    row = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| FOCUS"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0  # SE vis, mm
    assert any(c.startswith("n/a") for c in cells)  # deterministic: the diversity metrics are undefined, not 0


def test_misfit_prior_trains_r_syn_on_black_renders_and_resumes(tiny_run, photos, tmp_path, capsys):
    import shutil

    from ofer.training import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    photo = "../shared/assets/faces/obama.jpg"
    assert main(["reconstruct", "--method", "focus-mp", "--checkpoints", str(run), photo, "-o", str(tmp_path / "o")]) != 0
    assert "no misfit prior" in capsys.readouterr().err
    settings = dict(data=[photos], run=run, steps=4, pictures=12, heldout=8, save_every=2, progress=False)
    log = train("focus-misfit", **settings)
    assert [r["step"] for r in log] == [2, 4] and log[-1]["misfit_neutral_mm"] > 0
    payload = torch.load(run / "focus-misfit" / "last.pt", weights_only=True)
    assert payload["misfit_neutral"].shape == (4558, 3) and payload["misfit_expression"].shape == (4558, 3)
    assert payload["config"]["extra"]["landmarks"] == "oracle"  # the FOCUS run's landmark source
    focus = torch.load(run / "focus" / "last.pt", weights_only=True)["model"]
    r_syn = payload["model"]["encoder"]
    assert not torch.equal(r_syn["head.weight"], focus["encoder.head.weight"])  # a network of its own
    pictures = np.load(run / "focus-misfit" / "pictures_train.npz")["images"]
    assert pictures.shape[1:] == (3, 32, 32) and (pictures[:, :, 0, 0] == 0).all()  # black background
    again = train("focus-misfit", **settings, resume=True)  # finished: nothing to do, same E_MP
    assert again == log
    assert main(["reconstruct", "--method", "focus-mp", "--checkpoints", str(run), photo, "-o", str(tmp_path / "o")]) == 0
    out = tmp_path / "report"
    assert main(["eval", "pictures", str(run), "--data", str(photos), "-o", str(out)]) == 0
    tests = json.loads((out / "metrics.json").read_text())["misfit_tests"]
    assert set(tests) == {"FOCUS"} and tests["FOCUS"]["identity"]["count"] == 4


def test_em_alternates_one_s_step_then_five_r_steps_per_cycle(photos, tmp_path, monkeypatch):
    from ofer.training import focus

    calls = []
    for name in ("r_step", "s_step", "s_pretrain_step"):
        original = getattr(focus, name)

        def record(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(focus, name, record)
    train(photos, tmp_path / "run", em_cycles=2, r_init_steps=2, s_pretrain_steps=1)
    names = calls
    assert names[:3] == ["r_step", "r_step", "s_pretrain_step"]
    assert names[3:] == (["s_step"] + ["r_step"] * 5) * 2


def test_pictures_pair_each_record_with_its_clean_picture(tiny_run, photos):
    """With ``image_clean`` (``--clean-images``), the identity error is also measured on the clean picture:
    the same picture gives a zero gap, another one a non-zero one, over the occluded records only."""
    from ofer.cli.eval_pictures import paired_table
    from ofer.evaluation.pictures import clean_occluded_tests, evaluate_method, load_pictures_folder
    from ofer.methods.focus.method import FocusMethod

    method = FocusMethod.from_run(tiny_run)
    data = load_pictures_folder(photos)
    assert "image_clean" not in data and "identity_clean" not in evaluate_method(method, data)
    data["image_clean"] = data["image"].copy()
    same = evaluate_method(method, data)
    np.testing.assert_allclose(same["identity_clean"], same["identity"], atol=1e-9)
    data["group"] = np.array(["hand", "unoccluded", "hand", "object"])
    data["image_clean"] = data["image"][:, ::-1].copy()  # a different picture of each scene
    moved = evaluate_method(method, data)
    assert np.abs(moved["identity_gap"]).max() > 0
    test = clean_occluded_tests({"FOCUS": moved}, data["group"])["FOCUS"]
    assert test["count"] == 3
    assert np.isclose(test["occluded"] - test["clean"], moved["identity_gap"][data["group"] != "unoccluded"].mean())
    assert "| FOCUS |" in paired_table({"FOCUS": test}) and paired_table({}) == ""
