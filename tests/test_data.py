"""Datasets: the real offline pack, torchvision's folder layouts (written here in their official formats), errors."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from tanas_core.data import datasets as data
from tanas_core.data.cifar100_classes import (
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    SUPERCLASSES,
)


def test_real_pack_counts_and_classes(real_data):
    mnist = data.load_dataset("mnist", real_data)
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.class_counts("train").tolist()[:3] == [5923, 6742, 5958]
    fashion = data.load_dataset("fashion_mnist", real_data)
    assert fashion.class_names[1] == "Trouser" and set(fashion.class_counts("test")) == {1000}
    cifar = data.load_dataset("cifar10", real_data)
    assert cifar.x_train.shape == (10000, 32, 32, 3) and set(cifar.class_counts("test")) == {200}
    assert cifar.class_names == data.CIFAR10_CLASSES and "cifar10_subset.npz" in cifar.source
    quickdraw = data.load_dataset("quickdraw", real_data)
    assert len(quickdraw.class_names) == 345 and "moon" in quickdraw.class_names
    # No official split: a fixed 80/20 split per class, so train and test never share a drawing.
    assert set(quickdraw.class_counts("train")) == {80} and set(quickdraw.class_counts("test")) == {20}


def test_check_lists_every_dataset_and_explains_missing_cifar100(real_data):
    rows = {row["dataset"]: row for row in data.check_datasets(real_data)}
    assert set(rows) == set(data.DATASETS)
    assert rows["mnist"]["available"] and rows["mnist"]["train"] == 60000
    assert rows["digits"]["available"] and rows["digits"]["source"] == "scikit-learn (bundled)"
    if not (real_data / "cifar-100-python").exists():
        assert not rows["cifar100"]["available"]
        reason = rows["cifar100"]["reason"]
        assert "cifar100" in reason and "cifar-100-python" in reason and "TANAS_DATA_DIR" in reason


@pytest.mark.unit
def test_unknown_and_unavailable_datasets_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load_dataset("imagenet", tmp_path)
    with pytest.raises(data.DatasetUnavailableError, match="mnist.*mnist.npz.*MNIST/raw.*internet"):
        data.load_dataset("mnist", tmp_path / "empty", download=False)


def _write_cifar100(root, n_train=30, n_test=10):
    """A tiny CIFAR-100 in the official python layout: pickled dicts with bytes keys, rows of 3072 uint8."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, count)
        batch = {b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 b"fine_labels": fine.tolist(),
                 b"coarse_labels": [CIFAR100_FINE_TO_COARSE[f] for f in fine],
                 b"filenames": [f"{i}.png".encode() for i in range(count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_FINE_CLASSES],
            b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE_CLASSES]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


@pytest.mark.unit
def test_cifar100_official_folder_fine_and_coarse(tmp_path):
    folder = _write_cifar100(tmp_path)
    batch = pickle.loads((folder / "train").read_bytes())  # we wrote it ourselves
    fine = data.load_dataset("cifar100", tmp_path, download=False)
    coarse = data.load_dataset("cifar100_coarse", tmp_path, download=False)
    assert fine.x_train.shape == (30, 32, 32, 3) and fine.x_test.shape == (10, 32, 32, 3)
    assert fine.y_train.tolist() == batch[b"fine_labels"]
    assert coarse.y_train.tolist() == batch[b"coarse_labels"] and len(coarse.class_names) == 20
    # Rows are channel-major (1024 red, 1024 green, 1024 blue): pixel (row 0, col 1) green is byte 1024 + 1.
    assert fine.x_train[0, 0, 1, 1] == batch[b"data"][0, 1025]


@pytest.mark.unit
def test_cifar100_folder_with_wrong_fine_to_coarse_pairs_is_refused(tmp_path):
    folder = _write_cifar100(tmp_path)
    batch = pickle.loads((folder / "train").read_bytes())
    batch[b"coarse_labels"] = [(c + 1) % 20 for c in batch[b"coarse_labels"]]
    (folder / "train").write_bytes(pickle.dumps(batch))
    with pytest.raises(data.DatasetUnavailableError, match="standard table"):
        data.load_dataset("cifar100", tmp_path, download=False)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch exploited-marker",))


@pytest.mark.unit
def test_cifar_pickle_that_calls_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _write_cifar100(tmp_path)
    (folder / "train").write_bytes(pickle.dumps({b"data": _Exploit()}))
    with pytest.raises(data.DatasetUnavailableError, match="refusing to load"):
        data.load_dataset("cifar100", tmp_path, download=False)
    assert not (tmp_path / "exploited-marker").exists()


@pytest.mark.unit
def test_fine_to_coarse_table():
    assert len(CIFAR100_FINE_CLASSES) == 100 and len(set(CIFAR100_FINE_CLASSES)) == 100
    assert list(CIFAR100_FINE_CLASSES) == sorted(CIFAR100_FINE_CLASSES)
    assert len(CIFAR100_COARSE_CLASSES) == 20
    assert all(len(members) == 5 for members in SUPERCLASSES.values())
    assert np.bincount(CIFAR100_FINE_TO_COARSE).tolist() == [5] * 20
    assert SUPERCLASSES["vehicles_1"] == ("bicycle", "bus", "motorcycle", "pickup_truck", "train")
    assert SUPERCLASSES["vehicles_2"] == ("lawn_mower", "rocket", "streetcar", "tank", "tractor")
    # The first fine labels' superclasses, as the official data pairs them.
    assert list(CIFAR100_FINE_TO_COARSE[:10]) == [4, 1, 14, 8, 0, 6, 7, 7, 18, 3]


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.unit
def test_torchvision_mnist_raw_folder(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (12, 28, 28)), np.arange(12) % 10
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    mnist = data.load_dataset("mnist", tmp_path, download=False)
    assert "torchvision folder" in mnist.source
    assert mnist.x_train.shape == (12, 28, 28, 1) and mnist.y_train.tolist() == labels.tolist()
    assert np.array_equal(mnist.x_train[..., 0], images)


@pytest.mark.unit
def test_sklearn_digits_offline():
    digits = data.load_dataset("digits")
    assert digits.x_train.shape[1:] == (8, 8, 1) and len(digits.y_train) + len(digits.y_test) == 1797
    assert digits.x_train.max() == 255


def test_model_input_grayscale_to_rgb_32(real_data):
    mnist = data.load_dataset("mnist", real_data)
    x = data.to_model_input(mnist.x_train[:500], mnist, channels=3, size=32)
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 2])  # grayscale repeated
    assert abs(float(x.mean())) < 0.15 and 0.8 < float(x.std()) < 1.2  # per-dataset normalisation
    cifar = data.load_dataset("cifar10", real_data)
    with pytest.raises(ValueError, match="RGB"):
        data.to_model_input(cifar.x_train[:2], cifar, channels=1, size=32)


