"""The experiment's student kinds (--distillation): one student per kind, size
and loss, named apart; the teacher's discriminator saved for the perceptual term."""

import csv

import pytest

from kd_gan import experiment, load_generator
from kd_gan.errors import InputError
from kd_gan.experiment.plan import StageSpec
from test_experiment import tiny_config


def test_each_kind_trains_its_own_student_and_reports_a_row(tiny_mnist, tmp_path):
    output_dir = tmp_path / "kinds"
    config = tiny_config(
        tiny_mnist, output_dir, loss="both", distillation=("pixel", "perceptual+features", "perceptual"), scratch=False,
        feature_weight=0.5, perceptual_weight=0.25,
    )
    assert config.distillation == ("pixel", "features+perceptual", "perceptual")  # Canonical order.
    results = experiment.run(config)
    names = [entry["name"] for entry in results["models"]]
    assert names == [
        "teacher_d2", "student_mse_d1", "student_mse+features+perceptual_d1", "student_mse+perceptual_d1",
        "student_joint_d1", "student_joint+features+perceptual_d1", "student_joint+perceptual_d1",
    ]
    assert (output_dir / "teachers" / "d2" / "discriminator.keras").is_file()
    by_name = {entry["name"]: entry for entry in results["models"]}
    # The pixel students log what they did before; the others each term.
    assert set(by_name["student_mse_d1"]["training"]["final_losses"]) == {"mse"}
    assert set(by_name["student_mse+features+perceptual_d1"]["training"]["final_losses"]) == {
        "student_loss", "mse", "features", "perceptual"
    }
    assert set(by_name["student_joint+features+perceptual_d1"]["training"]["final_losses"]) == {
        "student_loss", "mse", "features", "perceptual", "g_loss", "d_loss"
    }
    # Adapters train with the student but never ship with it.
    student = load_generator(str(output_dir / "students" / "mse+features+perceptual_d1" / "generator.keras"))
    plain = load_generator(str(output_dir / "students" / "mse_d1" / "generator.keras"))
    assert len(student.weights) == len(plain.weights)
    with open(output_dir / "results.csv", newline="") as file:
        assert [row["method"] for row in csv.DictReader(file)][1:] == [
            "student_mse", "student_mse+features+perceptual", "student_mse+perceptual", "student_joint",
            "student_joint+features+perceptual", "student_joint+perceptual",
        ]
    markdown = (output_dir / "report.md").read_text()
    assert "| student (MSE + features + perceptual) | 1 |" in markdown
    assert "| student (joint + features + perceptual) | 1 |" in markdown


def test_method_labels():
    assert StageSpec("student", 1, 1, "mse").label == "student (MSE)"
    assert StageSpec("student", 1, 1, "joint", "perceptual").label == "student (joint + perceptual)"
    assert StageSpec("scratch", 1, 1).label == "scratch GAN"


@pytest.mark.parametrize(
    "kinds, message",
    [
        (("pixel", "texture"), "Unknown distillation kind 'texture'"),
        (("features", "features"), "lists a kind twice"),
        (("features+features",), "Unknown distillation kind 'features\\+features'"),
        ("features", "non-empty tuple of student kinds"),
    ],
)
def test_distillation_kinds_are_checked(tiny_mnist, tmp_path, kinds, message):
    with pytest.raises(InputError, match=message):
        tiny_config(tiny_mnist, tmp_path, distillation=kinds)


def test_perceptual_mse_students_of_a_given_teacher_are_refused_up_front(tiny_mnist, tmp_path):
    from kd_gan import Generator

    path = tmp_path / "teacher.keras"
    Generator(8, (28, 28, 1), 2).save(path)
    config = tiny_config(tiny_mnist, tmp_path / "run", teacher_path=str(path), distillation=("perceptual",))
    with pytest.raises(InputError, match="a given teacher \\(teacher_path\\) has none: use loss 'joint'"):
        experiment.run(config)
    assert not (tmp_path / "run" / "students").exists()


