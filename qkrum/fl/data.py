"""Image-classification datasets for the federated-learning simulation.

:func:`load_dataset` returns a :class:`Dataset` of NumPy arrays: images ``float32`` of shape
``(N, H, W, C)`` scaled to ``[0, 1]`` and labels ``int32`` of shape ``(N,)``, with the
publisher's official train/test split and order.

The paper (Sec. VI-A) evaluates on MNIST, Fashion-MNIST and CIFAR-10. Where the data comes
from is ours to decide, and it is always chosen explicitly; a missing source is an error,
never a silent switch to another one:

``source="local"``
    Canonical files as their publishers distribute them, read from ``data_dir`` or, when that
    is not given, from the directory named by the environment variable ``QKRUM_DATA_DIR``::

        DIR/mnist/          train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
        DIR/fashion-mnist/  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
        DIR/cifar10/        cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin
                         or cifar-10-batches-py/{data_batch_1..5,test_batch}
                         or the same files directly inside cifar10/

    Files are only read, never written or downloaded. MNIST and Fashion-MNIST files are
    checked against a ``SHA256SUMS`` file in the same folder when there is one (the
    ``sha256sum`` format; it takes precedence), otherwise against the SHA-256 of the official
    files built in here (:data:`KNOWN_SHA256`). For CIFAR-10 nothing is built in: the
    publisher gives only the MD5 of the tar archive, not of the extracted batches, and no
    copy was at hand to compute them from; a ``SHA256SUMS`` next to the batches is honoured,
    otherwise the batches are only checked for their format. When several CIFAR-10 layouts
    are present the first in the order above is used (binary before pickle, sub-folder
    before flat), and an incomplete one is an error rather than a reason to try the next.
    The pickles are unpickled with a restricted unpickler that only rebuilds NumPy arrays,
    so a tampered file cannot run code.

``source="tfds"``
    ``tensorflow_datasets.load`` (``pip install 'qkrum[tfds]'``, imported only here).
    It downloads only when ``download=True``; otherwise it reads a copy prepared earlier.
    An explicit ``data_dir`` is passed on as tfds's own data directory (tfds layout);
    ``QKRUM_DATA_DIR`` is not, because it names a folder of canonical files.

``source="sklearn"``
    Only for ``"digits"``: the 1,797 real 8x8 handwritten digits (UCI optical recognition
    of handwritten digits, test part) that ship inside scikit-learn, so they need no
    download. Not in the paper: it is the offline default for quick runs and tests. Images
    keep their natural ``(8, 8, 1)`` shape, grey levels 0..16 scaled by 1/16. The split is
    ours: stratified by class, with a fixed seed (:data:`DIGITS_SPLIT_SEED` = 0), the test
    set takes ``round(0.2 * n_c)`` images of each class ``c`` (359 in all, 1,438 train);
    each split keeps the original order.

``source="auto"`` (the default) means ``"sklearn"`` for ``"digits"`` and ``"local"`` for the
others when a directory is given or ``QKRUM_DATA_DIR`` is set; otherwise it raises an error
listing the three ways to get the data.

Parsed files are cached in memory only (keyed by resolved path, size and modification time,
as read-only ``uint8`` arrays); every call returns fresh ``float32`` arrays.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from qkrum._optional import require

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "IMAGE_SHAPES",
    "KNOWN_SHA256",
    "SOURCES",
    "DataIntegrityError",
    "Dataset",
    "default_data_dir",
    "load_dataset",
]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10")
SOURCES: tuple[str, ...] = ("auto", "local", "tfds", "sklearn")

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

ENV_VAR = "QKRUM_DATA_DIR"

_IDX_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension

# SHA-256 of the official distribution files (computed from the canonical copies, whose MD5s
# are the ones torchvision and tfds check; Fashion-MNIST is the final de-duplicated release).
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then R, G, B planes of 32x32, row-major
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
# (sub-folder of DIR/cifar10, format), in order of preference.
_CIFAR_LAYOUTS = (
    ("cifar-10-batches-bin", "bin"),
    ("cifar-10-batches-py", "py"),
    ("", "bin"),
    ("", "py"),
)

_TFDS_NAMES = {"mnist": "mnist", "fashion-mnist": "fashion_mnist", "cifar10": "cifar10"}
#: ``(H, W, C)`` of each dataset's images (also the models' input shapes, :mod:`qkrum.fl.models`).
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1), "cifar10": (32, 32, 3),
}
_NUM_CLASSES = 10


class DataIntegrityError(ValueError):
    """A dataset file exists but is corrupt, truncated, or not the canonical file."""


class Dataset(NamedTuple):
    """A labelled image dataset with its official train/test split.

    Images are ``float32`` ``(N, H, W, C)`` in ``[0, 1]``; labels ``int32`` ``(N,)`` in
    ``0..num_classes-1``.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int


