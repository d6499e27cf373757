"""The teacher-output cache: pairs round-trip, an interrupted fill resumes, a
changed teacher invalidates, pools rotate, and students learn from the pairs."""

import glob
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, changed, weights_of

from kd_gan import Discriminator, Distiller, Generator
from kd_gan.distillation import teacher_cache
from kd_gan.errors import InputError
from kd_gan.distillation.teacher_cache import TeacherCache

SHAPE = (8, 8, 1)
LATENT = 4


def teacher(seed=0):
    keras.utils.set_random_seed(seed)
    return Generator(LATENT, SHAPE, 2)


def shard_contents(cache, pool=0):
    files = sorted(glob.glob(os.path.join(cache.directory, f"pool_{pool}", "*.npz")))
    contents = []
    for path in files:
        with np.load(path) as shard:
            contents.append((shard["z"], shard["images"]))
    return contents


@pytest.mark.parametrize("storage, tolerance", [("uint8", 1 / 255 + 1e-6), ("float16", 1e-3)])
def test_pairs_round_trip(tmp_path, storage, tolerance):
    model = teacher()
    cache = TeacherCache(tmp_path / "cache", model, size=10, seed=3, storage=storage, shard_size=4)
    assert cache.num_shards == 3 and cache.fill() == 3 and cache.fill() == 0
    z = np.concatenate([shard[0] for shard in shard_contents(cache)])
    assert z.shape == (10, LATENT) and len(np.unique(z, axis=0)) == 10
    batches = list(cache.dataset(batch_size=5).take(2).as_numpy_iterator())
    assert set(batches[0]) == {"z", "teacher_images"} and batches[0]["teacher_images"].shape == (5, *SHAPE)
    for batch in batches:
        expected = model(batch["z"], training=False).numpy()
        np.testing.assert_allclose(batch["teacher_images"], expected, atol=tolerance)
    # One pass over the pool (two batches of five) reads every pair once.
    seen = np.concatenate([batch["z"] for batch in batches])
    np.testing.assert_array_equal(np.unique(seen, axis=0), np.unique(z, axis=0))


def test_interrupted_fill_resumes_with_the_same_pairs(tmp_path):
    model = teacher()
    cache = TeacherCache(tmp_path / "cache", model, size=12, shard_size=4)
    cache.fill()
    complete = shard_contents(cache)
    # An interruption: the last shard never renamed into place, a temporary file left behind.
    last = cache.shard_path(0, 2)
    os.replace(last, f"{last}.tmp.npz")
    reopened = TeacherCache(tmp_path / "cache", model, size=12, shard_size=4)
    assert reopened.missing_shards(1) == [(0, 2)]
    assert reopened.fill() == 1
    for (z, images), (z_again, images_again) in zip(complete, shard_contents(reopened)):
        np.testing.assert_array_equal(z, z_again)
        np.testing.assert_array_equal(images, images_again)


def test_a_fill_killed_midway_keeps_its_shards_in_the_log(tmp_path, monkeypatch):
    cache = TeacherCache(tmp_path / "cache", teacher(), size=12, shard_size=4)
    saved = np.savez
    calls = []

    def killed_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # A kill while the third shard is written.
        saved(*args, **kwargs)

    monkeypatch.setattr(teacher_cache.np, "savez", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        cache.fill()
    assert teacher_cache.read_fill_log(cache.directory)["shards"] == 2
    monkeypatch.setattr(teacher_cache.np, "savez", saved)
    assert TeacherCache(tmp_path / "cache", teacher(), size=12, shard_size=4).fill() == 1
    log = teacher_cache.read_fill_log(cache.directory)
    assert (log["shards"], log["pairs"]) == (3, 12)  # Every shard of the cache, over both fills.


def test_a_second_process_on_a_cache_being_filled_stops_at_once_naming_the_filler(tmp_path):
    from kd_gan import _io

    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "cache")], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"  # As a filler holds it while it writes.
        with pytest.raises(InputError, match=rf"teacher cache .* is being written by another process \(pid {holder.pid} "):
            TeacherCache(tmp_path / "cache", teacher(), size=4)
    finally:
        holder.kill()
        holder.wait()
    cache = TeacherCache(tmp_path / "cache", teacher(), size=4)  # The killed filler's lock is taken over.
    assert cache.fill() == 1
    assert open(os.path.join(cache.directory, _io.LOCK_FILE)).read() == ""  # Released after the fill.


