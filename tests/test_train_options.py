"""``ofer train NAME``: the trainer registry, option validation before any work, default widths, CLI help."""

import dataclasses
import json
from typing import ClassVar

import pytest

from ofer import training
from ofer.cli.main import build_parser, main
from ofer.config import ConfigError
from ofer.runs import load_checkpoint
from ofer.training import ExpGenOptions, IdGenOptions, IdRankOptions, RegressorOptions
from ofer.training.options import TrainOptions, option
from test_training import make_fake_data


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, default_model):
    return make_fake_data(tmp_path_factory.mktemp("small"), default_model, n=64)


def test_registry_lists_the_four_trainers():
    assert set(training.available()) >= {"idgen", "expgen", "idrank", "regressor"}
    assert training.get("idrank").options is IdRankOptions
    with pytest.raises(ConfigError, match="unknown trainer 'nope'"):
        training.get("nope")


@pytest.mark.parametrize("batch", ["0", "-4"])
def test_cli_refuses_a_bad_batch_before_any_work(small_data, tmp_path, capsys, batch):
    code = main(["train", "idgen", "--data", str(small_data), "-o", str(tmp_path / "run"), "--epochs", "1",
                 "--batch", batch, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"ofer: error: --batch must be an integer >= 1, got {batch}"
    assert not (tmp_path / "run").exists()  # no folder, no checkpoint


BASE = dict(data="d", run="r")


@pytest.mark.parametrize("cls, changes, flag", [
    (IdGenOptions, {"epochs": 0}, "--epochs"),
    (IdGenOptions, {"batch_size": 0}, "--batch"),
    (IdGenOptions, {"lr": 0.0}, "--lr"),
    (IdGenOptions, {"lr": -1e-3}, "--lr"),
    (IdGenOptions, {"lr": float("nan")}, "--lr"),
    (IdGenOptions, {"weight_decay": -1.0}, "--weight-decay"),
    (IdGenOptions, {"seed": -1}, "--seed"),
    (IdGenOptions, {"widths": [64, 0]}, "--widths"),
    (IdGenOptions, {"widths": []}, "--widths"),
    (IdGenOptions, {"loss": "huber"}, "--loss"),
    (IdGenOptions, {"domain_directions": -1}, "--domain-directions"),
    (IdGenOptions, {"device": "tpu"}, "--device"),
    (ExpGenOptions, {"batch_size": True}, "--batch"),
    (IdRankOptions, {"candidates": 1}, "--candidates"),
    (IdRankOptions, {"tau": 0.0}, "--tau"),
    (IdRankOptions, {"rank_steps": 0}, "--rank-steps"),
    (IdRankOptions, {"rank_steps": 1001}, "--rank-steps"),
    (IdRankOptions, {"rank_sampler": "euler"}, "--rank-sampler"),
    (IdRankOptions, {"rank_images": 0}, "--rank-images"),
    (IdRankOptions, {"rank_vertices": -1}, "--rank-vertices"),
    (IdRankOptions, {"widths": [32, -1]}, "--widths"),
    (RegressorOptions, {"widths": [0]}, "--widths"),
])
def test_options_are_validated_at_construction(cls, changes, flag):
    with pytest.raises(ConfigError, match=f"^{flag} must"):
        cls(**BASE, **changes)


def test_options_defaults():
    assert IdRankOptions(**BASE).batch_size == 16 and IdRankOptions(**BASE).lr == 3e-4
    assert IdGenOptions(**BASE).batch_size == 256 and IdGenOptions(**BASE).widths is None
    assert IdRankOptions(**BASE, rank_steps=1000).rank_steps == 1000  # the edges are allowed
    assert IdRankOptions(**BASE, candidates=2).candidates == 2
    assert IdGenOptions(**BASE).resolved_widths(106) == [106, 50, 10]
    assert ExpGenOptions(**BASE).resolved_widths(52) == [52, 25, 10]
    assert ExpGenOptions(**BASE, widths=[256, 128, 32]).resolved_widths(52) == [256, 128, 32]


@pytest.mark.parametrize("network, paper", [("idgen", [50, 10]), ("expgen", [25, 10])])
def test_default_widths_follow_the_paper(small_data, tmp_path, default_model, network, paper):
    training.train(network, data=small_data, run=tmp_path, epochs=1, batch_size=64, progress=False)
    net = load_checkpoint(tmp_path / network, network).config.net
    dim = default_model.shape_dim if network == "idgen" else default_model.code_dim
    assert net["input_dim"] == dim and net["widths"] == [dim, *paper]


def test_cli_options_and_help(capsys):
    parser = build_parser()
    args = parser.parse_args(["train", "idrank", "--data", "d", "-o", "r", "--rank-sampler", "ddpm", "--rank-steps",
                              "40", "--candidates", "32", "--rank-images", "10", "--rank-vertices", "0", "--tau", "2",
                              "--quiet", "--resume", "--seed", "3", "--device", "cpu", "--domain-directions", "0"])
    assert (args.rank_sampler, args.rank_steps, args.candidates, args.tau) == ("ddpm", 40, 32, 2.0)
    assert (args.progress, args.resume, args.seed, args.batch_size, args.lr) == (False, True, 3, 16, 3e-4)
    args = parser.parse_args(["train", "expgen", "--data", "d", "-o", "r", "--widths", "256", "128", "32",
                              "--loss", "mse", "--epochs", "3", "--batch", "8", "--lr", "0.01"])
    assert (args.widths, args.loss, args.epochs, args.batch_size, args.lr) == ([256, 128, 32], "mse", 3, 8, 0.01)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "expgen", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "D 50 10 for idgen, D 25 10 for expgen" in text and "shipped weights use 256 128 32" in text
    assert "paper's D 50 10;" not in text


def test_a_new_trainer_needs_no_cli_edit(tmp_path, capsys):
    @dataclasses.dataclass
    class EchoOptions(TrainOptions):
        network: ClassVar[str] = "echo-test"
        help: ClassVar[str] = "test trainer"
        shout: int = option("--shout", default=1, type=int, help="how loud")

    seen = []

    @training.register(EchoOptions)
    def train_echo(options):
        seen.append(options)
        return [{"epoch": 1, "loss": 1.0}, {"epoch": options.epochs, "loss": 0.5}]

    try:
        assert main(["train", "echo-test", "--data", "d", "-o", str(tmp_path), "--shout", "3", "--epochs", "2"]) == 0
    finally:
        training.registry._TRAINERS.pop("echo-test")
    assert seen[0].shout == 3 and seen[0].epochs == 2 and "echo-test: epochs 1..2" in capsys.readouterr().out


def test_idrank_records_its_candidate_sampler(small_data, tmp_path):
    common = ["--data", str(small_data), "-o", str(tmp_path), "--quiet", "--epochs", "1"]
    assert main(["train", "idgen", *common, "--batch", "64", "--widths", "32", "16"]) == 0
    assert main(["train", "idrank", *common, "--candidates", "4", "--rank-images", "8", "--rank-sampler", "ddpm",
                 "--rank-steps", "3", "--rank-vertices", "16", "--widths", "32", "16", "--batch", "4"]) == 0
    config = load_checkpoint(tmp_path / "idrank", "idrank").config
    assert (config.extra["sampler"], config.extra["steps"]) == ("ddpm", 3)
    assert (config.training["rank_sampler"], config.training["rank_steps"]) == ("ddpm", 3)
    saved = json.loads((tmp_path / "idrank" / "config.json").read_text())
    assert saved["extra"]["sampler"] == "ddpm"


def test_candidate_signature_depends_on_sampler_and_steps(small_data, tmp_path):
    from ofer.training.common import TrainingData
    from ofer.training.idrank import candidate_signature

    data = TrainingData.open(small_data)
    file = tmp_path / "last.pt"
    file.write_bytes(b"idgen weights")
    base = candidate_signature(IdRankOptions(**BASE), data, 8, file)
    assert candidate_signature(IdRankOptions(**BASE, rank_sampler="ddpm"), data, 8, file) != base
    assert candidate_signature(IdRankOptions(**BASE, rank_steps=26), data, 8, file) != base
    assert candidate_signature(IdRankOptions(**BASE, lr=1e-2), data, 8, file) == base
    file.write_bytes(b"other idgen weights")  # a retrained IdGen invalidates the cache
    assert candidate_signature(IdRankOptions(**BASE), data, 8, file) != base


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_missing_device_is_a_one_line_error(small_data, tmp_path, capsys):
    code = main(["train", "idgen", "--data", str(small_data), "-o", str(tmp_path / "run"), "--device", "cuda"])
    assert code == 2 and "--device cuda: no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
