"""Scoring plumbing: classifiers, statistics files and their cache, folders, the evaluate command."""

import json
import os
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import tensorflow as tf

from kd_gan import Generator
from kd_gan.evaluation import classifiers
from kd_gan.data import loading as data
from kd_gan import _io as files
from kd_gan.evaluation import formulas as metrics
from kd_gan.models import precision
from kd_gan.evaluation import EvaluationCallback, scoring, statistics
from kd_gan.errors import InputError

from test_metrics import reference_fid, reference_inception_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _FakeInception(tf.Module):
    """Same call signature as the FID network: [N, 299, 299, 3] -> {"pool_3", ("logits")}."""

    def __init__(self, with_logits):
        super().__init__()
        self.with_logits = with_logits

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def __call__(self, images):
        precise = tf.cast(images, tf.float64)  # float32 means of 299x299 values drift by ~1e-3
        mean, std = tf.reduce_mean(precise, [1, 2]), tf.math.reduce_std(precise, [1, 2])
        outputs = {"pool_3": tf.cast(tf.concat([mean, std], -1), tf.float32)}
        if self.with_logits:
            outputs["logits"] = tf.cast(mean * 10.0, tf.float32)
        return outputs


@pytest.fixture(scope="module")
def fake_inception_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake_inception") / "net"
    tf.saved_model.save(_FakeInception(False), str(path))
    return str(path)


@pytest.mark.parametrize("with_logits", [False, True])
def test_local_inception_pipeline(tmp_path, with_logits):
    tf.saved_model.save(_FakeInception(with_logits), str(tmp_path / "net"))
    classifier = classifiers.InceptionClassifier(str(tmp_path / "net"))
    assert classifier.has_logits is with_logits and classifier.dimension == 6
    # Constant grey images: the network sees ((v + 1) * 127.5 - 128) / 128 on all 3 channels at 299x299.
    values = np.array([-1.0, 0.0, 0.5], np.float32)
    images = np.ones((3, 28, 28, 1), np.float32) * values[:, None, None, None]
    activations, _ = classifier(images)
    expected = ((values + 1) * 127.5 - 128) / 128
    np.testing.assert_allclose(activations[:, :3], np.repeat(expected[:, None], 3, 1), atol=1e-5)
    np.testing.assert_allclose(activations[:, 3:], 0, atol=1e-5)
    generator = Generator(8, (28, 28, 1), 1)
    generated = np.concatenate([classifier(b)[0] for b in scoring.generator_batches(generator, 20)])
    reference_rows = np.random.default_rng(0).normal(size=(20, 6))
    reference = scoring.ImageStatistics(
        reference_rows.mean(0), np.cov(reference_rows, rowvar=False), 20, reference_rows, classifier.name, "rows"
    )
    record = scoring.evaluate_generator(generator, classifier, reference, num_samples=20)
    assert record["num_samples"] == 20 and record["reference_count"] == 20
    assert record["fid"] == pytest.approx(reference_fid(reference_rows, generated), rel=1e-5)
    assert record["kid"] == pytest.approx(metrics.kernel_inception_distance(reference_rows, generated)[0], rel=1e-5)
    assert 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1
    if with_logits:
        logits = np.concatenate([classifier(b)[1] for b in scoring.generator_batches(generator, 20)])
        assert record["inception_score"] == pytest.approx(reference_inception_score(logits), rel=1e-5)
    else:
        assert record["inception_score"] is None and "no logits" in record["inception_score_note"]


def test_inception_is_named_by_content_not_folder(tmp_path, fake_inception_path):
    import shutil

    shutil.copytree(fake_inception_path, tmp_path / "elsewhere")
    assert classifiers.InceptionClassifier(str(tmp_path / "elsewhere")).name == classifiers.InceptionClassifier(fake_inception_path).name


def test_missing_inception_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        classifiers.InceptionClassifier(str(tmp_path))


def test_preprocess_resizes_with_the_graphs_bilinear_op():
    images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = (tf.compat.v1.image.resize_bilinear((images + 1) * 127.5, [299, 299], align_corners=False) - 128) / 128
    np.testing.assert_allclose(classifiers.preprocess_for_inception(images), expected, atol=1e-5)


