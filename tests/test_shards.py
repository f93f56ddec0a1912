import numpy as np
import pytest

from ofer.data.shards import Manifest, ShardDataset, ShardRecord, arrays_checksum, read_npz, shard_name, stack_samples, write_npz
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


def test_manifest_round_trip_and_missing_shard(tmp_path):
    manifest = make_folder(tmp_path)
    again = Manifest.load(tmp_path)
    assert again.same_recipe(manifest) and again.dataset_checksum() == manifest.dataset_checksum()
    (tmp_path / shard_name(1)).unlink()
    with pytest.raises(InputError, match="missing 1 shard"):
        ShardDataset(tmp_path)
    with pytest.raises(InputError, match="not a data folder"):
        Manifest.load(tmp_path / "nowhere")