def default_data_dir() -> Path | None:
    """The directory named by ``$QKRUM_DATA_DIR``, or None when it is unset or empty."""
    value = os.environ.get(ENV_VAR, "")
    return Path(value).expanduser() if value.strip() else None


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    download: bool = False,
) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`) from an explicitly chosen source.

    Args:
        name: ``"digits"``, ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        data_dir: root folder of canonical files (``DIR/<name>/...``) for ``source="local"``;
            defaults to ``$QKRUM_DATA_DIR``. With ``source="tfds"`` it is tfds's data dir.
        source: ``"auto"``, ``"local"``, ``"tfds"`` or ``"sklearn"`` (see the module docs).
        download: let tensorflow-datasets download the data; only valid with
            ``source="tfds"`` (ignored for ``"digits"``, which ships with scikit-learn).

    Raises:
        ValueError: unknown ``name``/``source``, or a source that cannot serve ``name``.
        FileNotFoundError: a local folder or file is missing (the message names it).
        DataIntegrityError: a local file fails its checksum or is malformed.
        ImportError: the chosen source's package (scikit-learn, tensorflow-datasets) is
            not installed; the message says how to install it.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got name={name!r}")
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got source={source!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got download={download!r}")

    if name == "digits":
        if source not in ("auto", "sklearn"):
            raise ValueError(
                f"the 'digits' dataset ships inside scikit-learn and has no {source!r} source; "
                f"use source='auto' or 'sklearn', got source={source!r}"
            )
        return _load_digits()

    if source == "sklearn":
        raise ValueError(f"source='sklearn' only serves the 'digits' dataset, got name={name!r}")
    if source == "tfds":
        return _load_tfds(name, data_dir, download)
    if download:
        raise ValueError(
            f"download=True downloads through tensorflow-datasets: pass source='tfds' as well "
            f"(local files are only read, never downloaded), got source={source!r}"
        )

    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if root is None:
        if source == "local":
            raise ValueError(
                f"source='local' needs a data directory: pass data_dir=... or set ${ENV_VAR} "
                f"to a folder holding {name}/ with the canonical files"
            )
        raise ValueError(
            f"no source for dataset {name!r}: either (1) pass data_dir=... or set ${ENV_VAR} to a "
            f"folder holding {name}/ with the canonical files, (2) pass source='tfds', "
            "download=True (needs `pip install 'qkrum[tfds]'`, i.e. `pip install tensorflow-datasets "
            "importlib_resources`), or (3) use the offline 'digits' dataset, which ships with "
            "scikit-learn (`pip install 'qkrum[fl]'`)"
        )
    origin = "data_dir" if data_dir is not None else f"${ENV_VAR}"
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {str(root)!r} (from {origin}) does not exist or is not a folder")
    folder = root / name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"expected the folder {str(folder)!r} holding the canonical {name} files "
            f"(data directory from {origin}); see qkrum.fl.data for the layout"
        )
    if name == "cifar10":
        return _load_cifar10(folder)
    return _load_idx_dataset(name, folder)


# --- shared ------------------------------------------------------------------------------

def _to_float(images: np.ndarray, scale: float) -> np.ndarray:
    out = np.array(images, dtype=np.float32, order="C")
    out /= np.float32(scale)  # division, not multiplication by 1/scale: exact for 0..scale
    return out


def _make(name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray,
          scale: float = 255.0) -> Dataset:
    return Dataset(
        name=name,
        train_images=_to_float(xtr, scale),
        train_labels=np.array(ytr, dtype=np.int32),
        test_images=_to_float(xte, scale),
        test_labels=np.array(yte, dtype=np.int32),
        num_classes=_NUM_CLASSES,
    )


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"missing file {str(path)!r}: expected {what}")


def _read_sha256sums(folder: Path) -> tuple[dict[str, str], Path | None]:
    path = folder / "SHA256SUMS"
    if not path.is_file():
        return {}, None
    sums = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataIntegrityError(
                f"{str(path)!r} line {lineno} is not in sha256sum format ('<64 hex digits>  <file>'): {line!r}"
            )
        sums[Path(parts[1].lstrip("*")).name] = digest
    return sums, path


def _expected_sha256(name: str, folder: Path, filename: str) -> tuple[str | None, str]:
    """The SHA-256 a file must have and where that expectation comes from."""
    sums, sums_path = _read_sha256sums(folder)
    if filename in sums:
        return sums[filename], str(sums_path)
    known = KNOWN_SHA256.get(name, {}).get(filename)
    if known is not None:
        return known, "the built-in checksum of the official file"
    return None, "no known checksum"