def test_width_profiles_and_pruned_starts_train_their_own_students(tiny_mnist, tmp_path):
    import numpy as np

    from kd_gan import prune_generator

    output_dir = tmp_path / "architectures"
    config = tiny_config(
        tiny_mnist, output_dir, student_widths=((4, 4, 2),), student_inits=("random", "pruned", "refit"), student_epochs=0,
    )
    results = experiment.run(config)
    names = [entry["name"] for entry in results["models"]]
    assert names == [
        "teacher_d2", "student_mse_d1", "student_mse_d1_pruned", "student_mse_d1_refit", "scratch_d1",
        "student_mse_w4-4-2", "student_mse_w4-4-2_pruned", "student_mse_w4-4-2_refit", "scratch_w4-4-2",
    ]
    by_name = {entry["name"]: entry for entry in results["models"]}
    assert by_name["scratch_w4-4-2"]["architecture"] == "w4-4-2" and by_name["scratch_w4-4-2"]["depth"] is None
    teacher = load_generator(str(output_dir / "teachers" / "d2" / "generator.keras"))
    z = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    # No training (student_epochs=0): a pruned student is exactly the pruned teacher, a random one is not.
    for name, widths in (("mse_d1", (4, 2, 1)), ("mse_w4-4-2", (4, 4, 2))):
        pruned = load_generator(str(output_dir / "students" / f"{name}_pruned" / "generator.keras"))
        random_start = load_generator(str(output_dir / "students" / name / "generator.keras"))
        expected = prune_generator(teacher, widths)(z, training=False).numpy()
        np.testing.assert_allclose(pruned(z, training=False).numpy(), expected, atol=1e-6)
        assert not np.allclose(random_start(z, training=False).numpy(), expected, atol=1e-3)
        refit = load_generator(str(output_dir / "students" / f"{name}_refit" / "generator.keras"))
        expected = prune_generator(teacher, widths, refit_samples=1024, seed=config.seed)(z, training=False).numpy()
        np.testing.assert_allclose(refit(z, training=False).numpy(), expected, atol=1e-5)
        assert not np.allclose(expected, pruned(z, training=False).numpy(), atol=1e-3)
    markdown = (output_dir / "report.md").read_text()
    assert "| student (MSE, pruned start) | 4-4-2 |" in markdown and "| scratch GAN | 4-4-2 |" in markdown


