"""Reading a dataset's files into uint8 arrays: ``.npz`` packs, torchvision's folders (CIFAR pickles through an
unpickler that can only rebuild arrays, so a tampered file cannot run code), scikit-learn's bundled digits, and
torchvision's verified download. Which dataset and which directory is ``data``'s business."""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tanas_core.data.cifar100_classes import CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, CIFAR100_FINE_TO_COARSE
from tanas_core.errors import TanasError

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


def load_from_dir(spec: DatasetSpec, root: Path) -> RawDataset | None:
    """The dataset from its pack or torchvision folder in ``root`` (the bundled digits from scikit-learn); ``None``
    when ``root`` has neither; ``DatasetUnavailableError`` for a damaged copy."""
    if spec.name == "digits":
        return _load_digits(spec.class_names)
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


def _load_digits(class_names: tuple[str, ...]) -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # sklearn stores 0..16 intensities; scale to the 0..255 range every other dataset uses.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, y_train, x_test, y_test = _holdout_split(images, bunch.target.astype(np.int64))
    return _as_raw("digits", class_names, x_train, y_train, x_test, y_test, "scikit-learn (bundled)")


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

def download_dataset(spec: DatasetSpec, root: Path) -> RawDataset | None:
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
    return load_from_dir(spec, root)


def _remove_empty_dirs(path: Path, stop_at: set[Path]) -> None:
    """Undo the empty folders a failed download left, so they do not pose as an incomplete local copy."""
    while path not in stop_at and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
