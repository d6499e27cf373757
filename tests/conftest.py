"""Shared fixtures: tiny local data sets, the shared data folder, the slow marker."""

import gzip
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, for the tf.distribute tests; set before TF starts its runtime.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--run_slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run_slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run_slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Local-data conversions go to a per-session temporary cache, never ~/.cache; the Inception runs its reference pass."""
    monkeypatch.setenv("KD_GAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kd_gan_cache"))
    monkeypatch.delenv("KD_GAN_DATA_DIR", raising=False)
    # The Inception's "auto" pass is the machine's (OpenVINO bfloat16 on AMX CPUs): tests that
    # compare features with numpy run the reference pass; tests/test_inception_engines.py the others.
    monkeypatch.setenv("KD_GAN_INCEPTION_ENGINE", "tensorflow")
    monkeypatch.setenv("KD_GAN_INCEPTION_PRECISION", "float32")


@pytest.fixture(scope="session")
def mirrored():
    """MirroredStrategy over the two logical CPUs (one per process, see make_strategy)."""
    from kd_gan.experiment.distribute import make_strategy

    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2, "conftest sets up two logical CPUs"
    return strategy


@pytest.fixture
def shared_data_dir():
    """../shared/data beside the project root (skips when absent)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return str(SHARED_DATA)


def write_idx(path, array):
    """Writes `array` (uint8) as a gzip-compressed IDX file."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as file:
        file.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """(data_dir, train_images, test_images): a 40 + 12 image MNIST in the original layout."""
    data_dir = tmp_path_factory.mktemp("tiny_mnist")
    (data_dir / "mnist").mkdir()
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    write_idx(data_dir / "mnist" / "train-images-idx3-ubyte.gz", train)
    write_idx(data_dir / "mnist" / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 40, dtype=np.uint8))
    write_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", test)
    write_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 12, dtype=np.uint8))
    return str(data_dir), train, test


def weights_of(model):
    """Copies of every weight of `model`, to compare before and after training."""
    return [np.array(weight.numpy()) for weight in model.weights]


def changed(before, model):
    """True when any trainable-or-not weight of `model` differs from `before`."""
    return any(not np.array_equal(old, new.numpy()) for old, new in zip(before, model.weights))


@pytest.fixture
def shared_inception_path(shared_data_dir):
    """The shared FID Inception SavedModel (skips when absent)."""
    path = os.path.join(shared_data_dir, "inception", "fid_inception_v3")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        pytest.skip(f"no FID Inception at {path}")
    return path