def test_packaged_mnist_classifier_matches_its_record():
    classifier = classifiers.MnistClassifier()
    record = json.loads(open(classifiers.MNIST_CLASSIFIER_PATH.replace(".keras", ".json")).read())
    assert classifier.sha256 == record["sha256"] == files.file_digest(classifiers.MNIST_CLASSIFIER_PATH)
    assert classifier.name == f"mnist_cnn-v1-{record['sha256'][:12]}" and classifier.test_accuracy >= 0.99
    activations, logits = classifier(np.zeros((2, 28, 28, 1), np.float32))
    assert activations.shape == (2, 128) and logits.shape == (2, 10)
    with pytest.raises(InputError, match="28x28x1"):
        classifier(np.zeros((2, 32, 32, 3), np.float32))


def test_a_changed_classifier_file_is_refused(tmp_path):
    import shutil

    shutil.copy(classifiers.MNIST_CLASSIFIER_PATH, tmp_path / "c.keras")
    (tmp_path / "c.json").write_text(json.dumps({"sha256": "0" * 64, "test_accuracy": 0.99}))
    with pytest.raises(InputError, match="changed or damaged"):
        classifiers.MnistClassifier(str(tmp_path / "c.keras"))


def test_latent_fidelity():
    teacher = Generator(8, (28, 28, 1), 2)
    same = scoring.latent_fidelity(teacher, teacher, num_samples=20, interpolation_pairs=3, interpolation_steps=4)
    assert same["mse"] == 0.0 and same["psnr_db"] == float("inf") and same["interpolation"]["mse"] == 0.0
    other = scoring.latent_fidelity(Generator(8, (28, 28, 1), 1), teacher, num_samples=20, interpolation_pairs=3)
    assert other["mse"] > 0 and np.isfinite(other["psnr_db"]) and other["interpolation"]["mse"] > 0


class _CountingClassifier:
    """Activations = the first 4 pixels, logits = the first 10: checkable by hand."""

    name, has_logits, score_name = "counting", True, "inception_score"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        flat = np.asarray(images).reshape(len(images), -1)
        return flat[:, :4], flat[:, :10]


def test_reference_is_the_whole_split_cached_with_its_moments(tiny_mnist):
    data_dir, _, test_images = tiny_mnist
    classifier = _CountingClassifier()
    first = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=data_dir)
    calls = classifier.calls
    second = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=data_dir)
    assert classifier.calls == calls > 0 and first.count == second.count == 12
    assert first.seconds > 0 and second.seconds == first.seconds  # The pass is timed, and the time kept with the file.
    rows = test_images.reshape(12, -1)[:, :4].astype(np.float64) / 127.5 - 1
    np.testing.assert_allclose(first.mean, rows.mean(0), atol=1e-6)
    np.testing.assert_allclose(second.covariance, np.cov(rows, rowvar=False), atol=1e-6)
    assert first.preprocessing == data.PREPROCESSING_VERSION and "mnist" in first.fingerprint


def test_reference_subset_is_seeded_random_not_the_first_images(tiny_mnist, tmp_path):
    data_dir, train, _ = tiny_mnist
    classifier = _CountingClassifier()
    subset = scoring.dataset_statistics(classifier, "mnist", "train", reference_samples=10, data_dir=data_dir)
    calls = classifier.calls
    # Computed anew in another cache: the same seeded subset.
    again = scoring.dataset_statistics(classifier, "mnist", "train", reference_samples=10, data_dir=data_dir, cache_dir=str(tmp_path))
    assert classifier.calls > calls
    np.testing.assert_array_equal(subset.activations, again.activations)
    other_seed = scoring.dataset_statistics(classifier, "mnist", "train", reference_samples=10, data_dir=data_dir, seed=1)
    assert not np.array_equal(np.sort(subset.activations, 0), np.sort(other_seed.activations, 0))
    stored = np.concatenate([b for b in scoring.real_batches("mnist", "train", data_dir=data_dir)])[:, :, :, 0]
    first_ten = stored.reshape(40, -1)[:10, :4]
    assert subset.count == 10 and not np.allclose(np.sort(subset.activations, 0), np.sort(first_ten, 0))
    with pytest.raises(InputError, match="has 40 images"):
        scoring.dataset_statistics(classifier, "mnist", "train", reference_samples=50, data_dir=data_dir)


