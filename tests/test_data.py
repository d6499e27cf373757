"""Data: local files -> tfds -> batches of images in [-1, 1]; clear errors otherwise."""

import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from kd_gan import data


def to_unit(images):
    return images.astype(np.float32) / 127.5 - 1.0


def test_local_mnist_yields_the_files_pixels(tiny_mnist):
    data_dir, train, test = tiny_mnist
    batches = list(data.load_dataset("mnist", "train", 8, data_dir=data_dir, shuffle=False))
    assert len(batches) == 5
    first = batches[0].numpy()
    assert first.shape == (8, 28, 28, 1) and first.dtype == np.float32
    np.testing.assert_allclose(first[..., 0], to_unit(train[:8]), atol=1e-6)
    everything = np.concatenate([b.numpy() for b in batches])
    assert everything.min() >= -1.0 and everything.max() <= 1.0
    test_batches = list(data.load_dataset("mnist", "test", 5, data_dir=data_dir, shuffle=False, drop_remainder=False))
    assert [len(b) for b in test_batches] == [5, 5, 2]
    np.testing.assert_allclose(test_batches[-1].numpy()[..., 0], to_unit(test[10:]), atol=1e-6)


def test_shuffle_is_seeded(tiny_mnist):
    data_dir, _, _ = tiny_mnist
    first = lambda seed: next(iter(data.load_dataset("mnist", "train", 40, data_dir=data_dir, seed=seed))).numpy()  # noqa: E731
    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), first(2))


def test_environment_variable_and_prepared_tfds_dir(tiny_mnist, monkeypatch, tmp_path):
    data_dir, train, _ = tiny_mnist
    monkeypatch.setenv("KD_GAN_DATA_DIR", data_dir)
    builder = data.get_builder("mnist")  # from the environment variable
    # The converted folder is itself a prepared tfds data dir: point data_dir at it.
    tfds_dir = os.path.dirname(os.path.dirname(builder.data_dir))
    batch = next(iter(data.load_dataset("mnist", "train", 4, data_dir=tfds_dir, shuffle=False)))
    np.testing.assert_allclose(batch.numpy()[..., 0], to_unit(train[:4]), atol=1e-6)


def _png(array):
    return tf.io.encode_png(array).numpy()


def _add(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def test_local_cifar10_archive(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "cifar10").mkdir()
    with tarfile.open(tmp_path / "cifar10" / "cifar10-train-png.tar.gz", "w:gz") as archive:
        for index, (name, image) in enumerate(zip(["airplane", "cat", "truck"], images)):
            _add(archive, f"train/{name}/{index}.png", _png(image))
    batch = next(iter(data.load_dataset("cifar10", "train", 3, data_dir=str(tmp_path), shuffle=False)))
    assert batch.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(batch.numpy(), to_unit(images), atol=1e-6)
    with pytest.raises(ValueError, match=r"Split 'test'.*\['train'\]"):
        data.load_dataset("cifar10", "test", 3, data_dir=str(tmp_path))


def test_local_celeb_a_is_cropped_and_resized(tmp_path):
    (tmp_path / "celeba").mkdir()
    face = np.zeros((109, 89, 3), np.uint8)
    face[:, :, 0] = 200  # A red frame, so the JPEG round trip keeps the value near 200.
    with tarfile.open(tmp_path / "celeba" / "celeba-aligned-half-10k.tar.gz", "w:gz") as archive:
        for index in range(2):
            _add(archive, f"img_align_celeba_half/{index + 1:06d}.jpg", tf.io.encode_jpeg(face, quality=100).numpy())
    batch = next(iter(data.load_dataset("celeb_a", "train", 2, data_dir=str(tmp_path), shuffle=False))).numpy()
    assert batch.shape == (2, 64, 64, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[..., 0].mean(), 200 / 127.5 - 1, atol=0.02)
    assert batch.min() >= -1.0 and batch.max() <= 1.0


def test_center_crop_takes_the_same_fraction_at_any_size():
    full = np.zeros((218, 178, 3), np.uint8)
    full[39:179, 19:159] = 255  # exactly the centred 140x140 crop
    assert data.center_crop_resize(full, 64).numpy().min() == 255
    half = np.zeros((109, 89, 3), np.uint8)
    half[19:89, 9:79] = 255  # 70x70 (offsets rounded down), the same fraction of a half-size frame
    assert data.center_crop_resize(half, 64).numpy().min() == 255


def test_unknown_dataset():
    with pytest.raises(ValueError, match="'svhn'.*mnist"):
        data.load_dataset("svhn", "train", 4)


def test_bad_batch_size(tiny_mnist):
    with pytest.raises(ValueError, match="batch_size=0"):
        data.load_dataset("mnist", "train", 0, data_dir=tiny_mnist[0])


def test_data_dir_without_data_names_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.load_dataset("mnist", "train", 4, data_dir=str(tmp_path))
    message = str(error.value)
    assert "dataset_info.json" in message and "train-images-idx3-ubyte.gz" in message
    with pytest.raises(FileNotFoundError, match="not a directory"):
        data.load_dataset("mnist", "train", 4, data_dir=str(tmp_path / "missing"))


def test_no_data_and_no_network_fails_fast_with_instructions(monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    real_builder = tfds.builder
    monkeypatch.setattr(data.tfds, "builder", lambda name: real_builder(name, data_dir=str(tmp_path)))
    monkeypatch.setattr(data, "_network_available", lambda: False)
    with pytest.raises(FileNotFoundError, match="KD_GAN_DATA_DIR"):
        data.load_dataset("mnist", "train", 4)


def test_shared_mnist(shared_data_dir):
    batches = list(data.load_dataset("mnist", "test", 1000, data_dir=shared_data_dir, shuffle=False))
    assert len(batches) == 10 and batches[0].shape == (1000, 28, 28, 1)
    assert batches[0].numpy().min() == -1.0 and batches[0].numpy().max() == 1.0
