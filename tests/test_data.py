"""Data: local files -> tfds -> batches of images in [-1, 1]; clear errors otherwise."""

import io
import os
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf

from kd_gan.data import loading as data


def to_unit(images):
    return images.astype(np.float32) / 127.5 - 1.0


def stored_order(count):
    """The seeded order local conversions store examples in (files' order -> random)."""
    return np.random.default_rng([data.CONVERSION_SEED, count]).permutation(count)


def test_local_mnist_yields_the_files_pixels(tiny_mnist):
    data_dir, train, test = tiny_mnist
    batches = list(data.load_dataset("mnist", "train", 8, data_dir=data_dir, shuffle=False))
    assert len(batches) == 5
    first = batches[0].numpy()
    assert first.shape == (8, 28, 28, 1) and first.dtype == np.float32
    np.testing.assert_allclose(first[..., 0], to_unit(train[stored_order(40)][:8]), atol=1e-6)
    everything = np.concatenate([b.numpy() for b in batches])
    assert everything.min() >= -1.0 and everything.max() <= 1.0
    test_batches = list(data.load_dataset("mnist", "test", 5, data_dir=data_dir, shuffle=False, drop_remainder=False))
    assert [len(b) for b in test_batches] == [5, 5, 2]
    np.testing.assert_allclose(test_batches[-1].numpy()[..., 0], to_unit(test[stored_order(12)][10:]), atol=1e-6)
    assert not np.array_equal(stored_order(40), np.arange(40))


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
    np.testing.assert_allclose(batch.numpy()[..., 0], to_unit(train[stored_order(40)][:4]), atol=1e-6)


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
    np.testing.assert_allclose(batch.numpy(), to_unit(images[stored_order(3)]), atol=1e-6)
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


def class_sorted_cifar10(root, per_class):
    """A CIFAR-10-layout archive sorted by class, as the shared one is; pixel value = 20 * class."""
    (root / "cifar10").mkdir()
    with tarfile.open(root / "cifar10" / "cifar10-train-png.tar.gz", "w:gz") as archive:
        for label, name in enumerate(data.CIFAR10_CLASSES):
            png = _png(np.full((32, 32, 3), 20 * label, np.uint8))
            for index in range(per_class):
                _add(archive, f"train/{name}/{index:04d}.png", png)
    return str(root)


def classes_of(images):
    return set(np.round((np.asarray(images)[:, 0, 0, 0] + 1) * 127.5 / 20).astype(int))


def test_class_sorted_files_are_stored_and_read_in_random_order(tmp_path):
    data_dir = class_sorted_cifar10(tmp_path, 150)  # 1,500 images, class by class.
    stored = np.concatenate(list(data.load_dataset("cifar10", "train", 100, data_dir=data_dir, shuffle=False)))
    assert classes_of(stored[:1000]) == set(range(10))  # "The first N images" hold every class.
    assert classes_of(stored[:100]) == set(range(10))
    # One training epoch (shuffled, as the experiment reads it): its first 10% holds every class.
    epoch = np.concatenate(list(data.load_dataset("cifar10", "train", 50, data_dir=data_dir, seed=3)))
    assert len(epoch) == 1500 and classes_of(epoch[:150]) == set(range(10))
    labels = [int(e["label"]) for e in data.get_builder("cifar10", data_dir).as_dataset(split="train[:20]", shuffle_files=False)]
    assert labels != sorted(labels)


def test_a_truncated_archive_is_one_clear_error(tmp_path):
    class_sorted_cifar10(tmp_path, 20)
    path = tmp_path / "cifar10" / "cifar10-train-png.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(data.InputError, match="cifar10-train-png.tar.gz.*truncated or corrupt"):
        data.load_dataset("cifar10", "train", 4, data_dir=str(tmp_path))


def test_mnist_files_of_another_shape_are_refused_before_anything_is_written(tiny_mnist, tmp_path):
    import shutil

    from conftest import write_idx

    shutil.copytree(tiny_mnist[0], tmp_path / "odd")
    write_idx(tmp_path / "odd" / "mnist" / "train-images-idx3-ubyte.gz", np.zeros((40, 32, 32), np.uint8))
    with pytest.raises(data.InputError, match=r"images of shape \(40, 32, 32\).*MNIST's are \(N, 28, 28\)"):
        data.load_dataset("mnist", "train", 4, data_dir=str(tmp_path / "odd"), cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "tfds").exists() or not any((tmp_path / "cache" / "tfds").rglob("dataset_info.json"))