def test_students_start_from_a_given_generator_and_scratch_gans_do_not(tiny_mnist, tmp_path):
    import numpy as np

    first = tmp_path / "first"
    experiment.run(tiny_config(tiny_mnist, first, student_depths=(), student_widths=((4, 4, 2),), student_blocks=("separable",)))
    start_path = first / "students" / "mse_w4-4-2_separable" / "generator.keras"
    start = load_generator(str(start_path))
    second = tmp_path / "second"
    architecture = dict(student_depths=(), student_widths=((4, 4, 2),), student_blocks=("separable",), discriminator_depth=1)
    config = tiny_config(tiny_mnist, second, loss="mse,joint", student_start=str(start_path), student_epochs=0, **architecture)
    results = experiment.run(config)
    names = [entry["name"] for entry in results["models"]]
    assert names == ["teacher_d2", "student_mse_w4-4-2_separable_started", "student_joint_w4-4-2_separable_started",
                     "scratch_w4-4-2_separable"]
    z = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    expected = start(z, training=False).numpy()
    # No training (student_epochs=0): each started student is the given generator, the scratch GAN is not.
    for name in ("mse", "joint"):
        started = load_generator(str(second / "students" / f"{name}_w4-4-2_separable_started" / "generator.keras"))
        np.testing.assert_allclose(started(z, training=False).numpy(), expected, atol=1e-6)
    scratch = load_generator(str(second / "scratch" / "w4-4-2_separable" / "generator.keras"))
    assert not np.allclose(scratch(z, training=False).numpy(), expected, atol=1e-3)
    report_text = (second / "report.md").read_text()
    assert "| student (joint, started from a given generator) | 4-4-2, separable |" in report_text
    assert f"Every student started from `{start_path}`, whose own training these epochs leave out." in report_text
    # Trained, the started student moves away from its start.
    trained = tmp_path / "trained"
    experiment.run(tiny_config(tiny_mnist, trained, student_start=str(start_path), scratch=False, **architecture))
    moved = load_generator(str(trained / "students" / "mse_w4-4-2_separable_started" / "generator.keras"))
    assert not np.allclose(moved(z, training=False).numpy(), expected, atol=1e-4)
    # A start of another architecture is refused before anything trains.
    wider = dict(architecture, student_widths=((4, 4, 4),))
    with pytest.raises(InputError, match=r"must be a generator of the student's architecture, .*widths=\(4, 4, 4\).*; it holds .*widths=\(4, 4, 2\)"):
        experiment.run(tiny_config(tiny_mnist, tmp_path / "wider", student_start=str(start_path), **wider))
    assert not (tmp_path / "wider" / "config.json").exists()
    with pytest.raises(InputError, match=r"student_start='.*missing.keras': no \.keras generator file there"):
        experiment.run(tiny_config(tiny_mnist, tmp_path / "missing", student_start=str(tmp_path / "missing.keras"), **architecture))
    # Finished started students need the file no more; a file of other weights is refused.
    moved_start = tmp_path / "start.keras"
    start_path.rename(moved_start)
    experiment.run(config)
    (second / "students" / "joint_w4-4-2_separable_started" / "generator.keras").unlink()
    other = load_generator(str(second / "scratch" / "w4-4-2_separable" / "generator.keras"))
    other.save(str(start_path))
    with pytest.raises(InputError, match=r"holds students started from .*first.*sha256 .*holds other weights"):
        experiment.run(config)
    # The recorded file at another path: the joint student starts as before.
    experiment.run(__import__("dataclasses").replace(config, student_start=str(moved_start)))
    with pytest.raises(InputError, match=r"holds other weights"):  # Finished, and still not another file's students.
        experiment.run(config)
    started = load_generator(str(second / "students" / "joint_w4-4-2_separable_started" / "generator.keras"))
    np.testing.assert_allclose(started(z, training=False).numpy(), expected, atol=1e-6)


def test_the_command_line_takes_width_profiles_and_pruned_starts(tiny_mnist, tmp_path):
    from test_experiment import TINY, run_cli

    output_dir = tmp_path / "cli"
    flags = [f"--{key}={value}" for key, value in {**TINY, "teacher_depths": 2, "student_depths": ""}.items()]
    flags += ["--student_widths=4-4-2", "--student_init=pruned", "--loss=joint", "--discriminator_depth=1",
              "--pixel_loss=ssim_l1", f"--data_dir={tiny_mnist[0]}", f"--output_dir={output_dir}"]
    completed = run_cli(flags)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = __import__("json").loads((output_dir / "results.json").read_text())
    assert [entry["name"] for entry in results["models"]] == ["teacher_d2", "student_joint_w4-4-2_pruned", "scratch_w4-4-2"]
    assert results["config"]["student_widths"] == [[4, 4, 2]] and results["config"]["discriminator_depth"] == 1
    # The pixel term is SSIM (two scales at 28x28) and L1 in place of the MSE, and the report says so.
    assert results["config"]["pixel_loss"] == "ssim_l1"
    assert {"ssim", "l1"} <= set(results["models"][1]["training"]["final_losses"]) and "mse" not in results["models"][1]["training"]["final_losses"]
    report = (output_dir / "report.md").read_text()
    assert "`--pixel_loss=ssim_l1`" in report and "a *student (SSIM + L1)* is a small generator" in report
    assert "| FID |" in report and "n=None" not in report  # Nothing scored (eval_samples=0): no count to name.
    bad = run_cli(flags[:-1] + [f"--output_dir={tmp_path / 'bad'}", "--student_widths=4-x-2"])
    assert bad.returncode != 0 and "--student_widths takes width profiles such as 4-12-12-12" in bad.stderr