def _corrupt(path: str, problem: str, expected: str | None, origin: str) -> DataIntegrityError:
    if expected is None:
        hint = "no checksum is known for it"
    else:
        hint = f"expected SHA-256 {expected} ({origin})"
    return DataIntegrityError(
        f"corrupt dataset file {path!r}: {problem}; {hint}. Replace it with the canonical file."
    )


def _read_checked(path_str: str, expected: str | None, origin: str) -> bytes:
    raw = Path(path_str).read_bytes()
    if expected is not None:
        got = hashlib.sha256(raw).hexdigest()
        if got != expected:
            raise _corrupt(path_str, f"SHA-256 mismatch (got {got})", expected, origin)
    return raw


# --- MNIST / Fashion-MNIST (IDX) -------------------------------------------------------

def _parse_idx(raw: bytes, path: str, magic: int, expected: str | None, origin: str) -> np.ndarray:
    """IDX: big-endian uint32 magic (0x0000 08 ndim), ndim big-endian uint32 sizes, uint8 data."""
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"not a complete gzip stream ({e})", expected, origin) from None
    if len(data) < 4:
        raise _corrupt(path, f"truncated IDX header ({len(data)} bytes)", expected, origin)
    got_magic = int.from_bytes(data[:4], "big")
    if got_magic != magic:
        raise _corrupt(path, f"bad IDX magic 0x{got_magic:08x}, expected 0x{magic:08x}", expected, origin)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, f"truncated IDX header ({len(data)} bytes, need {header})", expected, origin)
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        raise _corrupt(path, f"IDX header declares shape {dims} ({size} bytes of data) but the file "
                             f"holds {len(data) - header}", expected, origin)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=16)
def _cached_idx(key: tuple[str, int, int], magic: int, expected: str | None, origin: str) -> np.ndarray:
    path = key[0]
    return _parse_idx(_read_checked(path, expected, origin), path, magic, expected, origin)


def _load_idx_dataset(name: str, folder: Path) -> Dataset:
    arrays = []
    for split, (images_file, labels_file) in _IDX_FILES.items():
        pair = []
        for filename, magic in ((images_file, _IDX_IMAGES_MAGIC), (labels_file, _IDX_LABELS_MAGIC)):
            path = folder / filename
            _require_file(path, f"the canonical gzip-compressed IDX file of the {name} {split} "
                                f"{'images' if magic == _IDX_IMAGES_MAGIC else 'labels'}")
            expected, origin = _expected_sha256(name, folder, filename)
            pair.append((str(path), _cached_idx(_file_key(path), magic, expected, origin), expected, origin))
        (ipath, images, iexp, iorig), (lpath, labels, lexp, lorig) = pair
        if images.shape[1:] != (28, 28):
            raise _corrupt(ipath, f"images have shape {images.shape[1:]}, expected (28, 28)", iexp, iorig)
        if labels.shape[0] != images.shape[0]:
            raise _corrupt(lpath, f"{labels.shape[0]} labels for {images.shape[0]} images in {ipath!r}",
                           lexp, lorig)
        if labels.size and labels.max() >= _NUM_CLASSES:
            raise _corrupt(lpath, f"label {int(labels.max())} outside 0..{_NUM_CLASSES - 1}", lexp, lorig)
        arrays += [images[..., None], labels]
    return _make(name, *arrays)


# --- CIFAR-10 ----------------------------------------------------------------------------

