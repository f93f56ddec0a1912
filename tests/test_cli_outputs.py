"""Output paths are checked before any compute, and a write error costs one image, not the run."""

import os

import pytest

from conftest import SHARED
from ofer.cli.main import main
from ofer.cli.outputs import output_file, output_folder
from ofer.errors import OferError

FACES = SHARED / "assets" / "faces"
QUICK = ["--shapes", "4", "--expressions", "2", "--steps", "5"]
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason="../shared/assets/faces is not available")


def test_output_folder_and_file_checks(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert output_file(tmp_path / "new" / "a.png") == tmp_path / "new" / "a.png"
    with pytest.raises(OferError, match="exists and is not a folder"):
        output_folder(tmp_path / "file")
    with pytest.raises(OferError, match="is a folder; give a file name"):
        output_file(tmp_path, "--json")
    with pytest.raises(OferError, match="file is not a folder"):
        output_file(tmp_path / "file" / "a.png")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder (root ignores modes)
    with pytest.raises(OferError, match="is not writable"):
        output_folder(tmp_path / "new")


@pytest.mark.parametrize("command", [
    ["synth", "train", "--n", "4", "-o", "{file}"],
    ["demo", "-o", "{file}"],
    ["render", "-o", "{dir}"],
    ["facemodel", "export", "-o", "{dir}"],
    ["eval", "now", "--pred", "{dir}", "--gt", "{dir}", "--json", "{dir}"],
])
def test_unwritable_outputs_fail_in_one_line_before_any_work(tmp_path, capsys, command):
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in command]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("is not a folder" in err or "give a file name" in err)
    assert (tmp_path / "file").read_text() == "x"


@needs_faces
def test_reconstruct_to_a_file_and_a_full_disk_keep_earlier_results(tmp_path, capsys, monkeypatch):
    import ofer.methods.outputs as outputs

    (tmp_path / "file").write_text("x")
    images = [str(FACES / "obama.jpg"), str(FACES / "biden.jpg")]
    assert main(["reconstruct", images[0], "-o", str(tmp_path / "file"), *QUICK]) != 0
    assert "exists and is not a folder" in capsys.readouterr().err
    out = tmp_path / "out"
    (out / ".obama.k1ll3d").mkdir(parents=True)  # the staging folder of a killed run
    os.utime(out / ".obama.k1ll3d", (0, 0))
    old_umask = os.umask(0o022)
    try:
        assert main(["reconstruct", images[0], "-o", str(out), *QUICK]) == 0
    finally:
        os.umask(old_umask)
    assert not (out / ".obama.k1ll3d").exists()
    assert (out / "obama").stat().st_mode & 0o777 == 0o755  # the umask's mode, not mkdtemp's 0700
    kept = (out / "obama" / "summary.json").read_bytes()
    capsys.readouterr()
    write = outputs._write_files

    def full_disk(folder, rec, *rest):
        if rec.name == "obama":
            raise OSError(28, "No space left on device")
        return write(folder, rec, *rest)

    monkeypatch.setattr(outputs, "_write_files", full_disk)
    assert main(["reconstruct", *images, "-o", str(out), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "obama" in err and "No space left on device" in err and "Traceback" not in err
    assert (out / "obama" / "summary.json").read_bytes() == kept  # the earlier result is intact
    assert (out / "biden" / "summary.json").is_file()  # the other image went on
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


@needs_faces
def test_a_group_photo_says_that_only_the_main_face_was_reconstructed(tmp_path, capsys):
    import json

    assert main(["reconstruct", str(FACES / "t1.jpg"), "-o", str(tmp_path), *QUICK]) == 0
    assert "6 faces found; reconstructed the main one" in capsys.readouterr().err
    assert json.loads((tmp_path / "t1" / "summary.json").read_text())["faces_in_image"] == 6


@needs_faces
def test_an_allocation_failure_costs_one_image_and_a_full_disk_in_embed_is_one_line(tmp_path, capsys, monkeypatch):
    import numpy as np

    from ofer.methods.ofer.method import OFER

    reconstruct = OFER.reconstruct

    def greedy(self, images, settings=None, names=None, place=True):
        if names == ["obama"]:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 5500000000 bytes.")
        return reconstruct(self, images, settings, names, place)

    monkeypatch.setattr(OFER, "reconstruct", greedy)
    images = [str(FACES / "obama.jpg"), str(FACES / "biden.jpg")]
    assert main(["reconstruct", *images, "-o", str(tmp_path / "out"), *QUICK]) == 1
    err = capsys.readouterr().err
    assert "obama.jpg: out of memory" in err and "Traceback" not in err
    assert (tmp_path / "out" / "biden" / "summary.json").is_file()
    monkeypatch.undo()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "e.npz"))

    monkeypatch.setattr(np, "savez", full)
    assert main(["embed", images[1], "-o", str(tmp_path / "e.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"ofer: error: {tmp_path / 'e.npz'}: No space left on device" and not (tmp_path / "e.npz").exists()


def test_sample_counts_beyond_the_available_memory_are_refused_up_front(tmp_path, capsys, monkeypatch):
    import ofer.methods.ofer.method as method

    monkeypatch.setattr(method, "available_memory", lambda: 2**30)
    code = main(["reconstruct", str(tmp_path / "never_read.jpg"), "-o", str(tmp_path / "out"),
                 "--shapes", "100000", "--expressions", "16"])
    err = [line for line in capsys.readouterr().err.splitlines() if "building the default head" not in line]
    assert code != 0 and len(err) == 1
    assert "--shapes 100000 --expressions 16 need about 4.7 GiB per image, 1.0 GiB is available" in err[0]


@needs_faces
def test_all_faces_reconstructs_every_face_of_a_group_photo(tmp_path, capsys):
    assert main(["reconstruct", str(FACES / "t1.jpg"), "-o", str(tmp_path), "--all-faces", *QUICK]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t1_face{k}" for k in range(6)]
    assert "reconstructed the main one" not in capsys.readouterr().err
    assert main(["reconstruct", str(FACES / "t1.jpg"), "-o", str(tmp_path / "fit"), "--all-faces",
                 "--method", "fit"]) != 0
    assert "--all-faces is not available for method 'fit'" in capsys.readouterr().err
