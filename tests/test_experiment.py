"""The experiment and its CLI on a tiny setting."""

import csv
import json
import math
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import changed, weights_of

from kd_gan import Generator, count_parameters, experiment, load_generator
from kd_gan.experiment import evaluator as evaluation
from kd_gan.models import any_generator as generators
from kd_gan.data import pixels as images
from kd_gan.experiment import report, summary
from kd_gan.experiment import stage as stages
from kd_gan.export import converters as export
from kd_gan.export.converters import export_saved_model
from kd_gan._io import file_digest
from kd_gan.errors import InputError
from kd_gan.experiment.plan import StageSpec
from kd_gan.experiment.results import ModelResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    dataset="mnist", teacher_depths=(2,), student_depths=(1,), latent_dim=8, batch_size=4,
    teacher_epochs=1, student_epochs=1, steps_per_epoch=3, grid_columns=4, verbose=0, eval_samples=0,
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_config(tiny_mnist, output_dir, **changes):
    return experiment.ExperimentConfig(**{**TINY, **changes}, data_dir=tiny_mnist[0], output_dir=str(output_dir))


def generator_weights(path):
    return weights_of(load_generator(str(path)))


def stage_files(output_dir):
    """Every stage's generator.keras, relative to `output_dir`."""
    return sorted(
        os.path.relpath(os.path.join(folder, name), output_dir)
        for folder, _, names in os.walk(output_dir)
        for name in names
        if name == "generator.keras" and "workers" not in folder
    )