def test_statistics_cache_follows_preprocessing_and_network(tiny_mnist, monkeypatch):
    classifier = _CountingClassifier()
    scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    calls = classifier.calls
    monkeypatch.setattr(data, "PREPROCESSING_VERSION", "changed")
    scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    assert classifier.calls > calls
    calls = classifier.calls
    monkeypatch.setattr(classifier, "name", "another-network")
    scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    assert classifier.calls > calls


def test_a_truncated_cached_statistics_file_is_computed_again_with_a_warning(tiny_mnist, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KD_GAN_CACHE_DIR", str(tmp_path))
    classifier = _CountingClassifier()
    first = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    (cached,) = (tmp_path / "stats").glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:200])
    calls = classifier.calls
    caplog.set_level("WARNING")
    again = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    assert classifier.calls > calls and "Cannot read statistics" in caplog.text and "Computing them again" in caplog.text
    np.testing.assert_allclose(again.mean, first.mean)
    scoring.ImageStatistics.load(str(cached))  # Rewritten whole.
    # A file the user gives is theirs: refused in one line, not rewritten.
    cached.write_bytes(cached.read_bytes()[:200])
    with pytest.raises(InputError, match="Cannot read statistics from"):
        scoring.ImageStatistics.load(str(cached))


def test_kept_activations_are_in_random_order_and_tiny_sets_give_null_not_nan(monkeypatch):
    rows = np.repeat(np.arange(40, dtype=np.float32)[:, None], 4, axis=1)  # Sorted, as folders by class are.
    images = rows.reshape(40, 2, 2, 1) / 40.0
    fields = scoring.run_classifier(lambda batch: (batch.reshape(len(batch), -1), None), np.array_split(images, 4), 40, keep=30)
    kept = fields["activations"][:, 0]
    assert len(kept) == 30 and len(set(kept)) == 30 and not np.all(np.diff(kept) > 0)
    tiny = scoring.ImageStatistics(rows[:3].mean(0), np.cov(rows[:3] + np.eye(3, 4), rowvar=False), 3, rows[:3], "net", "tiny")
    big = scoring.ImageStatistics(rows.mean(0), np.cov(rows + np.eye(40, 4), rowvar=False), 40, rows, "net", "big")
    record = scoring.quality(tiny, big)
    assert record["precision"] is None and record["recall"] is None and record["kid_std"] is None
    # 3 generated images against 4 features: the FID is named unreliable, in the record and the log.
    assert record["caveats"] and record["caveats"][0].startswith("FID from 3 generated images, not more than the network's 4")
    rng = np.random.default_rng(0)
    near, far = rng.normal(size=(100, 4)), rng.normal(3.0, size=(100, 4))
    near, far = (scoring.ImageStatistics(x.mean(0), np.cov(x, rowvar=False), 100, x, "net", name) for x, name in ((near, "near"), (far, "far")))
    assert "caveats" not in scoring.quality(far, near)  # 100 images of 4 features, told apart.
    # The reference's radii are computed once for every model scored against it, and reused as they are.
    calls = []
    original = scoring.formulas.manifold_radii
    monkeypatch.setattr(scoring.formulas, "manifold_radii", lambda *a, **k: calls.append(len(a[0])) or original(*a, **k))
    reference = scoring.ImageStatistics(near.mean, near.covariance, 100, near.activations, "net", "reference")
    first, _ = scoring.quality(far, reference), scoring.quality(near, reference)
    assert calls == [100, 100, 100]  # The reference's once, then each generated set's.
    assert (first["precision"], first["recall"]) == metrics.precision_recall(near.activations, far.activations)
    json.dumps(record, allow_nan=False)  # Valid JSON: no NaN anywhere.


