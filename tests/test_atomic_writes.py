"""One atomic-write helper everywhere: a failed write (a full disk) leaves an earlier file as it was."""

import numpy as np
import pytest
from PIL import Image

from ofer.cli.main import main
from ofer.io.atomic import save_figure, save_picture


def full_disk(monkeypatch):
    """Make every PIL save write a few bytes and then fail as a full disk does."""
    def torn_save(self, fp, format=None, **params):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", torn_save)


def test_save_picture_writes_the_format_of_the_suffix(tmp_path):
    picture = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG")):
        save_picture(tmp_path / name, picture)
        with Image.open(tmp_path / name) as image:
            assert image.format == fmt and image.size == (4, 4)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), picture)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.jpg"]  # no temporary left


def test_a_failed_save_keeps_the_earlier_picture_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "sheet.png"
    save_picture(path, np.zeros((4, 4, 3), np.uint8))
    before = path.read_bytes()
    full_disk(monkeypatch)
    with pytest.raises(OSError):
        save_picture(path, np.ones((4, 4, 3), np.uint8))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["sheet.png"]


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(tmp_path / "curve.png", fig)
    before = (tmp_path / "curve.png").read_bytes()
    monkeypatch.setattr(fig, "savefig", lambda fp, **kw: (open(fp, "wb").write(b"x"), (_ for _ in ()).throw(OSError(28, "full")))[1])
    with pytest.raises(OSError):
        save_figure(tmp_path / "curve.png", fig)
    plt.close(fig)
    assert (tmp_path / "curve.png").read_bytes() == before and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("command", [["render", "--count", "1", "--size", "32"]])
def test_render_on_a_full_disk_is_one_line_and_keeps_the_earlier_picture(tmp_path, monkeypatch, capsys, command):
    path = tmp_path / "heads.png"
    assert main([*command, "-o", str(path)]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    full_disk(monkeypatch)
    code = main([*command, "-o", str(path)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "No space left on device" in err
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["heads.png"]


def test_written_files_follow_the_umask_and_killed_runs_leftovers_are_cleaned(tmp_path):
    import os
    import stat
    import time

    from ofer.io.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    finally:
        os.umask(old)
    stale, fresh = tmp_path / ".a.json.k1ll3d.tmp.json", tmp_path / ".a.json.wr1t1ng.tmp.json"
    stale.write_text("torn"), fresh.write_text("being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    write_text(tmp_path / "a.json", "[]")
    assert not stale.exists() and fresh.exists()  # a concurrent writer's temporary is left alone
