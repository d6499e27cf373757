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