def test_statistics_file_round_trip_and_refusals(tmp_path):
    rows = np.random.default_rng(0).normal(size=(30, 4))
    stats = scoring.ImageStatistics(rows.mean(0), np.cov(rows, rowvar=False), 30, rows.astype(np.float32), "net", "rows", "fp", "1", None, 12.5)
    loaded = scoring.ImageStatistics.load(stats.save(str(tmp_path / "s.npz")))
    for name in ("mean", "covariance", "activations"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))
    assert (loaded.count, loaded.network, loaded.source, loaded.score, loaded.vol) == (30, "net", "rows", None, 12.5)
    np.savez(tmp_path / "other.npz", mu=rows.mean(0))
    with pytest.raises(InputError, match="not a kd_gan statistics file"):
        scoring.ImageStatistics.load(str(tmp_path / "other.npz"))
    other = scoring.ImageStatistics(rows.mean(0), np.cov(rows, rowvar=False), 30, rows, "other-net", "rows")
    with pytest.raises(InputError, match="different networks"):
        scoring.quality(other, stats)
    with pytest.raises(InputError, match="saved as .npz"):
        stats.save(str(tmp_path / "s.stats"))


# ---------------------------------------------------------------- folders and archives


def write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))


def make_folder(root, count, size=(16, 16), channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size[1], size[0], channels), dtype=np.uint8)
    for index, image in enumerate(images):
        write_png(os.path.join(root, f"sub{index % 2}", f"{index:03d}.png"), image)
    return images