@pytest.mark.unit
def test_corrupt_pack_is_reported(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(gzip.compress(b"not a zip"))
    with pytest.raises(data.DatasetUnavailableError, match="not a readable .npz"):
        data.load_dataset("mnist", tmp_path, download=False)


@pytest.mark.unit
def test_failed_download_leaves_no_empty_folder_behind(tmp_path, monkeypatch):
    import torchvision.datasets as tv

    def offline(*args, **kwargs):
        (tmp_path / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(tv, "MNIST", offline)
    with pytest.raises(data.DatasetUnavailableError, match="internet"):
        data.load_dataset("mnist", tmp_path, download=True)
    assert not (tmp_path / "MNIST").exists()


@pytest.mark.unit
def test_default_data_dir_order(tmp_path, monkeypatch):
    """Bug 7: TANAS_DATA_DIR; else $TANAS_HOME/data holding data; else ../shared/datasets beside the checkout
    holding data; else $TANAS_HOME/data."""
    checkout = tmp_path / "checkout"
    (checkout / "tanas_core" / "data").mkdir(parents=True)
    monkeypatch.setattr(data, "__file__", str(checkout / "tanas_core" / "data" / "datasets.py"))
    home, shared = tmp_path / "home", tmp_path / "shared" / "datasets"
    monkeypatch.setenv("TANAS_HOME", str(home))
    monkeypatch.delenv("TANAS_DATA_DIR", raising=False)
    assert data.default_data_dir() == home / "data"  # nothing anywhere: where a download goes
    shared.mkdir(parents=True)
    assert data.default_data_dir() == home / "data"  # an empty folder beside the checkout is not data
    (shared / "mnist.npz").write_bytes(b"")
    assert data.default_data_dir() == shared
    assert "beside the checkout" in data.data_dir_choice()[1]
    (home / "data" / "cifar-10-batches-py").mkdir(parents=True)
    assert data.default_data_dir() == home / "data"  # the workspace's own data comes first
    monkeypatch.setenv("TANAS_DATA_DIR", str(tmp_path / "chosen"))
    assert data.default_data_dir() == tmp_path / "chosen"  # an explicit choice, even an empty one
    assert data.data_dir_choice()[1] == "TANAS_DATA_DIR"


@pytest.mark.unit
def test_holds_dataset_ignores_the_bundled_digits_and_other_files(tmp_path):
    assert not data.holds_dataset(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    assert not data.holds_dataset(tmp_path)
    (tmp_path / "quickdraw345.npz").write_bytes(b"")
    assert data.holds_dataset(tmp_path)


@pytest.mark.unit
def test_unavailable_error_names_its_dataset(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as error:
        data.load_dataset("fashion_mnist", tmp_path / "empty", download=False)
    assert error.value.dataset == "fashion_mnist"