def run_cli(flags, environment=None, timeout=600):
    command = [sys.executable, "run_experiment.py", "--preset=none", *flags]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def test_cli_sweep_end_to_end_writes_report(tiny_mnist, tmp_path):
    output_dir = tmp_path / "run"
    settings = {**TINY, "eval_samples": 8, "teacher_depths": "2,3", "student_depths": "1,2", "student_epochs": 2}
    flags = [f"--{key}={value}" for key, value in settings.items()]
    flags += ["--loss=both", f"--data_dir={tiny_mnist[0]}", f"--output_dir={output_dir}", "--export=tflite"]
    environment = dict(os.environ, KD_GAN_CACHE_DIR=str(tmp_path / "cache"))
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)  # As a user's shell has it: the command sets its own.
    completed = run_cli(flags, environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Stage teacher_d3" in completed.stderr and "Report:" in completed.stderr
    # TensorFlow's C++ INFO lines after its logging starts (those before it print whatever the level).
    for noise in ("The default buffer size", "cpu_feature_guard"):
        assert noise not in completed.stderr, noise
    # The console holds progress, stage lines and real warnings: no grappler failure, no
    # shuffle warning, no dependency's deprecation notice, no tfds progress bar.
    # Nor tfds' reader and builder INFO lines; the plan and every stage's line stay.
    for noise in ("remapper failed", "shuffle=True", "deprecated", "Generating splits", "Shuffling",
                  "Load dataset info", "Constructing tf.data.Dataset", "Creating a tf.data.Dataset"):
        assert noise not in completed.stderr + completed.stdout, noise
    assert "Plan: " in completed.stderr and "Stage student_mse_d1" in completed.stderr

    results = json.loads((output_dir / "results.json").read_text())
    names = [entry["name"] for entry in results["models"]]
    assert names[1:] == [
        "student_mse_d1", "student_joint_d1", "scratch_d1", "student_mse_d2", "student_joint_d2", "scratch_d2",
    ]
    # The teacher is the candidate with the lowest FID, and every candidate is recorded.
    candidates = results["teacher_candidates"]
    assert [c["depth"] for c in candidates] == [2, 3]
    best = min(candidates, key=lambda c: c["quality"]["fid"])
    assert names[0] == results["teacher"] == best["name"] and best["selected"]
    assert sum(c["selected"] for c in candidates) == 1
    teacher_parameters = results["models"][0]["parameters"]
    for entry in results["models"]:
        generator = load_generator(str(output_dir / entry["path"]))
        assert entry["parameters"] == count_parameters(generator) and entry["depth"] == generator.depth
        assert entry["compression_ratio"] == pytest.approx(teacher_parameters / entry["parameters"])
        assert entry["quality"]["num_samples"] == 8 and 1.0 <= entry["quality"]["mnist_score"] <= 10.0
        assert entry["quality"]["reference_count"] == 12 and entry["quality"]["kid"] is not None
        assert 0 <= entry["quality"]["precision"] <= 1 and 0 <= entry["quality"]["recall"] <= 1
        assert all(math.isfinite(v) for v in entry["training"]["final_losses"].values())
        if entry["method"] != "teacher":
            assert entry["fidelity"]["num_samples"] == 8 and entry["fidelity"]["mse"] > 0
    joint = results["models"][2]["training"]
    assert set(joint["final_losses"]) == {"student_loss", "mse", "g_loss", "d_loss"} and joint["epochs"] == 2
    assert json.loads((output_dir / "config.json").read_text()) == results["config"]
    assert results["config"]["teacher_depths"] == [2, 3]
    assert results["training_time_s"] >= sum(e["training"]["wall_time_s"] for e in results["models"])

    with open(output_dir / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == names
    assert float(rows[1]["fid"]) == pytest.approx(results["models"][1]["quality"]["fid"])
    assert {row["fid_samples"] for row in rows} == {"8"}

    markdown = (output_dir / "report.md").read_text()
    assert markdown.split("\n")[2] == f"**{summary.headline(results)}**"  # The finding in words, under the title.
    assert "FID (n=8 vs 12 real)" in markdown and "KID x1000" in markdown and "| student (joint) | 1 |" in markdown and "## Teacher candidates" in markdown
    for picture in ("samples.png", "samples_labelled.png", "interpolation.png", "quality_vs_compression.png", "training_curves.png"):
        assert f"({picture})" in markdown
        assert (output_dir / picture).read_bytes()[:8] == PNG_SIGNATURE
    # Grids: one row per model (7) x 4 columns of 28x28 images with 2-pixel padding.
    for grid_name in ("interpolation.png", "samples.png"):  # samples.png last: `grid` below
        grid = tf.io.decode_png(tf.io.read_file(str(output_dir / grid_name))).numpy()
        assert grid.shape == (7 * 30 + 2, 4 * 30 + 2, 1)
    # The held-out z are saved; the grid's first row is the chosen teacher on the first 4.
    z = np.load(output_dir / "heldout_z.npy")
    teacher = load_generator(str(output_dir / results["models"][0]["path"]))
    first_row = [grid[2:30, 2 + 30 * c : 30 + 30 * c] for c in range(4)]
    np.testing.assert_array_equal(np.stack(first_row), images.to_uint8(teacher(z[:4], training=False)))
    # TensorBoard: losses and sample images of every stage.
    for entry in results["models"]:
        assert os.listdir(output_dir / "tensorboard" / entry["name"] / "train")
        assert os.listdir(output_dir / "tensorboard" / entry["name"] / "samples")
        assert os.listdir(output_dir / "tensorboard" / entry["name"] / "eval")
    # Every student exported and verified.
    assert set(results["export"]) == {n for n in names if n.startswith("student")}
    assert results["export"]["student_mse_d1"]["tflite_none"]["verification"]["max_abs_error"] <= 1e-4


def test_rerun_skips_finished_stages(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path)
    experiment.run(config)
    files = stage_files(tmp_path)
    assert files == ["scratch/d1/generator.keras", "students/mse_d1/generator.keras", "teachers/d2/generator.keras"]
    stamps = {name: os.path.getmtime(tmp_path / name) for name in files}
    results = experiment.run(config)
    assert stamps == {name: os.path.getmtime(tmp_path / name) for name in files}
    assert results["models"][1]["training"]["final_losses"].keys() == {"mse"}


def test_changed_configuration_is_refused_unless_overwrite(tiny_mnist, tmp_path):
    experiment.run(tiny_config(tiny_mnist, tmp_path))
    changed = tiny_config(tiny_mnist, tmp_path, student_epochs=2, seed=1)
    with pytest.raises(ValueError, match=r"seed: 0 -> 1, student_epochs: 1 -> 2.*--overwrite"):
        experiment.run(changed)
    # Evaluation-only settings may change between runs.
    experiment.run(tiny_config(tiny_mnist, tmp_path, grid_columns=3))
    # So may the scoring pass (its evaluations are named by it): folders written when it defaulted to float32 resume.
    experiment.run(tiny_config(tiny_mnist, tmp_path, inception_precision="float32", inception_engine="tensorflow"))
    results = experiment.run(changed, overwrite=True)
    assert results["config"]["seed"] == 1
    assert len(results["models"][1]["training"]["history"]["mse"]) == 2


def test_cli_preset_with_overrides_then_refuses_a_changed_configuration(tiny_mnist, tmp_path):
    flags = [f"--{key}={value}" for key, value in TINY.items() if key not in ("teacher_depths", "student_depths")]
    flags += [f"--data_dir={tiny_mnist[0]}", f"--output_dir={tmp_path}", "--teacher_depths=2", "--student_depths=1",
              "--preset=quick"]
    environment = dict(os.environ, KD_GAN_CACHE_DIR=str(tmp_path / "cache"))
    completed = run_cli(flags, environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = json.loads((tmp_path / "config.json").read_text())
    # Flags override the preset; what the preset set and no flag changed is kept.
    assert written["preset"] == "quick" and written["teacher_depths"] == [2] and written["student_epochs"] == 1
    assert written["latent_dim"] == 8 and written["grid_columns"] == 4
    completed = run_cli([*flags, "--seed=5"], environment)
    assert completed.returncode != 0
    assert "seed: 0 -> 5" in completed.stderr and "--overwrite" in completed.stderr


@pytest.mark.parametrize("saved_as", ["keras", "saved_model"])
def test_students_of_a_given_teacher(tiny_mnist, tmp_path, saved_as):
    teacher = Generator(8, (28, 28, 1), 2)
    z = np.random.normal(size=(2, 8)).astype("float32")
    expected = teacher(z, training=False).numpy()
    path = tmp_path / "teacher.keras"
    if saved_as == "keras":
        teacher.save(path)
    else:
        path = tmp_path / "teacher_savedmodel"
        export_saved_model(teacher, str(path))
    config = tiny_config(tiny_mnist, tmp_path / "run", teacher_path=str(path), loss="both", eval_samples=8)
    results = experiment.run(config)
    assert results["models"][0]["training"] == {"path": str(path)}
    assert results["models"][0]["parameters"] == count_parameters(teacher)
    assert not (tmp_path / "run" / "teachers").exists()  # loaded, not trained
    assert [entry["name"] for entry in results["models"][1:]] == ["student_mse_d1", "student_joint_d1", "scratch_d1"]
    assert all(entry["fidelity"]["mse"] > 0 for entry in results["models"][1:])
    np.testing.assert_allclose(generators.generate(load_generator(str(path)), z), expected, atol=1e-6)


def test_interrupted_stage_resumes_to_the_same_files(tiny_mnist, tmp_path, monkeypatch):
    """Stopped after one epoch and resumed == never stopped (weights and losses)."""
    settings = dict(teacher_epochs=3, student_epochs=3, loss="both")
    experiment.run(tiny_config(tiny_mnist, tmp_path / "straight", **settings))

    class InterruptAfterFirstEpoch(stages.StopOnNonFinite):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0 and self.stage in ("teacher_d2", "student_joint_d1"):
                raise KeyboardInterrupt  # Ctrl-C once epoch 1 is checkpointed.

    resumed = tmp_path / "resumed"
    original = stages.StopOnNonFinite
    monkeypatch.setattr(stages, "StopOnNonFinite", InterruptAfterFirstEpoch)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(tiny_config(tiny_mnist, resumed, **settings))
    assert not (resumed / "teachers" / "d2" / "generator.keras").exists()
    assert (resumed / "teachers" / "d2" / "checkpoint" / "training_metadata.json").is_file()
    # Resumes the teacher at epoch 2, then is interrupted again in the joint student.
    with pytest.raises(KeyboardInterrupt):
        experiment.run(tiny_config(tiny_mnist, resumed, **settings))
    monkeypatch.setattr(stages, "StopOnNonFinite", original)
    experiment.run(tiny_config(tiny_mnist, resumed, **settings))

    files = stage_files(tmp_path / "straight")
    assert files == stage_files(resumed) and len(files) == 4
    for name in files:
        for a, b in zip(generator_weights(tmp_path / "straight" / name), generator_weights(resumed / name)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
        record = os.path.join(os.path.dirname(name), "training.json")
        straight = json.loads((tmp_path / "straight" / record).read_text())["history"]
        again = json.loads((resumed / record).read_text())["history"]
        assert straight.keys() == again.keys() and len(next(iter(again.values()))) == 3
        for key in straight:
            np.testing.assert_allclose(straight[key], again[key], rtol=1e-5, err_msg=f"{name} {key}")
    assert not (resumed / "teachers" / "d2" / "checkpoint").exists()  # removed once finished
    # A resumed stage's time counts its earlier invocations' epochs as well as this one's.
    for name in ("teachers/d2", "students/joint_d1"):
        record = json.loads((resumed / name / "training.json").read_text())
        assert record["resumed_after_epoch"] == 1, name
        assert record["earlier_invocations_s"] > 0, name
        assert record["wall_time_s"] == pytest.approx(record["earlier_invocations_s"] + record["invocation_wall_s"], abs=0.02)
    straight = json.loads((tmp_path / "straight" / "students" / "mse_d1" / "training.json").read_text())
    assert straight["resumed_after_epoch"] == 0 and straight["earlier_invocations_s"] == 0.0
    assert straight["wall_time_s"] == straight["invocation_wall_s"]


def test_nan_loss_stops_the_stage_naming_it(tiny_mnist, tmp_path, monkeypatch):
    # A NaN teacher is refused up front (tests/test_experiment_checks.py) and by the
    # Distiller's probe; past those checks, the guard of every stage stops on the
    # first non-finite loss.
    from kd_gan.distillation import feature_taps as taps
    from kd_gan.experiment import runner

    monkeypatch.setattr(runner, "check_generator", lambda *args, **kwargs: None)
    monkeypatch.setattr(taps, "check_image_range", lambda *args, **kwargs: None)
    teacher = Generator(8, (28, 28, 1), 2)
    for weight in teacher.weights:
        weight.assign(np.full(weight.shape, np.nan, "float32"))
    teacher.save(tmp_path / "nan_teacher.keras")
    config = tiny_config(tiny_mnist, tmp_path / "run", teacher_path=str(tmp_path / "nan_teacher.keras"))
    with pytest.raises(FloatingPointError, match=r"Stage 'student_mse_d1': mse became nan at epoch 1, (step 1|one of steps 1-\d+)\."):
        experiment.run(config)


def test_mirrored_strategy_matches_one_device(tiny_mnist, tmp_path, mirrored):
    """The same run over two replicas (global batch 4 = 2 x 2) ends at the same weights.

    GAN stages amplify float rounding a little over their 6 steps: elements
    agree to 3e-3 and on average to 2e-4 (2.1e-3 and 1.2e-4 seen for the joint
    student with the shuffled data order; a replica training on other data
    moves weights by ~1e-2).
    """
    settings = dict(loss="both", student_epochs=2)
    experiment.run(tiny_config(tiny_mnist, tmp_path / "one", **settings))
    results = experiment.run(tiny_config(tiny_mnist, tmp_path / "two", strategy="mirrored", **settings), strategy=mirrored)
    assert results["strategy"] == {"name": "mirrored", "replicas": 2}
    for name in stage_files(tmp_path / "one"):
        one = np.concatenate([w.ravel() for w in generator_weights(tmp_path / "one" / name)])
        two = np.concatenate([w.ravel() for w in generator_weights(tmp_path / "two" / name)])
        np.testing.assert_allclose(one, two, rtol=0, atol=3e-3, err_msg=name)
        assert np.mean(np.abs(one - two)) < 2e-4, name


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_distillation_agrees(tiny_mnist, tmp_path):
    """Two processes on localhost (TF_CONFIG each) distil together; both end with the same student."""
    teacher = Generator(8, (28, 28, 1), 2)
    teacher.save(tmp_path / "teacher.keras")
    workers = [f"localhost:{port}" for port in free_ports(2)]
    output_dir = tmp_path / "run"
    flags = [f"--{key}={value}" for key, value in TINY.items() if key not in ("teacher_depths", "student_depths")]
    flags += [f"--data_dir={tiny_mnist[0]}", f"--output_dir={output_dir}", "--student_depths=1", "--strategy=multi_worker",
              f"--teacher_path={tmp_path / 'teacher.keras'}", "--student_epochs=2", "--preset=none"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        environment = dict(os.environ, TF_CONFIG=json.dumps(tf_config), KD_GAN_CACHE_DIR=str(tmp_path / f"cache{index}"))
        processes.append(subprocess.Popen(
            [sys.executable, "run_experiment.py", *flags], cwd=ROOT, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    chief = json.loads((output_dir / "results.json").read_text())
    assert chief["strategy"] == {"name": "multi_worker", "replicas": 2}
    other = output_dir / "workers" / "worker_1"
    for name in ("students/mse_d1/generator.keras", "scratch/d1/generator.keras"):
        for a, b in zip(generator_weights(output_dir / name), generator_weights(other / name)):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # The student trained: its weights left the initial ones (rebuilt from the stage's seed).
    run = experiment.Experiment(tiny_config(tiny_mnist, tmp_path / "init"))
    run.seed_stage(run.stage(StageSpec("student", 1, 1, "mse")))
    initial = weights_of(Generator(8, (28, 28, 1), 1))
    assert changed(initial, load_generator(str(output_dir / "students/mse_d1/generator.keras")))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dataset="svhn"), "'svhn'"),
        (dict(loss="kl"), "'kl'"),
        (dict(loss="mse,kl"), "'mse,kl'.*each once"),
        (dict(loss="mse,mse"), "'mse,mse'.*each once"),
        (dict(loss="both,adversarial"), "'both,adversarial'"),
        (dict(loss="none,mse"), "'none,mse'"),
        (dict(loss="none", scratch=False, teacher_path="teacher.keras"), "loss='none' trains no students.*nothing to train"),
        (dict(strategy="tpu"), "'tpu'"),
        (dict(preset="huge"), "'huge'"),
        (dict(student_depths=(0,)), "student_depths with 0"),
        (dict(student_depths=()), "student_depths=\\(\\)"),
        (dict(teacher_depths=(4, 4)), "distinct"),
        (dict(teacher_depths=(4, 8), eval_samples=0), "eval_samples must be > 0"),
        (dict(steps_per_epoch=0), "steps_per_epoch with 0"),
        (dict(learning_rate=-1.0), "learning_rate=-1.0"),
        (dict(learning_rate=float("inf")), "learning_rate must be a finite number > 0. Received: learning_rate=inf"),
        (dict(mse_weight=float("nan")), "mse_weight=nan"),
        (dict(mse_weight_end=-1.0), "mse_weight_end must be a finite number >= 0 or None. Received: mse_weight_end=-1.0"),
        (dict(loss="mse", mse_weight_end=10.0), "mse_weight_end=10.0 decays the MSE weight beside an adversarial term; loss='mse' has none"),
        (dict(student_lr_schedule="step"), "Unknown student_lr_schedule 'step'; choose one of \\('constant', 'cosine'\\)"),
        (dict(export=("onnx",)), "export=\\('onnx',\\)"),
        (dict(quantization="int8"), "quantization='int8'"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        experiment.ExperimentConfig(**{**TINY, **change})


def test_presets_fill_values_and_flags_override_them():
    values = experiment.preset_values("quick", "mnist")
    assert values["teacher_depths"] == (16, 32) and values["latent_dim"] == 32 and values["eval_samples"] == 10_000
    assert experiment.preset_values("quick", "cifar10")["eval_samples"] == 500
    config = experiment.build_config("quick", dataset="cifar10", student_depths=(1, 8), teacher_epochs=1)
    assert config.preset == "quick" and config.teacher_depths == (16, 32) and config.latent_dim == 128
    assert config.student_depths == (1, 8) and config.teacher_epochs == 1 and config.student_epochs == 3
    assert experiment.build_config("none", dataset="mnist") == experiment.ExperimentConfig()


@pytest.mark.parametrize("dataset", ["cifar10", "celeb_a"])
def test_colour_sets_default_to_the_cpu_preset_and_explicit_values_override_it(dataset):
    config = experiment.build_config(dataset=dataset, loss="joint")
    assert config == experiment.build_config("cpu", dataset=dataset, loss="joint")
    cpu = experiment.preset_values("cpu", dataset)
    assert (config.preset, config.objective, config.teacher_depths, config.teacher_epochs) == (
        "cpu", "hinge", cpu["teacher_depths"], cpu["teacher_epochs"]
    )
    assert config.precision == "auto" and config.ema_decay == 0.999 and config.teacher_cache == cpu["teacher_cache"]
    overridden = experiment.build_config(dataset=dataset, teacher_epochs=2, objective="ns")
    assert (overridden.teacher_epochs, overridden.objective, overridden.preset) == (2, "ns", "cpu")
    bare = experiment.build_config("none", dataset=dataset)
    assert bare == experiment.ExperimentConfig(dataset=dataset) and bare.preset is None


def test_a_preset_leaves_the_scoring_pass_to_the_machine_unless_told(monkeypatch):
    from kd_gan.evaluation import inception_engines

    assert experiment.build_config(dataset="celeb_a").inception_precision == "auto"
    assert experiment.build_config(dataset="celeb_a", inception_precision="bfloat16").inception_precision == "bfloat16"
    # "auto" resolves by machine: float32 beside a GPU, bfloat16 on CPUs with bfloat16 units.
    assert inception_engines.choose(environment={}, has_gpu=True, flags={"amx_bf16"}, openvino=True)[1] == "float32"
    assert inception_engines.choose(environment={}, has_gpu=False, flags={"amx_bf16"}, openvino=True)[1] == "bfloat16"


def test_mnist_takes_the_main_job_and_image_folders_no_preset_by_default():
    config = experiment.build_config(dataset="mnist")
    assert config == experiment.build_config("main", dataset="mnist") and config.preset == "main"
    assert (config.objective, config.ema_decay, config.precision, config.latent_dim, config.learning_rate) == (
        "hinge", 0.999, "auto", 32, 5e-4
    )
    assert (config.teacher_depths, config.student_depths, config.teacher_cache) == ((32,), (3,), 60_000)
    with pytest.raises(InputError, match="Preset 'main' has no teacher_depths for dataset 'cifar10'"):
        experiment.build_config("main", dataset="cifar10")
    assert experiment.build_config(dataset="images", image_size=32, data_dir="faces/").preset is None


def test_cli_rejects_bad_flags():
    completed = run_cli(["--dataset=svhn"], timeout=120)
    assert completed.returncode != 0
    assert "svhn" in completed.stderr and "celeb_a" in completed.stderr
    completed = run_cli(["--student_depths=1,x"], timeout=120)
    assert completed.returncode != 0 and "--student_depths=1,x" in completed.stderr
    # A value that cannot work is one line, not the help text before it.
    completed = run_cli(["--student_depths=0", "--learning_rate=inf"], timeout=120)
    assert completed.returncode != 0 and "Error: student_depths must be integers >= 1" in completed.stderr
    assert "Examples:" not in completed.stderr and "Traceback" not in completed.stderr


def test_report_table_and_findings_from_results():
    """report.md's numbers come from the results: check one hand-made case."""
    def quality(score, fid, kid=None):
        return {"mnist_score": score, "fid": fid, "vol": 100.0, "num_samples": 10, "reference_count": 10_000,
                "kid": kid, "kid_std": None if kid is None else 0.0004, "precision": 0.75, "recall": 0.5}

    results = {
        "dataset": "mnist",
        "models": [
            {"name": "teacher_d8", "method": "teacher", "role": "teacher", "label": "teacher", "depth": 8, "architecture": "d8", "size_label": "d=8", "parameters": 1000, "compression_ratio": 1.0,
             "quality": quality(8.0, 10.0)},
            {"name": "student_mse_d1", "method": "student_mse", "role": "student", "label": "student (MSE)", "depth": 1, "architecture": "d1", "size_label": "d=1", "parameters": 10, "compression_ratio": 100.0,
             "quality": quality(6.0, 20.0, kid=0.0123), "fidelity": {"mse": 0.01, "psnr_db": 26.0}},
            {"name": "scratch_d1", "method": "scratch", "role": "scratch", "label": "scratch GAN", "depth": 1, "architecture": "d1", "size_label": "d=1", "parameters": 10, "compression_ratio": 100.0,
             "quality": quality(2.0, 50.0), "fidelity": {"mse": 0.5, "psnr_db": 9.0}},
        ],
        "real": {"split": "test", "num_samples": 10_000, "mnist_score": 9.9, "vol": 1.0},
    }
    table = report.results_table(results)
    assert "FID (n=10 vs 10,000 real)" in table
    assert "| student (MSE) | 1 | 10 | 100:1 | 6.00 | 20.0 | 12.3 ± 0.4 | 0.750 | 0.500 | 100 | 0.0100 | 26.0 | - |" in table
    assert "| scratch GAN | 1 | 10 | 100:1 | 2.00 | 50.0 | - | 0.750 | 0.500 |" in table
    (line,) = summary.findings(results)
    assert "keeps 75% of the teacher's mnist_score" in line and "FID 20.0 beats the scratch GAN's 50.0" in line
    assert summary.headline(results) == (
        "The student (MSE), d=1, 100x smaller than the teacher, keeps 75% of its MNIST score (6.00 of 8.00); "
        "the scratch GAN of its size keeps 25% (2.00). Real images score 9.90."
    )
    for entry in results["models"]:  # Without a score (colour data): by FID against the teacher's.
        entry["quality"]["mnist_score"] = None
    assert summary.headline(results) == (
        "The student (MSE), d=1, 100x smaller than the teacher, reaches FID 20.0, 2.0x the teacher's 10.0; "
        "the scratch GAN of its size 50.0 (5.0x) (lower is better)."
    )
    # A pruned student shares the random one's method: each gets its finding.
    pruned = dict(results["models"][1], name="student_mse_d1_pruned", label="student (MSE, pruned start)", quality=quality(None, 30.0))
    results["models"].insert(2, pruned)
    random_line, pruned_line = summary.findings(results)
    assert random_line.startswith("d=1 (100:1), student (MSE): FID 20.0 beats the scratch GAN's 50.0")
    assert pruned_line.startswith("d=1 (100:1), student (MSE, pruned start): FID 30.0 beats the scratch GAN's 50.0")


def test_teacher_selection_lowest_fid_then_highest_score():
    def candidate(name, fid, score, score_name="mnist_score"):
        return ModelResult(
            name, "teacher", "teacher", "teacher", None, depth=1, parameters=10, training={},
            quality={"fid": fid, score_name: score},
        )

    assert evaluation.select_teacher([candidate("a", 12.0, 9.0), candidate("b", 10.0, 5.0)]).name == "b"
    assert evaluation.select_teacher([candidate("a", 10.0, 5.0), candidate("b", 10.0, 6.0)]).name == "b"
    unscored = [candidate("a", 30.0, None, "inception_score"), candidate("b", 20.0, None)]
    assert evaluation.select_teacher(unscored).name == "b"


def test_zero_epochs_saves_the_stage_initial_generator(tiny_mnist, tmp_path):
    """student_epochs=0 writes the untrained student: the stage's seeded initial weights."""
    config = tiny_config(tiny_mnist, tmp_path, student_epochs=0)
    experiment.run(config)
    run = experiment.Experiment(config)
    run.seed_stage(run.stage(StageSpec("student", 1, 1, "mse")))
    initial = Generator(8, (28, 28, 1), 1)
    saved = load_generator(str(tmp_path / "students" / "mse_d1" / "generator.keras"))
    assert not changed(weights_of(initial), saved)


def celeb_a_folder(shared_data_dir, root, count):
    """The first `count` faces of the shared CelebA subset as a plain folder of JPEGs."""
    import tarfile

    path = os.path.join(shared_data_dir, "celeba", "celeba-aligned-half-10k.tar.gz")
    folder = os.path.join(root, "faces")
    os.makedirs(folder)
    with tarfile.open(path) as archive:
        for member in archive:
            if member.name.endswith(".jpg"):
                with open(os.path.join(folder, os.path.basename(member.name)), "wb") as file:
                    file.write(archive.extractfile(member).read())
                count -= 1
                if count == 0:
                    break
    return folder


def test_cli_trains_and_scores_on_a_users_image_folder(shared_data_dir, tmp_path):
    """--dataset=images: a folder of someone's faces, end to end (FID with a stand-in Inception)."""
    from test_scoring import _FakeInception

    folder = celeb_a_folder(shared_data_dir, str(tmp_path), 40)
    tf.saved_model.save(_FakeInception(False), str(tmp_path / "net"))
    output_dir = tmp_path / "run"
    settings = {**TINY, "dataset": "images", "image_size": 32, "eval_samples": 12, "teacher_depths": 2, "student_depths": 1}
    flags = [f"--{key}={value}" for key, value in settings.items()]
    flags += [f"--data_dir={folder}", f"--output_dir={output_dir}", f"--inception_path={tmp_path / 'net'}"]
    completed = run_cli(flags, dict(os.environ, KD_GAN_CACHE_DIR=str(tmp_path / "cache")))
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["dataset"] == "images" and results["real"]["num_samples"] == 40
    for entry in results["models"]:
        assert load_generator(str(output_dir / entry["path"])).image_shape == (32, 32, 3)
        assert entry["quality"]["reference_count"] == 40 and entry["quality"]["fid"] > 0
    completed = run_cli(["--dataset=images", f"--data_dir={folder}", f"--output_dir={tmp_path / 'bad'}"])
    assert completed.returncode != 0 and "image_size in (32, 64)" in completed.stderr


def test_a_batch_larger_than_the_data_stops_before_any_stage(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path / "run", batch_size=64, teacher_path=None, steps_per_epoch=None)
    with pytest.raises(ValueError, match="batch_size=64 is larger than mnist 'train' \\(40 images\\)"):
        experiment.run(config)
    assert not stage_files(tmp_path / "run")


def test_config_refuses_what_it_cannot_run(tiny_mnist, tmp_path):
    with pytest.raises(ValueError, match="a .tflite generator can be scored .* but not distilled"):
        tiny_config(tiny_mnist, tmp_path, teacher_path="student_int8.tflite")
    with pytest.raises(ValueError, match="image_size in \\(32, 64\\)"):
        tiny_config(tiny_mnist, tmp_path, dataset="images", image_size=48)
    with pytest.raises(ValueError, match="applies to dataset='images' only"):
        tiny_config(tiny_mnist, tmp_path, image_size=32)


def test_a_failed_export_verification_keeps_the_report(tiny_mnist, tmp_path, monkeypatch):
    from kd_gan.export import converters as export

    def failing(generator, path, quantization="none", **kwargs):
        raise export.VerificationError(f"{path} ({quantization}) does not reproduce the Keras generator")

    monkeypatch.setattr(export, "verify_tflite", failing)
    config = tiny_config(tiny_mnist, tmp_path / "run", export=("tflite",))
    with pytest.raises(export.VerificationError, match="student_mse_d1.*the report is written"):
        experiment.run(config)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "does not reproduce" in results["export"]["student_mse_d1"]["error"]
    assert (tmp_path / "run" / "report.md").is_file()


def test_a_run_without_students_trains_the_teacher_and_scratch_gans_only(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path / "run", loss="none", eval_samples=8)
    results = experiment.run(config)
    assert [entry["method"] for entry in results["models"]] == ["teacher", "scratch"]
    assert not (tmp_path / "run" / "students").exists() and not (tmp_path / "run" / "teacher_cache").exists()
    text = (tmp_path / "run" / "report.md").read_text()
    assert "No students; scratch GANs of d=1 (1 epochs). Trained in float32." in text
    (line,) = summary.findings(results)
    scratch, teacher = (entry["quality"]["fid"] for entry in results["models"][::-1])
    assert line.startswith(f"d=1 (") and f"scratch GAN: FID {scratch:.1f}, {scratch / teacher:.2f}x the teacher's {teacher:.1f}" in line
    assert summary.headline(results) is None  # No student to state a finding about.


def test_students_only_run_trains_no_scratch_gan_and_reports(tiny_mnist, tmp_path):
    config = tiny_config(tiny_mnist, tmp_path / "run", scratch=False, eval_samples=8)
    results = experiment.run(config)
    assert [entry["method"] for entry in results["models"]] == ["teacher", "student_mse"]
    assert not (tmp_path / "run" / "scratch").exists()
    text = (tmp_path / "run" / "report.md").read_text()
    assert "no scratch baselines" in text and "d=1 (" in text
    assert "Trained in float32; students saw fresh z every step." in text


@pytest.fixture
def built_distillers(monkeypatch):
    """Every Distiller the runner builds, in order."""
    from kd_gan.experiment import runner

    built, runner_distiller = [], runner.Distiller

    def recording(*args, **kwargs):
        built.append(runner_distiller(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runner, "Distiller", recording)
    return built


def test_a_decaying_pixel_weight_reaches_the_adversarial_student_over_its_steps(tiny_mnist, tmp_path, built_distillers):
    built = built_distillers
    config = tiny_config(tiny_mnist, tmp_path / "run", loss="adversarial", scratch=False, mse_weight=8.0, mse_weight_end=2.0)
    experiment.run(config)
    weight = built[-1].mse_weight  # 1 epoch of 3 steps: 8 -> 2 over 3 steps.
    assert [float(weight(step)) for step in (0, 3)] == pytest.approx([8.0, 2.0])
    assert int(built[-1].student_optimizer.iterations) == 3
    assert "weight 8.0, decaying linearly to 2.0 over each student's steps" in (tmp_path / "run" / "report.md").read_text()


def test_a_cosine_schedule_takes_the_students_learning_rate_to_zero_over_their_steps(tiny_mnist, tmp_path, built_distillers):
    built = built_distillers
    config = tiny_config(tiny_mnist, tmp_path / "run", scratch=False, student_learning_rate=0.01, student_lr_schedule="cosine")
    experiment.run(config)
    optimizer = built[-1].student_optimizer  # 1 epoch of 3 steps: 0.01 -> 0 along a cosine.
    assert int(optimizer.iterations) == 3
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert [float(schedule(step)) for step in (0, 1, 3)] == pytest.approx([0.01, 0.0075, 0.0], abs=1e-9)
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # Where the run left it.
    assert "Students learn at 0.01, decaying to 0 along a cosine over their steps." in (tmp_path / "run" / "report.md").read_text()


def test_bfloat16_inception_is_refused_for_mnist_and_accepted_for_colour_data(tiny_mnist, tmp_path):
    with pytest.raises(ValueError, match="inception_precision='bfloat16'.*MNIST"):
        tiny_config(tiny_mnist, tmp_path / "run", inception_precision="bfloat16")
    with pytest.raises(ValueError, match="inception_precision 'float16'"):
        tiny_config(tiny_mnist, tmp_path / "run", inception_precision="float16")
    config = experiment.ExperimentConfig(dataset="cifar10", inception_precision="bfloat16")
    assert config.inception_precision == "bfloat16"


def test_interrupted_cached_students_resume_on_the_same_pairs(tiny_mnist, tmp_path, monkeypatch):
    """Students on cached pairs (two pools), stopped after one epoch and resumed == never stopped; the
    adversarial students' discriminators and their optimizers resume too."""
    losses = ("mse", "joint", "adversarial", "adversarial_z")
    settings = dict(
        teacher_epochs=1, student_epochs=3, loss=",".join(losses), teacher_cache=12, cache_refresh_epochs=2, scratch=False,
        student_lr_schedule="cosine",  # A restarted schedule would not give the same weights.
    )
    experiment.run(tiny_config(tiny_mnist, tmp_path / "straight", **settings))

    class InterruptAfterFirstEpoch(stages.StopOnNonFinite):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0 and self.stage in [f"student_{loss}_d1" for loss in losses]:
                raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    original = stages.StopOnNonFinite
    monkeypatch.setattr(stages, "StopOnNonFinite", InterruptAfterFirstEpoch)
    for _ in losses:  # Stopped in each student in turn, having resumed the one before.
        with pytest.raises(KeyboardInterrupt):
            experiment.run(tiny_config(tiny_mnist, resumed, **settings))
    monkeypatch.setattr(stages, "StopOnNonFinite", original)
    experiment.run(tiny_config(tiny_mnist, resumed, **settings))
    # A discriminator that resumed otherwise would have pushed the adversarial student elsewhere.
    for name in (f"students/{loss}_d1/generator.keras" for loss in losses):
        for a, b in zip(generator_weights(tmp_path / "straight" / name), generator_weights(resumed / name)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_quantization_aware_students_are_fine_tuned_exported_and_scored_as_files(tiny_mnist, tmp_path):
    config = tiny_config(
        tiny_mnist, tmp_path / "run", scratch=False, eval_samples=8, export=("tflite",),
        quantization=("none", "int8"), qat_epochs=1,
    )
    results = experiment.run(config)
    run = tmp_path / "run"
    tuned_path = run / "students" / "mse_d1_qat1" / "generator.keras"
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(generator_weights(tuned_path), generator_weights(run / "students" / "mse_d1" / "generator.keras"))
    )
    files = results["export"]["student_mse_d1"]
    assert set(files) == {"tflite_none", "tflite_int8", "tflite_int8_qat"}
    assert files["tflite_int8_qat"]["path"].endswith("student_mse_d1_int8_qat.tflite")
    assert files["tflite_int8_qat"]["verification"]["passed"]
    keras_quality = results["models"][1]["quality"]
    for record in files.values():
        assert record["latency_ms"] > 0
        assert record["quality"]["num_samples"] == 8
        # Scored on the engine its latency found faster, not timed a second time.
        assert record["quality_engine"] == record["latency_engine"] in ("xnnpack", "builtin")
    # The float32 file draws the Keras student's images for the same z (to 1e-4; a pixel
    # may round to the other uint8 level): the same scores, to 8-sample FID's sensitivity.
    assert files["tflite_none"]["quality"]["fid"] == pytest.approx(keras_quality["fid"], rel=1e-2)
    assert files["tflite_none"]["quality"]["mnist_score"] == pytest.approx(keras_quality["mnist_score"], rel=1e-2)
    # The post-training files are the distilled student's, not the fine-tuned one's.
    z = np.random.default_rng(0).standard_normal((4, TINY["latent_dim"])).astype(np.float32)
    student = load_generator(str(run / "students" / "mse_d1" / "generator.keras"))
    np.testing.assert_allclose(export.run_tflite(files["tflite_none"]["path"], z), student(z, training=False), atol=1e-4)
    assert files["tflite_int8_qat"]["keras_quality"]["num_samples"] == 8  # The fine-tuned Keras model, scored.
    markdown = (run / "report.md").read_text()
    assert "## Shipped files" in markdown and "`student_mse_d1_int8_qat.tflite`" in markdown
    # A rerun loads the fine-tuned stage instead of training it again, and ships the same files.
    stamp = os.path.getmtime(tuned_path)
    digests = {key: file_digest(record["path"]) for key, record in files.items()}
    again = experiment.run(config)["export"]["student_mse_d1"]
    assert os.path.getmtime(tuned_path) == stamp
    assert {key: file_digest(record["path"]) for key, record in again.items()} == digests


@pytest.mark.parametrize("changes", [dict(qat_epochs=1), dict(qat_epochs=1, export=("tflite",)), dict(qat_epochs=-1)])
def test_quantization_aware_epochs_need_an_int8_export(tiny_mnist, tmp_path, changes):
    with pytest.raises(ValueError, match="qat_epochs"):
        tiny_config(tiny_mnist, tmp_path, **changes)