def test_folder_and_tar_read_the_same_images(tmp_path):
    from kd_gan.data.image_folders import ImageSource

    images = make_folder(str(tmp_path / "folder"), 6)
    (tmp_path / "folder" / "notes.txt").write_text("not an image")
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "folder", arcname="folder")
    from_folder = np.concatenate(list(ImageSource(str(tmp_path / "folder")).batches(batch_size=4)))
    from_tar = np.concatenate(list(ImageSource(str(tmp_path / "images.tar.gz")).batches(batch_size=4)))
    assert from_folder.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(from_folder, from_tar)
    # Sorted by path: sub0/000, sub0/002, sub0/004, sub1/001, ...
    np.testing.assert_allclose(from_folder[0], images[0] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(from_folder[3], images[1] / 127.5 - 1, atol=1e-6)


def test_grey_images_are_tiled_to_rgb(tmp_path):
    from kd_gan.data.image_folders import ImageSource

    grey = make_folder(str(tmp_path / "grey"), 2, channels=1)
    batch = next(ImageSource(str(tmp_path / "grey")).batches())
    assert batch.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(batch[0], np.repeat(grey[0], 3, -1) / 127.5 - 1, atol=1e-6)


def test_folder_errors_each_say_one_clear_thing(tmp_path):
    from kd_gan.data.image_folders import ImageSource

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no PNG or JPEG"):
        ImageSource(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="No folder or tar"):
        ImageSource(str(tmp_path / "missing"))
    make_folder(str(tmp_path / "mixed"), 2)
    write_png(str(tmp_path / "mixed" / "zz_big.png"), np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(InputError, match="differ in size.*zz_big.png is 24x20"):
        list(ImageSource(str(tmp_path / "mixed")).batches())
    make_folder(str(tmp_path / "broken"), 2)
    (tmp_path / "broken" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="Cannot decode image .*bad.png"):
        list(ImageSource(str(tmp_path / "broken")).batches())
    with pytest.raises(InputError, match="holds 3 images; num_samples=5"):
        ImageSource(str(tmp_path / "broken")).select(5)
    with tarfile.open(tmp_path / "good.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "mixed", arcname="mixed")
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "good.tar.gz").read_bytes()[:200])
    with pytest.raises(InputError, match="truncated or corrupt"):
        list(ImageSource(str(tmp_path / "cut.tar.gz")).batches())


def test_folder_subset_is_seeded_and_centre_crop_resizes(tmp_path):
    from kd_gan.data.image_folders import ImageSource

    make_folder(str(tmp_path / "f"), 10, size=(20, 12))
    source = ImageSource(str(tmp_path / "f"))
    assert source.select(4, seed=1) == source.select(4, seed=1) != source.select(4, seed=2)
    batch = next(source.batches(num_samples=4, seed=1, image_size=8))
    assert batch.shape == (4, 8, 8, 3)


def test_evaluate_folders_on_the_command_line(tmp_path, fake_inception_path):
    make_folder(str(tmp_path / "a"), 12, seed=1)
    make_folder(str(tmp_path / "b"), 12, seed=2)
    command = [
        sys.executable, "-m", "kd_gan.evaluate", f"--images={tmp_path / 'a'}", f"--reference_images={tmp_path / 'b'}",
        f"--inception_path={fake_inception_path}", f"--save_stats={tmp_path / 'b.npz'}", f"--output={tmp_path / 'm.json'}",
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "fid" in completed.stdout and "kid" in completed.stdout
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["num_samples"] == 12 and record["reference_count"] == 12 and record["fid"] > 0
    # The saved statistics stand in for the folder, with the same result.
    from kd_gan.evaluation import cli as evaluate

    again = evaluate.evaluate(images=str(tmp_path / "a"), reference_images=str(tmp_path / "b.npz"), inception_path=fake_inception_path)
    assert again["fid"] == pytest.approx(record["fid"], rel=1e-9) and again["kid"] == pytest.approx(record["kid"], rel=1e-9)
    # Errors are one line, no traceback.
    completed = subprocess.run(command[:4] + [f"--reference_images={tmp_path / 'nothing'}", f"--inception_path={fake_inception_path}"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0 and "Error: No folder or tar archive" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_evaluate_scores_a_generator_and_a_real_split(tiny_mnist, tmp_path):
    from kd_gan.evaluation import cli as evaluate

    generator = Generator(8, (28, 28, 1), 1)
    generator.save(tmp_path / "g.keras")
    record = evaluate.evaluate("mnist", 8, generator_path=str(tmp_path / "g.keras"), data_dir=tiny_mnist[0])
    assert record["num_samples"] == 8 and record["reference"].startswith("mnist test") and record["reference_count"] == 12
    assert record["classifier"].startswith("mnist_cnn") and record["classifier_test_accuracy"] >= 0.99
    assert 1.0 <= record["mnist_score"] <= 10.0 and record["fid"] > 0 and record["kid"] is not None
    completed = subprocess.run(
        [sys.executable, "-m", "kd_gan.evaluate", "--dataset=mnist", "--real_split=test", "--num_samples=8",
         f"--data_dir={tiny_mnist[0]}", f"--output={tmp_path / 'real.json'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    real = json.loads((tmp_path / "real.json").read_text())
    assert real["real_split"] == "test" and real["reference"].startswith("mnist train") and real["num_samples"] == 8
    with pytest.raises(InputError, match="Nothing to score"):
        evaluate.evaluate("mnist", 8, data_dir=tiny_mnist[0])
    with pytest.raises(InputError, match="disjoint --reference_split"):
        evaluate.evaluate("cifar10", 8, real_split="train[:8]")


def test_tflite_generator_scores_like_its_keras_model(tiny_mnist, tmp_path):
    from kd_gan.export import converters as export

    generator = Generator(8, (28, 28, 1), 1)
    path = export.export_tflite(generator, str(tmp_path / "g.tflite"))["path"]
    shipped = export.TFLiteGenerator(path)
    assert shipped.latent_dim == 8
    z = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)  # Not a multiple of a batch: padded.
    np.testing.assert_allclose(shipped(z), generator(z, training=False), atol=1e-4)
    classifier = classifiers.MnistClassifier()
    reference = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=tiny_mnist[0])
    keras_record = scoring.evaluate_generator(generator, classifier, reference, 20)
    file_record = scoring.evaluate_generator(shipped, classifier, reference, 20)
    assert file_record["fid"] == pytest.approx(keras_record["fid"], rel=1e-3)


def test_evaluation_callback_logs_every_n_epochs(tmp_path):
    from kd_gan import GAN, Discriminator

    generator = Generator(8, (28, 28, 1), 1)
    model = GAN(generator, Discriminator((28, 28, 1), 1))
    model.compile()
    classifier = _CountingClassifier()
    rows = np.random.default_rng(0).normal(size=(16, 4))
    reference = scoring.ImageStatistics(rows.mean(0), np.cov(rows, rowvar=False), 16, rows, "counting", "rows")
    callback = EvaluationCallback(generator, classifier, reference, 16, str(tmp_path / "logs"), every_n_epochs=2)
    model.fit(np.zeros((4, 28, 28, 1), "float32"), batch_size=2, epochs=4, verbose=0, callbacks=[callback])
    assert [record["epoch"] for record in callback.history] == [2, 4]
    assert all(record["num_samples"] == 16 and record["fid"] > 0 for record in callback.history)
    events = [f for f in os.listdir(tmp_path / "logs") if f.startswith("events.out.tfevents")]
    assert events, "no TensorBoard event file"
    logged = [
        value.tag
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "logs" / events[0]))
        for value in event.summary.value
    ]
    assert logged.count("eval/fid") == 2 and logged.count("eval/kid") == 2 and "eval/precision" in logged
    assert logged.count("eval/inception_score") == 2 and "eval/vol" in logged


# ---------------------------------------------------------------- the shared data


def test_shared_inception_fid_of_real_images_against_noise(shared_data_dir, shared_inception_path):
    classifier = classifiers.InceptionClassifier(shared_inception_path)
    count = 250  # Small: ~25 images/s on a 2-core CPU.
    real = np.concatenate(list(scoring.real_batches("cifar10", "train", count, data_dir=shared_data_dir)))
    assert real.shape == (count, 32, 32, 3)
    real_activations = classifier(real)[0]
    noise_images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3)).astype(np.float32) / 127.5 - 1
    noise = classifier(noise_images)[0]
    against_noise = metrics.frechet_distance(real_activations, noise)
    assert 150 < against_noise < 1000, against_noise
    # 125 vs 125 rows in 2048-d: FID's covariances are singular there; KID is unbiased at any count.
    half, _ = metrics.kernel_inception_distance(real_activations[:125], real_activations[125:])
    noise_kid, _ = metrics.kernel_inception_distance(real_activations[:125], noise[125:])
    assert half < 0.1 * noise_kid, (half, noise_kid)


