"""vltbench.data: the embedded set, digits, image folders and the ImageNet layout.

conftest.py points VLTBENCH_CACHE at one folder per session, so the default embedded set is built once."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from PIL import Image

from vltbench.data import ArrayImageSet, dataset_info, embedded, load_dataset
from vltbench.core.errors import UserError
from vltbench.core.paths import cache_dir


def write_images(folder, n, size=(24, 20), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_embedded_defaults_and_cache():
    was_cached = bool(list(cache_dir("data").glob("embedded-*.npz")))  # VLTBENCH_TEST_CACHE may hold it
    t0 = time.perf_counter()
    ds = load_dataset("embedded")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = load_dataset("embedded")
    print(f"\nembedded set: first load {first:.2f} s ({'cached' if was_cached else 'cold'}), "
          f"cached load {time.perf_counter() - t0:.2f} s")

    assert ds.num_classes >= 10 and len(ds.class_names) == ds.num_classes
    assert len(ds.train) >= 20_000 and len(ds.val) >= 2_000
    for split in (ds.train, ds.val):
        counts = np.bincount(split.labels, minlength=ds.num_classes)
        assert counts.max() - counts.min() <= 1  # balanced
    batch = ds.train.images(np.array([0, 5, 20_000]))
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.uint8
    assert ds.val.images(slice(0, 4)).shape == (4, 3, 32, 32)

    assert list(cache_dir("data").glob("embedded-*.npz"))
    assert again.manifest_hash == ds.manifest_hash
    assert np.array_equal(again.train.pixels, ds.train.pixels) and np.array_equal(again.val.pixels, ds.val.pixels)
    info = dataset_info(ds)
    assert info == {"name": "embedded", "manifest_hash": ds.manifest_hash, "image_size": 32,
                     "num_train": len(ds.train), "num_val": len(ds.val), "num_classes": ds.num_classes}


def test_embedded_splits_are_disjoint():
    arrays = embedded.build()  # the cached default set
    for c, (h, w) in enumerate(arrays["photo_sizes"]):
        train = arrays["train_boxes"][arrays["train_labels"] == c]
        val = arrays["val_boxes"][arrays["val_labels"] == c]
        cut = embedded.regions(int(w))["val"][0]
        assert (train[:, 2] <= cut).all() and (val[:, 0] >= cut).all()
        for b in (train, val):
            assert (b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        # no train box intersects any val box (half-open boxes)
        t, v = train[:, None, :], val[None, :, :]
        overlap = (t[..., 0] < v[..., 2]) & (v[..., 0] < t[..., 2]) & (t[..., 1] < v[..., 3]) & (v[..., 1] < t[..., 3])
        assert not overlap.any()


def test_embedded_is_deterministic():
    sources = embedded.photos()
    a, b = (embedded.generate(16, 0, 130, 26, sources) for _ in range(2))
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    other = embedded.generate(16, 1, 130, 26, sources)
    assert not np.array_equal(a["train_images"], other["train_images"])


def test_manifest_hash_follows_content(tmp_path):
    x = np.zeros((4, 3, 8, 8), np.uint8)
    y = np.arange(4)
    h = ArrayImageSet.from_arrays("t", x, y, ["a"] * 4).manifest_hash
    x2 = x.copy()
    x2[1, 0, 0, 0] = 1
    assert ArrayImageSet.from_arrays("t", x2, y, ["a"] * 4).manifest_hash != h
    assert ArrayImageSet.from_arrays("t", x.copy(), y, ["a"] * 4).manifest_hash == h

    a = load_dataset("embedded", seed=0, image_size=8, train_count=26, val_count=13)
    b = load_dataset("embedded", seed=1, image_size=8, train_count=26, val_count=13)
    assert a.manifest_hash != b.manifest_hash

    write_images(tmp_path / "cat", 4)
    write_images(tmp_path / "dog", 4, seed=1)
    before = load_dataset("folder", root=tmp_path, image_size=8)
    assert load_dataset("folder", root=tmp_path, image_size=8).manifest_hash == before.manifest_hash
    write_images(tmp_path / "dog", 1, seed=2)  # same name and size, new pixels
    assert load_dataset("folder", root=tmp_path, image_size=8).manifest_hash != before.manifest_hash


def test_digits():
    ds = load_dataset("digits", image_size=16)
    assert ds.num_classes == 10 and len(ds.train) + len(ds.val) == 1797
    assert ds.train.images([0, 1]).shape == (2, 3, 16, 16)
    assert load_dataset("digits", image_size=16).manifest_hash == ds.manifest_hash
    assert len(load_dataset("digits", image_size=16, train_count=100).train) == 100


def test_folder(tmp_path):
    for i, name in enumerate(["b", "a", "c"]):
        write_images(tmp_path / name, 6, seed=i)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset("folder", root=tmp_path, image_size=16, flip=False)
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "skipped 1 unreadable images" in messages[0] and "broken.jpg" in messages[0]
    assert ds.class_names == ["a", "b", "c"] and not ds.flip
    assert len(ds.train) + len(ds.val) == 18 and len(ds.val) == 2
    batch = ds.train.images(np.arange(len(ds.train)))
    assert batch.shape == (16, 3, 16, 16) and batch.dtype == np.uint8
    # the same seed gives the same split; the cached scan still reports the skipped file
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert load_dataset("folder", root=tmp_path, image_size=16).manifest_hash == ds.manifest_hash
    # a file broken after the scan fails loudly when loaded
    (tmp_path / ds.train.files[0]).write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read image"):
        ds.train.images([0])


def test_folder_center_crop(tmp_path):
    img = np.zeros((20, 60, 3), np.uint8)
    img[:, 20:40] = 255  # white middle third survives the center crop of a 3:1 image
    (tmp_path / "x").mkdir()
    for i in range(2):
        Image.fromarray(img).save(tmp_path / "x" / f"{i}.png")
    ds = load_dataset("folder", root=tmp_path, image_size=10)
    assert ds.train.images([0]).min() > 200


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset("folder", root=tmp_path / "nope")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        load_dataset("folder", root=tmp_path / "empty")
    (tmp_path / "bad" / "cls").mkdir(parents=True)
    (tmp_path / "bad" / "cls" / "x.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="no readable images"):
        load_dataset("folder", root=tmp_path / "bad")
    with pytest.raises(UserError, match="choose one of"):
        load_dataset("cifar")
    with pytest.raises(UserError, match="data.root"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="takes no root"):
        load_dataset("embedded", root=tmp_path)


def test_imagenet_layout(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for wnid in ("n02", "n01"):
            write_images(tmp_path / split / wnid, n, size=(40, 30))
    ds = load_dataset("imagenet", root=tmp_path, image_size=16)
    assert ds.class_names == ["n01", "n02"] and len(ds.train) == 6 and len(ds.val) == 4
    assert ds.val.labels.tolist() == [0, 0, 1, 1]
    assert ds.val.images(slice(None)).shape == (4, 3, 16, 16)
    assert len(load_dataset("imagenet", root=tmp_path, image_size=16, train_count=2).train) == 2

    (tmp_path / "val").rename(tmp_path / "valid")
    with pytest.raises(UserError, match="no val/ folder"):
        load_dataset("imagenet", root=tmp_path)


def test_folder_writer_layout_reads_back(tmp_path):
    """vltbench.data.folder_writer (the held-out-data scripts' writer) writes the split layout the `folder`
    reader takes as given; the same seed writes the same bytes, another seed other ones."""
    from vltbench.data.folder_writer import write_folder

    def images(c, split, count, seed):
        rng = np.random.default_rng([seed, int(split == "val"), c])
        return (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(count))

    assert write_folder(tmp_path / "a", ["y", "x"], images, train=3, val=2, seed=1) == 10
    ds = load_dataset("folder", root=tmp_path / "a", image_size=8, flip=False)
    assert ds.class_names == ["x", "y"] and (len(ds.train), len(ds.val)) == (6, 4)
    write_folder(tmp_path / "b", ["y", "x"], images, train=3, val=2, seed=1)
    write_folder(tmp_path / "c", ["y", "x"], images, train=3, val=2, seed=2)
    f = "val/x/0001.png"
    assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()
