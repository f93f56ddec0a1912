"""``ofer train --resume``: a changed learning rate (or batch) is applied and logged; a change of the
architecture or the data is refused in one line naming the option."""

import json

import pytest
import torch

from ofer import training
from ofer.cli.main import main
from ofer.errors import CheckpointError, OferError
from ofer.runs import load_checkpoint
from test_training import make_fake_data

SMALL = dict(batch_size=32, lr=2e-3, seed=1, progress=False, widths=[32, 16])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, default_model):
    return make_fake_data(tmp_path_factory.mktemp("small"), default_model, n=64)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory, default_model):
    return make_fake_data(tmp_path_factory.mktemp("other"), default_model, n=64, seed=5)


def run_folder(tmp_path_factory, small_data, network="idgen", epochs=2):
    run = tmp_path_factory.mktemp("run")
    training.train(network, data=small_data, run=run, epochs=epochs, **SMALL)
    return run


def rows(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_resume_applies_a_new_learning_rate(small_data, tmp_path_factory, capsys):
    run = run_folder(tmp_path_factory, small_data)
    capsys.readouterr()
    training.train("idgen", data=small_data, run=run, epochs=3, resume=True, **dict(SMALL, lr=5e-4))
    payload = load_checkpoint(run / "idgen", "idgen").payload
    assert [g["lr"] for g in payload["optimizer"]["param_groups"]] == [5e-4]
    assert payload["epoch"] == 3 and load_checkpoint(run / "idgen").config.training["lr"] == 5e-4
    log = rows(run / "idgen")
    assert [r["epoch"] for r in log] == [1, 2, 3] and [r["lr"] for r in log] == [2e-3, 2e-3, 5e-4]
    assert log[2]["resumed"] == {"lr": [2e-3, 5e-4]} and "resumed" not in log[1]
    err = capsys.readouterr().err.strip().splitlines()
    assert "idgen: resuming after epoch 2 with --lr 0.0005 (was 0.002)" in err


def test_resume_applies_batch_and_weight_decay(small_data, tmp_path_factory):
    run = run_folder(tmp_path_factory, small_data, "regressor", epochs=1)
    training.train("regressor", data=small_data, run=run, epochs=2, resume=True,
                   **dict(SMALL, batch_size=16, weight_decay=0.01))
    payload = load_checkpoint(run / "regressor").payload
    assert payload["optimizer"]["param_groups"][0]["weight_decay"] == 0.01
    assert rows(run / "regressor")[1]["resumed"] == {"batch_size": [32, 16], "weight_decay": [0.0, 0.01]}


@pytest.mark.parametrize("changes, flag", [
    ({"widths": [64, 16]}, "--widths"),
    ({"loss": "mse"}, "--loss"),
    ({"domain_directions": 0}, "--domain-directions"),
    ({"seed": 2}, "--seed"),
])
def test_resume_refuses_options_that_define_the_network(small_data, tmp_path_factory, changes, flag):
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    before = (run / "idgen" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match=f"--resume cannot change {flag} ") as info:
        training.train("idgen", data=small_data, run=run, epochs=2, resume=True, **dict(SMALL, **changes))
    assert "\n" not in str(info.value)
    assert (run / "idgen" / "last.pt").read_bytes() == before


def test_resume_refuses_default_widths_over_explicit_ones(small_data, tmp_path_factory):
    """widths=None resolves to the paper's [S, 50, 10], which differs from the run's [32, 16]."""
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    with pytest.raises(CheckpointError, match=r"--widths \(the run has \[32, 16\], asked \[106, 50, 10\]\)"):
        training.train("idgen", data=small_data, run=run, epochs=2, resume=True, **dict(SMALL, widths=None))


def test_resume_refuses_other_data(small_data, other_data, tmp_path_factory):
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    with pytest.raises(CheckpointError, match="--resume cannot change --data"):
        training.train("idgen", data=other_data, run=run, epochs=2, resume=True, **SMALL)


def test_cli_resume_with_changed_widths_is_one_line(small_data, tmp_path_factory, capsys):
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    capsys.readouterr()
    code = main(["train", "idgen", "--data", str(small_data), "-o", str(run), "--epochs", "2", "--batch", "32",
                 "--lr", "0.002", "--seed", "1", "--widths", "64", "16", "--resume", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--resume cannot change --widths" in err


def test_idrank_resume_refuses_other_candidates_before_sampling(small_data, tmp_path_factory):
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    rank = dict(progress=False, epochs=1, candidates=4, rank_images=8, rank_steps=2, rank_vertices=16,
                widths=[32, 16], batch_size=4)
    training.train("idrank", data=small_data, run=run, **rank)
    (run / "idrank" / "candidates.pt").unlink()
    for changes, flag in (({"candidates": 6}, "--candidates"), ({"rank_vertices": 8}, "--rank-vertices"),
                          ({"rank_sampler": "ddpm"}, "--rank-sampler")):
        with pytest.raises(CheckpointError, match=f"--resume cannot change {flag} "):
            training.train("idrank", data=small_data, run=run, resume=True, **dict(rank, epochs=2, **changes))
        assert not (run / "idrank" / "candidates.pt").exists()  # refused before drawing candidates
    training.train("idrank", data=small_data, run=run, resume=True, **dict(rank, epochs=2, tau=0.5))
    assert rows(run / "idrank")[1]["resumed"] == {"tau": [1.0, 0.5]}


def test_resume_on_cpu_device_is_exact_with_a_cpu_generator(small_data, tmp_path_factory):
    a = run_folder(tmp_path_factory, small_data, "expgen", epochs=3)
    b = run_folder(tmp_path_factory, small_data, "expgen", epochs=1)
    training.train("expgen", data=small_data, run=b, epochs=3, resume=True, device="cpu", **SMALL)
    wa, wb = (load_checkpoint(r / "expgen").payload["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert isinstance(load_checkpoint(b / "expgen").payload["generator"], torch.Tensor)


def test_existing_run_without_resume_is_refused_before_reading_data(small_data, tmp_path_factory):
    run = run_folder(tmp_path_factory, small_data, epochs=1)
    with pytest.raises(OferError, match="a run already exists; pass --resume"):
        training.train("idgen", data=tmp_path_factory.mktemp("nodata"), run=run, epochs=2, **SMALL)


def test_resume_drops_a_torn_last_log_line(small_data, tmp_path_factory):
    run = run_folder(tmp_path_factory, small_data)
    log = run / "idgen" / "log.jsonl"
    with open(log, "a") as handle:
        handle.write('{"epoch": 3, "loss": 0.')  # a kill or a full disk during the append
    training.train("idgen", data=small_data, run=run, epochs=3, resume=True, **SMALL)
    assert [r["epoch"] for r in rows(run / "idgen")] == [1, 2, 3]


def test_an_unreadable_log_line_before_the_last_is_one_line(small_data, tmp_path_factory, capsys):
    run = run_folder(tmp_path_factory, small_data)
    log = run / "idgen" / "log.jsonl"
    log.write_text("garbage\n" + log.read_text())
    code = main(["train", "idgen", "--data", str(small_data), "-o", str(run), "--epochs", "3", "--resume",
                 "--widths", "32", "16", "--batch", "32", "--lr", "2e-3", "--seed", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "line 1 is not a log row" in err


def test_resume_onto_exported_weights_is_refused_in_one_line(small_data, tmp_path_factory):
    from ofer.runs import save_checkpoint

    run = run_folder(tmp_path_factory, small_data)
    checkpoint = load_checkpoint(run / "idgen", "idgen")
    save_checkpoint(run / "idgen", checkpoint.config, {"model": checkpoint.payload["model"], "epoch": 2})
    with pytest.raises(CheckpointError, match="exported weights without the training state") as info:
        training.train("idgen", data=small_data, run=run, epochs=3, resume=True, **SMALL)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("killed_at", [1, 2])
def test_a_kill_during_a_checkpoint_save_leaves_each_epoch_once_in_the_log(small_data, tmp_path_factory,
                                                                           monkeypatch, killed_at):
    from ofer.training import loop

    real_save = loop.save_checkpoint

    def killed_save(folder, config, state):
        if state["epoch"] == killed_at:
            raise KeyboardInterrupt  # the log row of this epoch is written, its checkpoint is not
        real_save(folder, config, state)

    run = tmp_path_factory.mktemp("run")
    monkeypatch.setattr(loop, "save_checkpoint", killed_save)
    with pytest.raises(KeyboardInterrupt):
        training.train("idgen", data=small_data, run=run, epochs=3, **SMALL)
    assert rows(run / "idgen")[-1]["epoch"] == killed_at
    monkeypatch.undo()
    training.train("idgen", data=small_data, run=run, epochs=3, resume=True, **SMALL)
    assert [r["epoch"] for r in rows(run / "idgen")] == [1, 2, 3]