def cifar10_set_a(shared_data_dir, root):
    """Set A of the shared README (first 1,000 files per class by path), even- and odd-indexed, as two folders."""
    path = os.path.join(shared_data_dir, "cifar10", "cifar10-train-png.tar.gz")
    with tarfile.open(path) as archive:
        members = sorted((m for m in archive.getmembers() if m.name.endswith(".png")), key=lambda m: m.name)
        set_a = [m for c in data.CIFAR10_CLASSES for m in [m for m in members if m.name.split("/")[-2] == c][:1000]]
        for index, member in enumerate(set_a):
            half = "even" if index % 2 == 0 else "odd"
            target = os.path.join(root, half, f"{index:05d}.png")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as file:
                file.write(archive.extractfile(member).read())
    return os.path.join(root, "even"), os.path.join(root, "odd")


@pytest.mark.slow
def test_cifar10_reference_fid_between_two_folders(shared_data_dir, shared_inception_path, tmp_path):
    """FID(set A even, set A odd) given as two folders on the command line: 9.976 (shared README)."""
    even, odd = cifar10_set_a(shared_data_dir, str(tmp_path))
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "kd_gan.evaluate", f"--images={even}", f"--reference_images={odd}",
         f"--inception_path={shared_inception_path}", f"--output={tmp_path / 'fid.json'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    elapsed = time.perf_counter() - start
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "fid.json").read_text())
    print(f"FID(set A even, set A odd) = {record['fid']:.3f}, KID {record['kid']:.5f}; "
          f"{10_000 / elapsed:.1f} images/s through the folder path")
    assert record["num_samples"] == record["reference_count"] == 5000
    assert record["fid"] == pytest.approx(9.976, abs=0.05)


@pytest.mark.slow
def test_mnist_classifier_on_real_mnist(shared_data_dir):
    classifier = classifiers.MnistClassifier()
    reference = scoring.dataset_statistics(classifier, "mnist", "train", data_dir=shared_data_dir)
    test = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=shared_data_dir)
    record = scoring.quality(test, reference, "mnist_score")
    assert record["mnist_score"] > 9.5 and record["fid"] < 5 and record["precision"] > 0.6 and record["recall"] > 0.6
    noise = np.random.default_rng(0).uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32)
    noise_stats = scoring.ImageStatistics(
        **scoring.run_classifier(classifier, np.array_split(noise, 20), 2000), network=classifier.name, source="noise"
    )
    assert record["fid"] < 0.02 * scoring.quality(noise_stats, reference, "mnist_score")["fid"]