_NUMPY_GLOBALS = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and NumPy arrays; refuses every other global."""

    def find_class(self, module, name):
        if module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS:
            if name == "ndarray":
                return np.ndarray
            if name == "dtype":
                return np.dtype
            try:  # NumPy >= 2 (and 1.26's forward-compatibility alias)
                from numpy._core import multiarray, numeric
            except ImportError:  # pragma: no cover - older NumPy
                from numpy.core import multiarray, numeric
            return getattr(numeric if name == "_frombuffer" else multiarray, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            import codecs
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _parse_cifar_bin(raw: bytes, path: str, expected: str | None, origin: str):
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise _corrupt(path, f"size {len(raw)} bytes is not a positive multiple of the "
                             f"{_CIFAR_RECORD}-byte CIFAR-10 record (truncated?)", expected, origin)
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    return records[:, 1:], records[:, 0]


def _parse_cifar_py(raw: bytes, path: str, expected: str | None, origin: str):
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # a damaged pickle fails in many ways; all mean the same here
        raise _corrupt(path, f"not a CIFAR-10 python batch ({type(e).__name__}: {e})", expected, origin) from None
    if not isinstance(batch, dict):
        raise _corrupt(path, f"unpickled a {type(batch).__name__}, expected a dict", expected, origin)
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise _corrupt(path, f"keys {sorted(map(str, batch))} lack 'data' and/or 'labels'", expected, origin)
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_RECORD - 1:
        raise _corrupt(path, f"data has dtype {data.dtype} and shape {data.shape}, expected uint8 "
                             f"(N, {_CIFAR_RECORD - 1})", expected, origin)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _corrupt(path, f"labels have dtype {labels.dtype} and shape {labels.shape}, expected "
                             f"{data.shape[0]} integers", expected, origin)
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise _corrupt(path, f"label {bad} outside 0..{_NUM_CLASSES - 1}", expected, origin)
    return data, labels.astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _cached_cifar(key: tuple[str, int, int], fmt: str, expected: str | None, origin: str):
    path = key[0]
    raw = _read_checked(path, expected, origin)
    flat, labels = (_parse_cifar_bin if fmt == "bin" else _parse_cifar_py)(raw, path, expected, origin)
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise _corrupt(path, f"label {int(labels.max())} outside 0..{_NUM_CLASSES - 1}", expected, origin)
    # Each row is the R, G, B planes of a 32x32 image, each plane row-major: CHW -> HWC.
    images = flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _cifar_files(fmt: str) -> tuple[str, ...]:
    suffix = ".bin" if fmt == "bin" else ""
    return tuple(f + suffix for f in (*_CIFAR_TRAIN, _CIFAR_TEST))


def _load_cifar10(folder: Path) -> Dataset:
    chosen = None
    for sub, fmt in _CIFAR_LAYOUTS:
        batch_dir = folder / sub if sub else folder
        if any((batch_dir / f).is_file() for f in _cifar_files(fmt)):
            chosen = batch_dir, fmt
            break
    if chosen is None:
        raise FileNotFoundError(
            f"no CIFAR-10 batches in {str(folder)!r}: expected cifar-10-batches-bin/data_batch_1..5.bin "
            "and test_batch.bin, or cifar-10-batches-py/data_batch_1..5 and test_batch (the python "
            "pickles), either inside that sub-folder or directly in the folder"
        )
    batch_dir, fmt = chosen
    kind = "binary" if fmt == "bin" else "python-pickle"
    parts = []
    for filename in _cifar_files(fmt):
        path = batch_dir / filename
        _require_file(path, f"a CIFAR-10 {kind} batch (the layout found in {str(batch_dir)!r} "
                            f"needs {', '.join(_cifar_files(fmt))})")
        expected, origin = _expected_sha256("cifar10", batch_dir, filename)
        parts.append(_cached_cifar(_file_key(path), fmt, expected, origin))
    train, test = parts[:-1], parts[-1]
    return _make(
        "cifar10",
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
        test[0], test[1],
    )


# --- scikit-learn digits -----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "fl", "the 'digits' dataset (it ships inside scikit-learn)",
                       package="scikit-learn")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.images).astype(np.uint8)  # grey levels 0..16, exact
    labels = np.asarray(bunch.target).astype(np.int32)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for c in range(_NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        k = int(np.floor(DIGITS_TEST_FRACTION * members.size + 0.5))
        is_test[rng.permutation(members)[:k]] = True
    out = (images[~is_test, :, :, None], labels[~is_test], images[is_test, :, :, None], labels[is_test])
    for a in out:
        a.flags.writeable = False
    return out


def _load_digits() -> Dataset:
    return _make("digits", *_digits_split(), scale=16.0)


# --- tensorflow-datasets -----------------------------------------------------------------

def _import_tfds():
    try:
        return require("tensorflow_datasets", "tfds", "source='tfds'", package="tensorflow-datasets")
    except ImportError as e:
        # The extra also brings importlib_resources, which tfds imports but does not declare.
        raise type(e)(f"{e} (or: pip install tensorflow-datasets importlib_resources). Without it, use "
                      f"local canonical files (data_dir=... or ${ENV_VAR}) or the offline 'digits' dataset",
                      name=e.name) from e.__cause__


def _load_tfds(name: str, data_dir, download: bool) -> Dataset:
    tfds = _import_tfds()
    train, test = tfds.load(
        _TFDS_NAMES[name],
        split=["train", "test"],
        batch_size=-1,
        as_supervised=True,
        download=download,
        data_dir=None if data_dir is None else str(Path(data_dir).expanduser()),
    )
    arrays = []
    for split, (images, labels) in (("train", tfds.as_numpy(train)), ("test", tfds.as_numpy(test))):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPES[name] or labels.shape != images.shape[:1]:
            raise DataIntegrityError(
                f"tensorflow-datasets returned {name} {split} images of dtype {images.dtype} and shape "
                f"{images.shape} with labels of shape {labels.shape}; expected uint8 (N, "
                f"{', '.join(map(str, IMAGE_SHAPES[name]))}) and (N,)"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
            raise DataIntegrityError(f"tensorflow-datasets returned {name} {split} labels outside 0..9")
        arrays += [images, labels]
    return _make(name, *arrays)
