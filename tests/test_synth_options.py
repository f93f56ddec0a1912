"""The data engine's settings, without rendering: the recipe config, option checks, and the encoder choice
reaching the workers and the manifest (the sample maker is replaced by a stub)."""

import json

import numpy as np
import pytest
import torch

from ofer.cli.main import main
from ofer.config import ConfigError
from ofer.data import synth
from ofer.data.recipe import SynthConfig, parse_mix, protocol_config
from ofer.data.shards import Manifest, read_npz, shard_name
from ofer.errors import InputError

DINOV2 = {"name": "dinov2-vits14-imgfocus", "dim": 768}

# A default SynthConfig as the previous code wrote it into manifest.json (tuples became lists).
OLD_MANIFEST_CONFIG = {
    "image_size": 256, "yaw_deg": 30.0, "pitch_deg": 15.0, "roll_deg": 8.0, "distance_m": [0.6, 1.4],
    "field_m": [0.3, 0.4], "centre_jitter": 0.04, "occluder_mix": {"hand": 0.3, "object": 0.35, "random": 0.25,
    "none": 0.1}, "occluder_coverage": [0.1, 0.6], "neutral_fraction": 0.1, "min_expression": 0.0,
    "jpeg_quality": [60, 95], "blur_sigma": [0.0, 1.0], "noise_sigma": [0.0, 4.0], "store_clean_image": False,
    "partial_occlusion": False, "identities": 0, "categories_cycle": [],
}


# -- the recipe -------------------------------------------------------------------------------
def test_config_from_an_existing_manifest_loads_and_round_trips():
    config = SynthConfig.from_dict(OLD_MANIFEST_CONFIG)
    assert config == SynthConfig() and config.distance_m == (0.6, 1.4) and config.categories_cycle == ()
    protocol = protocol_config()
    assert SynthConfig.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol


def test_config_from_dict_is_strict():
    with pytest.raises(ConfigError, match="unknown SynthConfig field.*image_sise"):
        SynthConfig.from_dict({**OLD_MANIFEST_CONFIG, "image_sise": 128})
    with pytest.raises(ConfigError, match="manifest.json: synth config: image_size must be an integer >= 32"):
        SynthConfig.from_dict({"image_size": 8}, where="manifest.json")


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 0}, "image_size must be an integer >= 32 and <= 4096, got 0"),
    ({"jpeg_quality": (95, 60)}, r"jpeg_quality must be \(low, high\) with 1 <= low <= high <= 100"),
    ({"jpeg_quality": (60.5, 90)}, "jpeg_quality must be two integers"),
    ({"distance_m": (0.6,)}, r"distance_m must be \(low, high\)"),
    ({"neutral_fraction": 1.5}, r"neutral_fraction must be a number in \[0.0, 1.0\], got 1.5"),
    ({"occluder_mix": {"hat": 1.0}}, r"unknown occluder categories \['hat'\]"),
    ({"occluder_mix": {"hand": 0.0}}, "the occluder mix must have a positive weight"),
    ({"occluder_mix": {"hand": -1.0, "none": 2.0}}, r"occluder_mix\[hand\] must be a number"),
    ({"categories_cycle": ("hand", "hat")}, r"unknown occluder categories \['hat'\]"),
    ({"identities": -1}, "identities must be an integer >= 0"),
    ({"closed_eyes_fraction": -0.1}, r"closed_eyes_fraction must be a number in \[0.0, 1.0\]"),
])
def test_bad_recipes_are_refused_at_construction(changes, message):
    with pytest.raises(ConfigError, match=message):
        SynthConfig(**changes)
    with pytest.raises(ConfigError, match=message):  # and on every copy
        SynthConfig().replace(**changes)


def test_parse_mix():
    assert parse_mix("hand=0.5, none=1") == {"hand": 0.5, "none": 1.0}
    with pytest.raises(ConfigError, match="bad occluder mix entry 'hand:1'"):
        parse_mix("hand:1")


