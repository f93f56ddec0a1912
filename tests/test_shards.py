import json

import numpy as np
import pytest

from ofer.data.shards import (
    Manifest,
    ShardDataset,
    ShardRecord,
    arrays_checksum,
    pack_bits,
    read_npz,
    shard_name,
    stack_samples,
    unpack_bits,
    write_npz,
)
from ofer.errors import InputError


def test_write_npz_is_byte_reproducible_and_loadable(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.float32), "img": np.zeros((2, 4, 4, 3), np.uint8)}
    write_npz(tmp_path / "x.npz", arrays)
    first = (tmp_path / "x.npz").read_bytes()
    write_npz(tmp_path / "y.npz", arrays)
    assert (tmp_path / "y.npz").read_bytes() == first
    loaded = np.load(tmp_path / "x.npz")
    assert np.array_equal(loaded["a"], arrays["a"]) and loaded["img"].shape == (2, 4, 4, 3)
    assert arrays_checksum(read_npz(tmp_path / "x.npz")) == arrays_checksum(arrays)


def test_damaged_shard_is_named(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz: damaged shard"):
        read_npz(tmp_path / "bad.npz")


def make_folder(tmp_path, n=5, shard_size=2):
    manifest = Manifest("train", "test-1", {"spec": "x"}, 0, n, shard_size, {})
    for index in range(manifest.num_shards):
        start, count = manifest.shard_range(index)
        samples = [{"shape": np.full(3, start + k, np.float32), "idx": np.int64(start + k)} for k in range(count)]
        arrays = stack_samples(samples)
        write_npz(tmp_path / shard_name(index), arrays)
        manifest.shards.append(ShardRecord(shard_name(index), start, count, arrays_checksum(arrays)))
    manifest.save(tmp_path)
    return manifest


def test_dataset_reads_every_sample_in_order(tmp_path):
    make_folder(tmp_path)
    ds = ShardDataset(tmp_path, fields=("shape",))
    assert len(ds) == 5
    assert [int(ds[i]["shape"][0]) for i in range(5)] == [0, 1, 2, 3, 4]
    assert set(ds[0]) == {"shape"}
    assert ds.arrays(["idx"])["idx"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        ds[5]


@pytest.mark.parametrize("field, value, message", [
    ("shape", np.zeros((1, 3), np.float32), "field 'shape' has 1 rows, the manifest says 2"),
    ("shape", np.zeros((0, 3), np.float32), "field 'shape' has 0 rows, the manifest says 2"),
    ("idx", np.array("x"), "field 'idx' is not numeric: dtype <U1"),
    ("idx", np.float32(3.0), "field 'idx' has no rows"),
])
def test_a_shard_edited_after_it_was_made_is_refused_in_one_line(tmp_path, field, value, message):
    """Fields of another length would silently pair one sample's shape with another's embedding."""
    make_folder(tmp_path)
    arrays = read_npz(tmp_path / shard_name(1))
    arrays[field] = value
    np.savez(tmp_path / shard_name(1), **arrays)
    ds = ShardDataset(tmp_path, fields=("shape", "idx"))
    assert int(ds[0]["idx"]) == 0  # the intact shard still reads
    with pytest.raises(InputError, match=f"{shard_name(1)}: damaged shard \\({message}"):
        ds[2]
    with pytest.raises(InputError, match="damaged shard"):
        ds.arrays(["idx"])


def test_a_member_that_does_not_inflate_is_a_damaged_shard(tmp_path):
    """zlib's error comes when numpy reads the member, after the zip directory looked fine."""
    write_npz(tmp_path / "x.npz", {"a": np.arange(4000, dtype=np.float32)})
    data = bytearray((tmp_path / "x.npz").read_bytes())
    start = data.index(b"a.npy") + len(b"a.npy") + 40  # inside the deflated data of the first member
    data[start:start + 64] = bytes(64)
    (tmp_path / "x.npz").write_bytes(bytes(data))
    with pytest.raises(InputError, match="x.npz: damaged shard"):
        read_npz(tmp_path / "x.npz")


def test_manifest_round_trip_and_missing_shard(tmp_path):
    manifest = make_folder(tmp_path)
    again = Manifest.load(tmp_path)
    assert again.same_recipe(manifest) and again.dataset_checksum() == manifest.dataset_checksum()
    (tmp_path / shard_name(1)).unlink()
    with pytest.raises(InputError, match="missing 1 shard"):
        ShardDataset(tmp_path)
    with pytest.raises(InputError, match="not a data folder"):
        Manifest.load(tmp_path / "nowhere")


def test_bits_round_trip():
    mask = np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1, 1]], bool)
    packed = pack_bits(mask)
    assert packed.tolist() == [[0b10110000, 0b11000000]]
    assert np.array_equal(unpack_bits(packed, 10), mask)


def test_a_failed_shard_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_npz(tmp_path / "x.npz", {"a": np.arange(3)})
    before = (tmp_path / "x.npz").read_bytes()
    with pytest.raises(ValueError):  # object arrays need pickling, which shards never allow
        write_npz(tmp_path / "x.npz", {"a": np.array([{"no": 1}], dtype=object)})
    assert (tmp_path / "x.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_manifest_load_is_strict(tmp_path):
    make_folder(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**raw, "sede": 1}))
    with pytest.raises(InputError, match=r"manifest.json: damaged manifest \(.*unknown Manifest field\(s\) sede"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**raw, "shard_size": 0}))
    with pytest.raises(InputError, match="shard_size must be an integer >= 1, got 0"):
        Manifest.load(tmp_path)


FACE = {"spec": "default", "name": "anny-head", "num_vertices": 5000, "num_faces": 9000, "shape_dim": 50,
        "expression_dim": 52, "pose_dim": 3, "jaw_dim": 0, "fingerprint": "a" * 64, "options": {}}


def manifest_for(face_model):
    return Manifest("train", "test-1", face_model, 0, 4, 2, {})


def test_check_face_model_accepts_the_same_model():
    manifest_for(FACE).check_face_model(dict(FACE), "data")


def test_check_face_model_refuses_another_fingerprint():
    with pytest.raises(InputError, match="data: data made for a different 'default' face model .*"
                                         "aaaaaaaaaaaa vs bbbbbbbbbbbb"):
        manifest_for(FACE).check_face_model({**FACE, "fingerprint": "b" * 64}, "data")


def test_check_face_model_refuses_other_dimensions_and_a_missing_fingerprint():
    with pytest.raises(InputError, match=r"data: data made for face model 'default', not 'npz:x.npz' "
                                         r"\(shape_dim 50 vs 100\)"):
        manifest_for(FACE).check_face_model({**FACE, "spec": "npz:x.npz", "shape_dim": 100}, "data")
    old = {k: v for k, v in FACE.items() if k != "fingerprint"}
    with pytest.raises(InputError, match="data: data made without a face-model fingerprint"):
        manifest_for(old).check_face_model(FACE, "data")


def test_stored_code_is_expression_then_jaw():
    import torch

    from ofer.data.shards import code_fields, stored_code

    assert code_fields(0) == ["expression"] and code_fields(3) == ["expression", "jaw"]
    cols = {"expression": np.array([[1.0, 2.0]]), "jaw": np.array([[3.0, 4.0, 5.0]])}
    assert stored_code(cols, 3).tolist() == [[1, 2, 3, 4, 5]]
    assert stored_code(cols, 0).tolist() == [[1, 2]]
    tcols = {k: torch.as_tensor(v) for k, v in cols.items()}
    assert torch.equal(stored_code(tcols, 3), torch.tensor([[1.0, 2, 3, 4, 5]], dtype=torch.float64))