def test_a_missing_file_is_named(tiny_mnist, tmp_path):
    import shutil

    shutil.copytree(tiny_mnist[0], tmp_path / "partial")
    os.remove(tmp_path / "partial" / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="missing .*t10k-labels-idx1-ubyte.gz") as error:
        data.load_dataset("mnist", "train", 4, data_dir=str(tmp_path / "partial"))
    assert "train-images" not in str(error.value)


def test_a_batch_larger_than_the_split_is_refused_before_training(tiny_mnist):
    with pytest.raises(data.InputError, match="batch_size=64 is larger than mnist 'train' \\(40 images\\)"):
        data.load_dataset("mnist", "train", 64, data_dir=tiny_mnist[0])
    # Without drop_remainder a short last batch is fine (scoring reads whole splits).
    assert len(list(data.load_dataset("mnist", "test", 64, data_dir=tiny_mnist[0], drop_remainder=False))) == 1


def test_shared_mnist(shared_data_dir):
    batches = list(data.load_dataset("mnist", "test", 1000, data_dir=shared_data_dir, shuffle=False))
    assert len(batches) == 10 and batches[0].shape == (1000, 28, 28, 1)
    assert batches[0].numpy().min() == -1.0 and batches[0].numpy().max() == 1.0


def test_a_conversion_prints_nothing_and_warns_of_nothing_but_logs_its_time(tiny_mnist, tmp_path, capfd, caplog):
    from kd_gan.data import local_files

    caplog.set_level("INFO", logger="absl")
    prepared = local_files.convert_local(tiny_mnist[0], "mnist", str(tmp_path / "cache"))
    assert os.path.isdir(prepared)
    printed = capfd.readouterr()
    assert "Downloading and preparing" not in printed.out + printed.err and "downloaded and prepared" not in printed.out
    assert not [record for record in caplog.records if record.levelname == "WARNING"]  # tfds' dataset_info.json warning.
    assert "Converted mnist in" in caplog.text


def test_a_conversion_under_way_in_another_process_is_waited_for_not_repeated(tiny_mnist, tmp_path, caplog):
    # Two runs started at once on the same files: the second waits for the first's
    # conversion and reads it (tfds refuses to prepare a dataset prepared meanwhile).
    import threading

    from kd_gan._io import folder_lock
    from kd_gan.data import local_files

    caplog.set_level("INFO", logger="absl")
    cache = str(tmp_path / "cache")
    tfds_dir = local_files.local_tfds_dir(tiny_mnist[0], "mnist", cache)
    found = []
    with folder_lock(tfds_dir, "data conversion"):  # What the first process holds while it converts.
        waiting = threading.Thread(target=lambda: found.append(local_files.convert_local(tiny_mnist[0], "mnist", cache)))
        waiting.start()
        deadline = time.monotonic() + 60.0
        while "waiting for it" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "waiting for it" in caplog.text and waiting.is_alive() and not found
        assert local_files.prepared_dir(tfds_dir, "mnist") is None  # It converted nothing meanwhile.
        local_files._convert_local(tiny_mnist[0], "mnist", tfds_dir)
    waiting.join(timeout=60.0)
    assert found == [local_files.prepared_dir(tfds_dir, "mnist")]
    assert caplog.text.count("Converted mnist in") == 1
    assert len(list(data.load_dataset("mnist", "test", 4, data_dir=tiny_mnist[0], cache_dir=cache))) > 0


def test_a_conversion_killed_while_tfds_wrote_it_is_neither_read_nor_left_behind(tiny_mnist, tmp_path):
    from kd_gan.data import local_files

    cache = str(tmp_path / "cache")
    tfds_dir = local_files.local_tfds_dir(tiny_mnist[0], "mnist", cache)
    stale = os.path.join(tfds_dir, "mnist", "incomplete.ab12cd_1.1.0")
    os.makedirs(stale)
    with open(os.path.join(stale, "dataset_info.json"), "w") as file:  # tfds writes it before the rename.
        file.write("{}")
    assert local_files.prepared_dir(tfds_dir, "mnist") is None
    prepared = local_files.convert_local(tiny_mnist[0], "mnist", cache)
    assert os.listdir(os.path.join(tfds_dir, "mnist")) == [os.path.basename(prepared)]