def test_int8_tflite_scores_like_its_keras_model_on_mnist(shared_data_dir, tmp_path):
    """The shipped int8 file, scored through LiteRT, within export.INT8_SCORE_TOLERANCE of Keras."""
    from kd_gan.export import converters as export

    # Random kernels scaled up: images spread over the tanh range (a trained
    # generator at this size is minutes of CPU), so quantisation error shows.
    generator = Generator(32, (28, 28, 1), 2)
    rng = np.random.default_rng(0)
    for weight in generator.weights:
        if "kernel" in weight.path:
            weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    path = export.export_tflite(generator, str(tmp_path / "g_int8.tflite"), quantization="int8")["path"]
    classifier = classifiers.MnistClassifier()
    reference = scoring.dataset_statistics(classifier, "mnist", "test", data_dir=shared_data_dir)
    keras_record = scoring.evaluate_generator(generator, classifier, reference, 2000)
    file_record = scoring.evaluate_generator(export.TFLiteGenerator(path), classifier, reference, 2000)
    print(f"MNIST FID Keras {keras_record['fid']:.2f}, int8 file {file_record['fid']:.2f}; "
          f"score {keras_record['mnist_score']:.3f} vs {file_record['mnist_score']:.3f}")
    for key in ("fid", "mnist_score"):
        assert file_record[key] == pytest.approx(keras_record[key], rel=export.INT8_SCORE_TOLERANCE)


def test_inception_loads_once_and_bfloat16_is_named_apart(fake_inception_path):
    first = classifiers.InceptionClassifier(fake_inception_path)
    again = classifiers.InceptionClassifier(fake_inception_path)
    fast = classifiers.InceptionClassifier(fake_inception_path, precision="bfloat16")
    assert first._call is again._call is fast._call
    assert (first.engine, fast.engine, fast.precision) == ("tensorflow", "tensorflow", "bfloat16")
    assert fast.name == f"{first.name}-bfloat16" != first.name
    with pytest.raises(InputError, match="precision 'float16'"):
        classifiers.InceptionClassifier(fake_inception_path, precision="float16")
    with pytest.raises(InputError, match="MNIST.*'bfloat16'"):
        classifiers.classifier_for("mnist", precision="bfloat16")


@pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")) or not precision.cpu_flags() & set(precision.BF16_CPU_FLAGS),
    reason="the oneDNN bfloat16 rewrite needs a CPU with AVX512-BF16 or AMX (and no GPU)",
)
def test_shared_inception_in_bfloat16_is_close_to_float32_and_leaves_it_alone(shared_inception_path):
    images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    standard = classifiers.InceptionClassifier(shared_inception_path)
    before = standard(images)[0]
    fast = classifiers.InceptionClassifier(shared_inception_path, precision="bfloat16")(images)[0]
    relative = np.mean(np.abs(fast - before)) / np.mean(np.abs(before))
    assert 1e-4 < relative < 0.1, relative  # Rewritten (not identical), and close.
    np.testing.assert_array_equal(standard(images)[0], before)  # The float32 pass is untouched.


