"""Real image datasets, resolved from a local data directory first and torchvision's verified download second.

Every dataset loads as uint8 arrays ``[N, H, W, C]`` with int64 labels and an official train / test split (datasets
without one get a fixed 80 / 20 split per class, the same for every seed). Tasks (``tasks.py``) select from these
arrays; ``to_model_input`` turns a selection into the float tensors ``[N, C, H, W]`` that networks consume.

Resolution order for a dataset, in the data directory (``TANAS_DATA_DIR``; unset: ``$TANAS_HOME/data`` or the
``../shared/datasets`` beside the checkout, whichever holds data, see ``default_data_dir``):

1. an ``.npz`` pack in the layout of the offline pack (``mnist.npz``, ``fashion_mnist.npz``, ``cifar10.npz`` or
   ``cifar10_subset.npz``, ``cifar100.npz``, ``quickdraw345.npz``, ``quickdraw_subset.npz``);
2. torchvision's standard folders (``MNIST/raw``, ``FashionMNIST/raw``, ``cifar-10-batches-py``,
   ``cifar-100-python``);
3. torchvision's download into the data directory (online machines; checksums verify every file).

CIFAR folders hold Python pickles. They are read with an unpickler that can only rebuild numpy arrays, lists, dicts
and strings, so a tampered file cannot run code.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tanas_core.data.cifar100_classes import CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES
from tanas_core.data.files import DatasetSpec, DatasetUnavailableError, RawDataset, download_dataset, load_from_dir
from tanas_core.errors import TanasError

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_CLASSES = MNIST_CLASSES

# Datasets without an official test split get this fixed split, so no seed ever trains on a test image.


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", "MNIST handwritten digits", 1, MNIST_CLASSES, ("mnist.npz",), "MNIST/raw", True),
        DatasetSpec("fashion_mnist", "Fashion-MNIST", 1, FASHION_MNIST_CLASSES, ("fashion_mnist.npz",),
                    "FashionMNIST/raw", True),
        DatasetSpec("cifar10", "CIFAR-10", 3, CIFAR10_CLASSES, ("cifar10.npz", "cifar10_subset.npz"),
                    "cifar-10-batches-py", True),
        DatasetSpec("cifar100", "CIFAR-100 (100 fine classes)", 3, CIFAR100_FINE_CLASSES, ("cifar100.npz",),
                    "cifar-100-python", True),
        DatasetSpec("cifar100_coarse", "CIFAR-100 (20 coarse superclasses)", 3, CIFAR100_COARSE_CLASSES,
                    ("cifar100.npz",), "cifar-100-python", True),
        DatasetSpec("quickdraw", "Quick, Draw! (345 categories, strokes rasterised)", 1, None,
                    ("quickdraw345.npz",), None, False,
                    "no official split: a fixed 80/20 split per class is used"),
        DatasetSpec("quickdraw_bitmap", "Quick, Draw! official 28x28 bitmaps (6 categories)", 1, None,
                    ("quickdraw_subset.npz",), None, False,
                    "no official split: a fixed 80/20 split per class is used; never mix with 'quickdraw'"),
        DatasetSpec("digits", "scikit-learn 8x8 digits", 1, DIGITS_CLASSES, (), None, False,
                    "ships inside scikit-learn; a fixed 80/20 split per class is used"),
    )
}


def workspace_home() -> Path:
    """The workspace directory: ``TANAS_HOME`` or ``~/.tanas``."""
    return Path(os.environ.get("TANAS_HOME") or Path.home() / ".tanas").expanduser()


def default_data_dir() -> Path:
    """The data directory, the first of:

    1. ``TANAS_DATA_DIR`` when set (used as given, even when empty: an explicit choice is never second-guessed);
    2. ``$TANAS_HOME/data`` when it holds any dataset;
    3. ``../shared/datasets`` beside the checkout when it holds any dataset (the offline pack's place on this
       project's machines, so the README's commands find the data when run from the checkout);
    4. ``$TANAS_HOME/data`` (where a download goes).
    """
    return data_dir_choice()[0]


def data_dir_choice() -> tuple[Path, str]:
    """``(directory, why)``: ``default_data_dir()`` and a few words saying which rule chose it."""
    configured = os.environ.get("TANAS_DATA_DIR")
    if configured:
        return Path(configured).expanduser(), "TANAS_DATA_DIR"
    home_data = workspace_home() / "data"
    if holds_dataset(home_data):
        return home_data, "$TANAS_HOME/data"
    beside = (Path(__file__).resolve().parents[2].parent / "shared" / "datasets").resolve()
    if holds_dataset(beside):
        return beside, "found beside the checkout; set TANAS_DATA_DIR to choose another"
    return home_data, "$TANAS_HOME/data; no dataset found there nor in ../shared/datasets beside the checkout"


def holds_dataset(directory: str | Path) -> bool:
    """Whether ``directory`` holds a pack or a torchvision folder of any dataset (the bundled ``digits`` aside)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        return False
    return any((root / pack).is_file() for spec in DATASETS.values() for pack in spec.packs) or \
        any(spec.folder and (root / spec.folder).is_dir() for spec in DATASETS.values())