LOCK_HOLDER = """
import sys, time
from kd_gan import _io
with _io.folder_lock(sys.argv[1], "teacher cache"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_changed_teacher_or_setting_invalidates_the_pairs(tmp_path):
    cache = TeacherCache(tmp_path / "cache", teacher(0), size=4)
    cache.fill()
    old_images = shard_contents(cache)[0][1]
    same = TeacherCache(tmp_path / "cache", teacher(0), size=4)
    assert same.missing_shards(1) == []  # The same weights: kept.
    other = TeacherCache(tmp_path / "cache", teacher(1), size=4)
    assert other.missing_shards(1) == [(0, 0)]  # Other weights: deleted, refilled below.
    other.fill()
    assert not np.array_equal(shard_contents(other)[0][1], old_images)
    resized = TeacherCache(tmp_path / "cache", teacher(1), size=4, storage="float16")
    assert resized.missing_shards(1) == [(0, 0)]


def test_pools_rotate_and_resume_mid_stream(tmp_path):
    cache = TeacherCache(tmp_path / "cache", teacher(), size=4)
    with pytest.raises(InputError, match="fill\\(pools=2\\)"):
        cache.dataset(batch_size=2, pools=2, steps_per_pool=2)
    cache.fill(pools=2)
    pool_z = [{tuple(row) for row in shard_contents(cache, p)[0][0]} for p in range(2)]
    assert not pool_z[0] & pool_z[1]  # A refreshed pool draws new z.
    batches = list(cache.dataset(batch_size=2, pools=2, steps_per_pool=2).take(6).as_numpy_iterator())
    owners = [[next(p for p in range(2) if tuple(row) in pool_z[p]) for row in b["z"]] for b in batches]
    assert owners == [[0, 0], [0, 0], [1, 1], [1, 1], [0, 0], [0, 0]]
    # A resumed stream continues with the batches the uninterrupted one reads,
    # also past a whole cycle (where each pool has reshuffled).
    longer = list(cache.dataset(batch_size=2, pools=2, steps_per_pool=2).take(10).as_numpy_iterator())
    for skip in (1, 3, 5, 8):
        resumed = list(cache.dataset(batch_size=2, pools=2, steps_per_pool=2, skip_batches=skip).take(10 - skip).as_numpy_iterator())
        for batch, expected in zip(resumed, longer[skip:], strict=True):
            np.testing.assert_array_equal(batch["z"], expected["z"])
    one_pool = list(cache.dataset(batch_size=2).take(6).as_numpy_iterator())
    resumed = list(cache.dataset(batch_size=2, skip_batches=4).take(2).as_numpy_iterator())
    for batch, expected in zip(resumed, one_pool[4:], strict=True):
        np.testing.assert_array_equal(batch["z"], expected["z"])


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(InputError, match="size must be an integer >= 1.*0"):
        TeacherCache(tmp_path, teacher(), size=0)
    with pytest.raises(InputError, match="storage 'int4'"):
        TeacherCache(tmp_path, teacher(), size=4, storage="int4")
    with pytest.raises(InputError, match="fingerprint"):
        teacher_cache.teacher_identity(lambda z: z)


def test_identity_of_a_file_teacher_is_its_digest(tmp_path):
    class FileTeacher:
        path = str(tmp_path / "teacher.tflite")

    (tmp_path / "teacher.tflite").write_bytes(b"flatbuffer")
    assert teacher_cache.teacher_identity(FileTeacher()).startswith("file-")


def test_distiller_learns_from_the_pairs_not_the_teacher(tmp_path):
    keras.utils.set_random_seed(0)
    student = Generator(LATENT, SHAPE, 1)
    distiller = Distiller(lambda z: tf.zeros((tf.shape(z)[0], *SHAPE)), student, loss="mse")
    distiller.compile()
    z = tf.random.normal((4, LATENT), seed=4)
    target = tf.fill((4, *SHAPE), 0.5)
    expected = np.mean((student(z, training=True).numpy() - 0.5) ** 2)
    logs = distiller.train_step({"z": z, "teacher_images": target})
    # The MSE is against the stored images (0.5), not the callable teacher (zeros).
    np.testing.assert_allclose(float(logs["mse"]), expected, rtol=1e-5)


def test_malformed_cached_batches_are_refused_by_name():
    keras.utils.set_random_seed(0)
    joint = Distiller(teacher(), Generator(LATENT, SHAPE, 1), loss="joint", discriminator=Discriminator(SHAPE, 1))
    joint.compile()
    pairs = {"z": tf.zeros((2, LATENT)), "teacher_images": tf.zeros((2, *SHAPE))}
    with pytest.raises(ValueError, match=r"'image' entry.*\['teacher_images', 'z'\]"):
        joint.train_step(pairs)
    mse = Distiller(teacher(), Generator(LATENT, SHAPE, 1), loss="mse")
    mse.compile()
    with pytest.raises(ValueError, match=r"shape \(batch, 4\).*\(2, 5\)"):
        mse.train_step({"z": tf.zeros((2, LATENT + 1)), "teacher_images": tf.zeros((2, *SHAPE))})
    with pytest.raises(ValueError, match="needs 'z'"):
        mse.train_step({"teacher_images": tf.zeros((2, *SHAPE))})


def test_students_fit_on_a_cache(tmp_path):
    model = teacher()
    cache = TeacherCache(tmp_path / "cache", model, size=8)
    cache.fill()
    keras.utils.set_random_seed(1)
    student = Generator(LATENT, SHAPE, 1)
    distiller = Distiller(model, student, loss="mse")
    distiller.compile(student_optimizer=keras.optimizers.Adam(1e-2))
    before_teacher, before_student = weights_of(model), weights_of(student)
    history = distiller.fit(cache.dataset(batch_size=4), epochs=4, steps_per_epoch=4, verbose=0).history
    assert not changed(before_teacher, model) and changed(before_student, student)
    assert history["mse"][-1] < history["mse"][0]


def test_experiment_students_share_one_cache_and_reruns_reuse_it(tiny_mnist, tmp_path):
    from kd_gan import experiment

    config = experiment.ExperimentConfig(
        dataset="mnist", loss="both", teacher_depths=(2,), student_depths=(1,), latent_dim=8, batch_size=4,
        teacher_epochs=1, student_epochs=2, steps_per_epoch=3, grid_columns=4, verbose=0, eval_samples=0,
        teacher_cache=12, cache_refresh_epochs=1, precision="bfloat16",
        data_dir=tiny_mnist[0], output_dir=str(tmp_path / "run"),
    )
    results = experiment.run(config)
    record = results["teacher_cache"]
    assert record["pools"] == 2 and record["pairs_per_pool"] == 12
    assert record["fill"]["shards"] == 2 and record["fill"]["pairs"] == 24 and record["fill"]["seconds"] > 0
    assert len(glob.glob(str(tmp_path / "run" / "teacher_cache" / "pool_*" / "*.npz"))) == 2
    students = [entry for entry in results["models"] if entry["method"].startswith("student")]
    assert [entry["name"] for entry in students] == ["student_mse_d1", "student_joint_d1"]
    assert all(np.isfinite(list(entry["training"]["final_losses"].values())).all() for entry in students)
    # Saved in float32 whatever they trained in.
    from kd_gan import load_generator

    student = keras.saving.load_model(str(tmp_path / "run" / students[0]["path"]))
    assert {layer.dtype_policy.name for layer in student.network} == {"float32"}
    assert load_generator(str(tmp_path / "run" / students[0]["path"])).depth == 1
    text = (tmp_path / "run" / "report.md").read_text()
    # Stages this small train in float32 (precision.BFLOAT16_MIN_STEP_MACS), and the report says so.
    assert all(entry["training"]["dtype_policy"] == "float32" for entry in students)
    assert ("Trained in bfloat16 (teacher_d2, student_mse_d1, student_joint_d1, scratch_d1 in float32: bfloat16 would slow them down "
            "on this CPU, their steps being too small to gain from it or the CPU emulating it); students learned from 12 cached teacher outputs per pool, "
            "a fresh pool every 1 epochs.") in text
    # A rerun retrains a deleted student from the pairs on disk: nothing is filled again.
    os.remove(tmp_path / "run" / students[1]["path"])
    rerun = experiment.run(config)
    assert rerun["teacher_cache"]["fill"] == record["fill"]
    assert os.path.isfile(tmp_path / "run" / students[1]["path"])
    # Another cache size is another training: the folder refuses it.
    with pytest.raises(ValueError, match="teacher_cache: 12 -> 16"):
        experiment.run(experiment.ExperimentConfig(**{**config.__dict__, "teacher_cache": 16}))


def test_an_opaque_tflite_teacher_fills_a_cache_students_learn_from(tmp_path):
    from kd_gan.export.converters import TFLiteGenerator, export_tflite

    model = teacher()
    export_tflite(model, str(tmp_path / "teacher.tflite"), verify=False)
    opaque = TFLiteGenerator(str(tmp_path / "teacher.tflite"))
    cache = TeacherCache(tmp_path / "cache", opaque, size=6)
    assert cache.metadata["teacher"].startswith("file-") and cache.latent_dim == LATENT
    cache.fill(verbose=0)
    batch = next(cache.dataset(batch_size=6).as_numpy_iterator())
    np.testing.assert_allclose(batch["teacher_images"], model(batch["z"], training=False), atol=1 / 255 + 1e-5)
    keras.utils.set_random_seed(1)
    student = Generator(LATENT, SHAPE, 1)
    distiller = Distiller(opaque, student, loss="mse")
    distiller.compile()
    before = weights_of(student)
    distiller.fit(cache.dataset(batch_size=3), epochs=1, steps_per_epoch=2, verbose=0)
    assert changed(before, student)