def test_prefetched_batches_keep_order_and_raise_where_production_failed():
    assert list(statistics.prefetched(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        yield 2
        raise InputError("corrupt file b.png")

    seen = []
    with pytest.raises(InputError, match="corrupt file b.png"):
        for item in statistics.prefetched(failing()):
            seen.append(item)
    assert seen == [1, 2]
    # A consumer that stops early does not hang the producer.
    first = next(iter(statistics.prefetched(iter(range(1000)))))
    assert first == 0


def test_a_stopped_statistics_pass_resumes_from_its_saved_progress(tmp_path, monkeypatch, caplog):
    from kd_gan.evaluation import statistics as statistics_lib

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (60, 4, 4, 3)).astype(np.float32)
    batches = lambda: iter(np.array_split(images, 6))  # noqa: E731 - ten images a batch, the same each time.
    straight = scoring.run_classifier(_CountingClassifier(), batches(), 60, keep=25, seed=3)
    progress = str(tmp_path / "stats.npz.progress.npz")
    monkeypatch.setattr(statistics_lib, "PROGRESS_EVERY_S", 0.0)  # Saved after every batch.

    class StopsAtCall(_CountingClassifier):
        def __init__(self, stop):
            super().__init__()
            self.stop = stop

        def __call__(self, images):
            if self.calls + 1 == self.stop:
                raise KeyboardInterrupt
            return super().__call__(images)

    with pytest.raises(KeyboardInterrupt):
        scoring.run_classifier(StopsAtCall(4), batches(), 60, keep=25, seed=3, progress_path=progress)
    assert os.path.isfile(progress)  # Three batches' state.
    resumed_classifier = _CountingClassifier()
    caplog.set_level("INFO", logger="absl")  # Whatever verbosity an earlier test left.
    resumed = scoring.run_classifier(resumed_classifier, batches(), 60, keep=25, seed=3, progress_path=progress)
    assert resumed_classifier.calls == 3 and "after 30 of 60" in caplog.text  # Only the batches not covered.
    for key in ("mean", "covariance", "activations"):
        np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-10, atol=1e-12, err_msg=key)
    assert resumed["count"] == 60 and resumed["score"] == pytest.approx(straight["score"]) and resumed["vol"] == pytest.approx(straight["vol"])
    assert resumed["seconds"] > 0
    os.remove(progress)  # The caller's part, once the statistics are stored.
    # Progress of another pass (another seed) is discarded with a warning, not mixed in.
    with pytest.raises(KeyboardInterrupt):
        scoring.run_classifier(StopsAtCall(3), batches(), 60, keep=25, seed=3, progress_path=progress)
    other = scoring.run_classifier(_CountingClassifier(), batches(), 60, keep=25, seed=4, progress_path=progress)
    assert "cannot be resumed" in caplog.text and other["count"] == 60
    # Batches that no longer line up with the saved count are refused, naming the file.
    with pytest.raises(KeyboardInterrupt):
        scoring.run_classifier(StopsAtCall(3), batches(), 60, keep=25, seed=3, progress_path=progress)
    with pytest.raises(InputError, match="changed since .*progress"):
        scoring.run_classifier(_CountingClassifier(), iter(np.array_split(images, 4)), 60, keep=25, seed=3, progress_path=progress)


def test_a_cached_folder_pass_stopped_midway_resumes_and_leaves_no_progress_file(tmp_path, monkeypatch):
    from kd_gan.data import image_folders
    from kd_gan.evaluation import statistics as statistics_lib

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(25):
        write_png(str(folder / f"{index:02d}.png"), rng.integers(0, 256, (8, 8, 3)).astype(np.uint8))
    original = image_folders.ImageSource.batches
    monkeypatch.setattr(image_folders.ImageSource, "batches", lambda self, n=None, seed=0, batch_size=100, image_size=None: original(self, n, seed, 10, image_size))
    monkeypatch.setattr(statistics_lib, "PROGRESS_EVERY_S", 0.0)
    straight = scoring.folder_statistics(_CountingClassifier(), str(folder), cache_dir=str(tmp_path / "straight"))

    class StopsAtThirdCall(_CountingClassifier):
        def __call__(self, images):
            if self.calls == 2:
                raise KeyboardInterrupt
            return super().__call__(images)

    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        scoring.folder_statistics(StopsAtThirdCall(), str(folder), cache_dir=str(cache))
    assert len(list((cache / "stats").glob("*.progress.npz"))) == 1
    classifier = _CountingClassifier()
    resumed = scoring.folder_statistics(classifier, str(folder), cache_dir=str(cache))
    assert classifier.calls == 1 and not list((cache / "stats").glob("*progress*"))
    np.testing.assert_allclose(resumed.mean, straight.mean, atol=1e-12)
    np.testing.assert_allclose(resumed.covariance, straight.covariance, atol=1e-12)
    assert resumed.seconds > 0 and scoring.ImageStatistics.load(str(next((cache / "stats").glob("folder-*.npz")))).count == 25