# -- the command line -------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "--n", "0"], "--n must be an integer >= 1, got 0"),
    (["train", "--n", "4", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
    (["train", "--n", "4", "--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["train", "--n", "4", "--shard-size", "0"], "--shard-size must be an integer >= 1, got 0"),
    (["train", "--n", "4", "--mix", "hand=0"], "the occluder mix must have a positive weight"),
    (["train", "--n", "4", "--appearance", "farl"], "unknown appearance encoder 'farl' (choose from "
                                                    "mediapipe-blendshapes-landmarks, dinov2-vits14-imgfocus"),
    (["train", "--n", "4", "--appearance", "arcface"], "unknown appearance encoder 'arcface'"),
    (["train", "--n", "4", "--closed-eyes", "1.5"], "--closed-eyes must be a fraction in [0, 1], got 1.5"),
    (["train", "--n", "4", "--closed-eyes", "nan"], "--closed-eyes must be a fraction in [0, 1], got nan"),
    (["protocol", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
    (["protocol", "--appearance", "farl"], "unknown appearance encoder 'farl'"),
])
def test_bad_options_give_one_line_before_any_work(tmp_path, capsys, argv, message):
    folder = tmp_path / "data"
    assert main(["synth", *argv, "-o", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ofer: error: ") and message in err and err.count("\n") == 1
    assert not folder.exists()


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count must be an integer >= 1, got 0"),
    (["--columns", "0"], "--columns must be an integer >= 1, got 0"),
    (["-o", "sheet.xyz"], "unknown picture type"),
])
def test_bad_preview_options(tmp_path, capsys, argv, message):
    args = ["synth", "preview", str(tmp_path / "nowhere"), "-o", str(tmp_path / "sheet.png"), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_checks_its_numbers_first(tmp_path):
    with pytest.raises(ConfigError, match="the number of workers must be an integer >= 1, got 0"):
        synth.generate(tmp_path / "d", "no-such-model", 4, 0, SynthConfig(), workers=0)
    with pytest.raises(InputError, match="unknown data kind 'test'"):
        synth.generate(tmp_path / "d", "no-such-model", 4, 0, SynthConfig(), kind="test")
    assert not (tmp_path / "d").exists()


# -- the appearance encoder reaches the workers and the manifest -------------------------------
class StubMaker:
    """Stands in for SampleMaker: records what each worker was built with."""

    built: list = []

    def __init__(self, spec, config, backend="auto", encoders=None):
        StubMaker.built.append({"spec": spec, "config": config, "encoders": encoders})
        self.appearance_dim = encoders["appearance"]["dim"]

    def make_shard(self, start, count, seed):
        index = np.arange(start, start + count)
        return {"index": index, "appearance": np.zeros((count, self.appearance_dim), np.float32)}


class InlinePool:
    """multiprocessing's Pool, run in this process (initializer and initargs as given)."""

    def __init__(self, processes, initializer, initargs):
        initializer(*initargs)

    def imap_unordered(self, func, jobs):
        return map(func, jobs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class InlineContext:
    Pool = InlinePool


@pytest.fixture
def stub_workers(monkeypatch):
    StubMaker.built = []
    monkeypatch.setattr(synth, "SampleMaker", StubMaker)
    monkeypatch.setattr(synth.multiprocessing, "get_context", lambda method: InlineContext())
    monkeypatch.setenv("OFER_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    yield StubMaker.built
    torch.set_num_threads(threads)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_chosen_appearance_encoder_reaches_workers_and_manifest(tmp_path, default_model, stub_workers, workers):
    manifest, made = synth.generate(tmp_path / "d", "default", 3, 5, SynthConfig(image_size=64), workers=workers,
                                    shard_size=2, progress=False, appearance="dinov2")
    assert made == 2 and stub_workers and all(b["encoders"]["appearance"] == DINOV2 for b in stub_workers)
    assert all(b["config"] == SynthConfig(image_size=64) for b in stub_workers)
    assert manifest.encoders == {"identity": {"name": "arcface-w600k_mbf", "dim": 512}, "appearance": DINOV2}
    assert Manifest.load(tmp_path / "d").encoders == manifest.encoders
    assert read_npz(tmp_path / "d" / shard_name(1))["index"].tolist() == [2]
    # resuming the folder with another appearance encoder would mix embeddings: refused
    with pytest.raises(InputError, match="holds other data"):
        synth.generate(tmp_path / "d", "default", 3, 5, SynthConfig(image_size=64), shard_size=2, progress=False)


def test_a_real_worker_embeds_with_the_chosen_encoder(default_model, monkeypatch):
    monkeypatch.setenv("OFER_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    try:
        record = synth.synth_encoders("dinov2")
        synth._init_worker("default", SynthConfig(image_size=64).to_dict(), record, 1)
        assert synth._WORKER.encoders == record and synth._WORKER.frontend.appearance.name == DINOV2["name"]
    finally:
        torch.set_num_threads(threads)
        synth._WORKER = None


def test_the_command_passes_the_appearance_encoder_on(tmp_path, default_model, stub_workers, capsys):
    folder = tmp_path / "d"
    assert main(["synth", "train", "--n", "2", "--shard-size", "1", "--appearance", "dinov2", "-o", str(folder)]) == 0
    assert "generated 2 shard(s)" in capsys.readouterr().out
    assert Manifest.load(folder).encoders["appearance"] == DINOV2
    assert [b["encoders"]["appearance"] for b in stub_workers] == [DINOV2]