def dataset_names() -> list[str]:
    """Names accepted by ``load_dataset``."""
    return list(DATASETS)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> RawDataset:
    """Load dataset ``name`` from ``data_dir`` (default ``default_data_dir()``), downloading it if allowed and possible.

    Results are cached per process. Raises ``ValueError`` for an unknown name and ``DatasetUnavailableError`` (a
    ``ValueError``) naming the ways to provide the data when it can be neither found nor downloaded.
    """
    if name not in DATASETS:
        raise TanasError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return _load_cached(name, str(directory.resolve()), download)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, directory: str, download: bool) -> RawDataset:
    spec = DATASETS[name]
    root = Path(directory)
    local_problem = ""
    try:
        dataset = load_from_dir(spec, root)
    except DatasetUnavailableError as error:  # a damaged local copy: a download may still repair it
        dataset, local_problem = None, f" ({error})"
    if dataset is None and download and spec.downloadable:
        dataset = download_dataset(spec, root)
    if dataset is None:
        raise DatasetUnavailableError(_unavailable_message(spec, root, download) + local_problem, name)
    dataset.mean, dataset.std = _channel_stats(dataset.x_train)
    return dataset


def dataset_class_names(name: str, data_dir: str | Path | None = None) -> tuple[str, ...]:
    """Class names of ``name`` in label order; reads the data only for datasets whose names live in the pack."""
    if name not in DATASETS:
        raise TanasError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if spec.class_names is not None:
        return spec.class_names
    return load_dataset(name, data_dir, download=False).class_names


def check_datasets(data_dir: str | Path | None = None, download: bool = False) -> list[dict]:
    """One row per dataset: name, available, source, classes, train/test counts, and the reason when unavailable."""
    rows = []
    for name, spec in DATASETS.items():
        try:
            ds = load_dataset(name, data_dir, download=download)
        except DatasetUnavailableError as error:
            rows.append(dict(dataset=name, title=spec.title, available=False, source="", classes=0, train=0,
                             test=0, image="", reason=str(error)))
            continue
        rows.append(dict(dataset=name, title=spec.title, available=True, source=ds.source,
                         classes=len(ds.class_names), train=len(ds.y_train), test=len(ds.y_test),
                         image=f"{ds.image_size}x{ds.image_size}x{ds.channels}", reason=spec.note))
    return rows


def sample_grid(dataset: RawDataset, per_class: int = 8, classes: list[int] | None = None, seed: int = 0) -> np.ndarray:
    """A contact sheet for people: uint8 ``[rows * H, per_class * W, C]``, one row per class (label order unless
    ``classes`` is given), ``per_class`` random training images each (fewer if the class has fewer)."""
    if per_class < 1:
        raise TanasError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    labels = list(range(len(dataset.class_names))) if classes is None else list(classes)
    height, width, channels = dataset.x_train.shape[1:]
    sheet = np.zeros((len(labels) * height, per_class * width, channels), dtype=np.uint8)
    for row, label in enumerate(labels):
        members = np.flatnonzero(dataset.y_train == label)
        for column, index in enumerate(rng.choice(members, size=min(per_class, len(members)), replace=False)):
            sheet[row * height:(row + 1) * height, column * width:(column + 1) * width] = dataset.x_train[index]
    return sheet


# ----------------------------------------------------------------------------------------------- model input

def to_model_input(images: np.ndarray, dataset: RawDataset, channels: int, size: int) -> torch.Tensor:
    """uint8 images ``[N, H, W, C]`` -> normalised float32 ``[N, channels, size, size]``.

    Normalisation uses ``dataset``'s per-channel training mean and std. Grayscale becomes RGB by repeating the
    channel (as the source document does to run VGG on MNIST); resizing is bilinear with antialiasing.
    """
    if channels not in (1, 3):
        raise TanasError(f"channels must be 1 or 3, got {channels}")
    if dataset.channels == 3 and channels == 1:
        raise TanasError(f"{dataset.name} is RGB and cannot be fed to a 1-channel network; use channels=3")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (x - mean) / std
    if x.shape[-1] != size or x.shape[-2] != size:
        antialias = size < x.shape[-1]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    # Copy into plain NCHW strides. With one channel, the permuted NHWC view counts as "contiguous" while keeping
    # strides (HW, 1, W, 1), and torch 2.14's CPU conv backward on such strides stalls for minutes.
    return torch.empty(x.shape, dtype=torch.float32).copy_(x)


def _channel_stats(x_train: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Float64 over a strided sample keeps this exact enough and fast on the full MNIST (47 M pixels).
    sample = x_train[:: max(1, len(x_train) // 20000)].reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    std = np.maximum(sample.std(axis=0), 1e-3)
    return tuple(float(v) for v in sample.mean(axis=0)), tuple(float(v) for v in std)


def _unavailable_message(spec: DatasetSpec, root: Path, download: bool) -> str:
    ways = [f"put {' or '.join(spec.packs)} (offline pack layout, see README) in {root}"] if spec.packs else []
    if spec.folder:
        ways.append(f"put torchvision's folder {spec.folder}/ in {root}")
    if spec.downloadable:
        ways.append("run on a machine with internet so torchvision can download it"
                    + ("" if download else " (download was disabled for this call)"))
    ways.append("or point TANAS_DATA_DIR at a directory that holds it")
    return f"dataset {spec.name!r} ({spec.title}) is not available: " + "; ".join(ways)
