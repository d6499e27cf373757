"""The run plan: one enumeration of a run's stages, names and folders derived from typed records."""

import dataclasses
import pathlib
import re

import pytest

from kd_gan import experiment
from kd_gan.errors import InputError
from kd_gan.experiment.plan import StageSpec, of_role, plan_stages
from kd_gan.experiment.recipes import kind_losses, pixel_weight, student_learning_rate

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "kd_gan"


def config(**changes):
    values = dict(dataset="mnist", teacher_depths=(4, 8), student_depths=(1, 2), loss="both",
                  distillation=("pixel", "features+perceptual"), qat_epochs=2, export=("tflite",),
                  quantization=("int8",), output_dir="unused")
    return experiment.ExperimentConfig(**{**values, **changes})


def test_the_plan_enumerates_every_stage_in_run_order_with_the_folders_runs_were_written_under():
    stages = plan_stages(config())
    assert [stage.folder for stage in stages] == [
        "teachers/d4", "teachers/d8",
        "students/mse_d1", "students/mse_d1_qat2",
        "students/mse+features+perceptual_d1", "students/mse+features+perceptual_d1_qat2",
        "students/joint_d1", "students/joint_d1_qat2",
        "students/joint+features+perceptual_d1", "students/joint+features+perceptual_d1_qat2",
        "scratch/d1",
        "students/mse_d2", "students/mse_d2_qat2",
        "students/mse+features+perceptual_d2", "students/mse+features+perceptual_d2_qat2",
        "students/joint_d2", "students/joint_d2_qat2",
        "students/joint+features+perceptual_d2", "students/joint+features+perceptual_d2_qat2",
        "scratch/d2",
    ]
    assert stages[0].name == "teacher_d4" and stages[-1].name == "scratch_d2"
    assert stages[3].name == "student_mse_d1_qat2" and stages[3].parent == stages[2]
    assert [s.method for s in stages[2:5]] == ["student_mse", "student_mse", "student_mse+features+perceptual"]


def test_the_teachers_discriminator_depth_is_theirs_alone():
    stages = plan_stages(config(teacher_discriminator_depth=2, discriminator_depth=3))
    assert {s.discriminator_depth for s in of_role(stages, "teacher")} == {2}
    assert {s.discriminator_depth for s in stages if s.role != "teacher"} == {3}
    assert [s.discriminator_depth for s in of_role(plan_stages(config()), "teacher")] == [4, 8]  # Each its own d.
    with pytest.raises(InputError, match="teacher_discriminator_depth"):
        config(teacher_discriminator_depth=0)


def test_a_given_teacher_plans_no_teacher_stage_and_options_drop_their_stages():
    stages = plan_stages(config(teacher_path="teacher.keras", scratch=False, qat_epochs=0, loss="mse"))
    assert of_role(stages, "teacher") == () and of_role(stages, "scratch") == ()
    assert [s.name for s in stages] == [
        "student_mse_d1", "student_mse+features+perceptual_d1", "student_mse_d2", "student_mse+features+perceptual_d2",
    ]


def test_losses_joined_by_commas_plan_a_student_of_each_in_the_order_given():
    stages = plan_stages(config(loss="adversarial,mse", student_depths=(1,), distillation=("pixel",), qat_epochs=0))
    assert [s.folder for s in of_role(stages, "student")] == ["students/adversarial_d1", "students/mse_d1"]
    adversarial = of_role(stages, "student")[0]
    assert adversarial.discriminated and adversarial.adversarial and not adversarial.joint
    assert adversarial.label == "student (adversarial)" and adversarial.method == "student_adversarial"
    assert config(loss="both").losses == ("mse", "joint")
    conditioned = StageSpec("student", 1, 5, "adversarial_z")
    assert conditioned.conditioned and conditioned.discriminated and conditioned.distiller_loss == "adversarial"
    assert conditioned.folder == "students/adversarial_z_d1" and conditioned.label == "student (adversarial, z-conditioned)"
    assert not adversarial.conditioned and adversarial.distiller_loss == "adversarial"


def test_a_stage_record_answers_what_it_is_without_its_name_being_read():
    joint = StageSpec("student", 2, 5, "joint", "features+perceptual")
    assert joint.terms == ("features", "perceptual") and joint.distils_features and joint.perceptual
    assert joint.adversarial and not joint.fine_tuning and joint.training_epochs == 5
    assert joint.label == "student (joint + features + perceptual)" and joint.recipe_label == "joint + features + perceptual"
    tuned = dataclasses.replace(joint, fine_tune_epochs=3)
    assert tuned.fine_tuning and not tuned.adversarial and tuned.training_epochs == 3 and tuned.parent == joint
    pixel = StageSpec("student", 1, 5, "mse")
    assert pixel.terms == () and not pixel.adversarial and pixel.name == "student_mse_d1"
    assert StageSpec("scratch", 1, 5).adversarial and StageSpec("teacher", 32, 5).label == "teacher"
    with pytest.raises(ValueError, match="Unknown stage role 'student_mse'"):
        StageSpec("student_mse", 1, 5)
    with pytest.raises(ValueError, match="A loss is given to students only"):
        StageSpec("scratch", 1, 5, "mse")
    with pytest.raises(dataclasses.FrozenInstanceError):
        joint.depth = 3


# What reading a stage's identity back out of a string looks like.
NAME_PARSING = re.compile(
    r"""["']_qat["']\s+(not\s+)?in|["'](perceptual|features)["']\s+in\s+\w*(kind|name)"""
    r"""|\.startswith\(["'](student|teacher|scratch)|method\[len|\bname\.split\(|\bmethod\.split\("""
)


def test_no_module_reads_a_stage_identity_back_out_of_a_string():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if NAME_PARSING.search(line)
    ]
    assert not offenders, offenders


def test_width_profiles_and_pruned_starts_are_stages_of_their_own():
    stages = plan_stages(config(
        student_depths=(1,), student_widths=((4, 6, 4),), student_inits=("random", "pruned", "refit"), loss="mse",
        distillation=("pixel",), qat_epochs=0, export=(), quantization=("none",),
    ))
    assert [stage.folder for stage in stages] == [
        "teachers/d4", "teachers/d8",
        "students/mse_d1", "students/mse_d1_pruned", "students/mse_d1_refit", "scratch/d1",
        "students/mse_w4-6-4", "students/mse_w4-6-4_pruned", "students/mse_w4-6-4_refit", "scratch/w4-6-4",
    ]
    profile = stages[7]
    assert profile.widths == (4, 6, 4) and profile.depth is None and profile.pruned
    assert profile.generator_arguments == {"widths": (4, 6, 4)} and profile.size_label == "widths 4-6-4"
    assert profile.label == "student (MSE, pruned start)"
    assert stages[8].pruned and stages[8].label == "student (MSE, pruned and refit start)" and not stages[6].pruned
    # A profile's discriminator is the DCGAN one whose last map is as wide; a given depth overrides every one.
    assert stages[9].discriminator_depth == 4 and stages[5].discriminator_depth == 1
    override = plan_stages(config(student_widths=((4, 6, 4),), discriminator_depth=3, qat_epochs=0, export=(), quantization=("none",)))
    assert {stage.discriminator_depth for stage in override if stage.role != "teacher"} == {3}


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(student_widths=((4, 6),)), r"widths for 28x28 images must be 3 integers"),
        (dict(student_widths=((4, 6, 6), (4, 6, 6))), "lists a profile twice"),
        (dict(student_inits=("random", "grown")), r"student_inits must be a non-empty tuple of distinct values"),
        (dict(student_inits=("pruned",), student_widths=((16, 6, 6),)), r"a student of widths \(16, 6, 6\) is wider"),
        (dict(student_inits=("random", "refit"), student_widths=((16, 6, 6),)), r"'refit' prunes the teacher, and a student"),
        (dict(discriminator_depth=0), "discriminator_depth must be integers >= 1"),
        (dict(student_blocks=("transposed", "dense")), r"student_blocks must be a non-empty tuple of distinct values from"),
        (dict(student_blocks=()), r"student_blocks must be a non-empty tuple"),
        (dict(student_blocks=("separable",), student_inits=("random", "pruned")),
         r"separable students are not pruned .* student_inits 'pruned' needs transposed blocks"),
        (dict(student_start="student.keras"), r"student_start='student.keras' fits one student architecture, the file's; this run has 2 \(student_depths \(1, 2\)"),
        (dict(student_start="student.keras", student_depths=(1,), student_inits=("pruned",)), r"takes no student_inits \('pruned',\) \(leave them random\)"),
        (dict(student_start="student.keras", student_depths=(1,), loss="none"), r"needs a student loss \(loss='none'\)"),
        (dict(student_start="student.tflite", student_depths=(1,)), r"student_start='student.tflite': students start from a \.keras generator file"),
    ],
)
def test_bad_student_architectures_are_refused_before_anything_runs(changes, message):
    with pytest.raises(InputError, match=message):
        config(qat_epochs=0, export=(), quantization=("none",), **changes)


def test_a_student_start_makes_started_students_and_leaves_the_scratch_gans_random():
    stages = plan_stages(config(student_depths=(1,), student_start="start.keras", loss="mse,joint", distillation=("pixel",)))
    assert [stage.folder for stage in stages if stage.role != "teacher"] == [
        "students/mse_d1_started", "students/mse_d1_started_qat2", "students/joint_d1_started",
        "students/joint_d1_started_qat2", "scratch/d1",
    ]
    assert {stage.init for stage in stages if stage.role == "student"} == {"started"}
    assert stages[-1].init == "random" and not stages[2].pruned
    assert stages[4].label == "student (joint, started from a given generator)"
    separable = plan_stages(config(
        student_depths=(), student_widths=((4, 6, 6),), student_blocks=("separable",), student_start="start.keras",
        loss="mse", distillation=("pixel",), qat_epochs=0, export=(), quantization=("none",),
    ))
    assert [stage.name for stage in separable[2:]] == ["student_mse_w4-6-6_separable_started", "scratch_w4-6-6_separable"]


def test_separable_blocks_are_architectures_of_their_own_with_their_scratch_gans():
    stages = plan_stages(config(
        student_depths=(1,), student_widths=((4, 6, 6),), student_blocks=("transposed", "separable"), loss="mse",
        distillation=("pixel",), qat_epochs=0, export=(), quantization=("none",),
    ))
    assert [stage.folder for stage in stages if stage.role != "teacher"] == [
        "students/mse_d1", "scratch/d1", "students/mse_d1_separable", "scratch/d1_separable",
        "students/mse_w4-6-6", "scratch/w4-6-6", "students/mse_w4-6-6_separable", "scratch/w4-6-6_separable",
    ]
    separable = stages[-1]
    assert separable.generator_arguments == {"widths": (4, 6, 6), "block": "separable"}
    assert separable.size_label == "widths 4-6-6, separable" and separable.discriminator_depth == 6
    # The paper's stages keep their arguments and names.
    assert stages[-3].generator_arguments == {"widths": (4, 6, 6)} and stages[-3].leaf == "w4-6-6"
    with pytest.raises(InputError, match="qat_epochs=2 needs transposed blocks"):
        config(student_blocks=("separable",))
    with pytest.raises(ValueError, match="only 'transposed' is pruned or fine-tuned"):
        StageSpec("student", depth=1, epochs=1, loss="mse", init="pruned", block="separable")


def test_widths_alone_need_no_student_depths():
    stages = plan_stages(config(student_depths=(), student_widths=((4, 6, 6),), qat_epochs=0, export=(), quantization=("none",)))
    assert [stage.architecture for stage in stages if stage.role != "teacher"] == ["w4-6-6"] * 5


def test_the_pixel_weight_beside_an_adversarial_term_decays_to_its_end_over_the_students_steps():
    adversarial, pixel = StageSpec("student", 1, 5, "adversarial_z"), StageSpec("student", 1, 5, "mse")
    constant = config(mse_weight=100.0)
    assert pixel_weight(constant, adversarial, 500) == 100.0 and pixel_weight(constant, pixel, 500) == 1.0
    decaying = config(mse_weight=100.0, mse_weight_end=10.0)
    assert pixel_weight(decaying, pixel, 500) == 1.0  # No adversarial term: the MSE alone, unweighted.
    schedule = pixel_weight(decaying, adversarial, 500)
    assert [float(schedule(step)) for step in (0, 250, 500, 900)] == pytest.approx([100.0, 55.0, 10.0, 10.0])
    # A student kind with more terms weights its pixel MSE the same way.
    with_features = StageSpec("student", 1, 5, "adversarial_z", kind="features")
    _, weights = kind_losses(decaying, with_features, steps=500)
    assert float(weights[0](250)) == pytest.approx(55.0) and weights[1] == decaying.feature_weight
    # Whole numbers from Python decay in floats (PolynomialDecay takes the start's dtype).
    whole = pixel_weight(config(mse_weight=1, mse_weight_end=0.5), adversarial, 10)
    assert float(whole(10)) == pytest.approx(0.5)
    with pytest.raises(InputError, match="pass steps="):
        kind_losses(decaying, with_features)


def test_the_pixel_loss_choice_replaces_the_mse_and_shares_its_weight():
    pixel, adversarial = StageSpec("student", 1, 5, "mse"), StageSpec("student", 1, 5, "adversarial_z", kind="features")
    assert kind_losses(config(), pixel) == (None, None)  # The paper's MSE: the Distiller's preset.
    l1_losses, l1_weights = kind_losses(config(pixel_loss="l1"), pixel)
    assert [type(loss).__name__ for loss in l1_losses] == ["PixelL1"] and l1_weights == [1.0]
    lap1_losses, lap1_weights = kind_losses(config(pixel_loss="lap1"), pixel)
    assert [type(loss).__name__ for loss in lap1_losses] == ["PixelLaplacianL1"] and lap1_weights == [1.0]
    assert lap1_losses[0].levels is None  # As many levels as the data set's images allow.
    decaying = config(pixel_loss="ssim_l1", mse_weight=10.0, mse_weight_end=0.0)
    mixed, weights = kind_losses(decaying, adversarial, steps=100)
    assert [type(loss).__name__ for loss in mixed] == ["PixelSSIM", "PixelL1", "FeatureLoss"]
    assert [float(weights[0](50)), float(weights[1](50)), weights[2]] == pytest.approx([4.2, 0.8, decaying.feature_weight])
    with pytest.raises(InputError, match="Unknown pixel_loss 'l2'; choose one of \\('mse', 'l1', 'ssim_l1', 'lap1'\\)"):
        config(pixel_loss="l2")


def test_the_training_curves_draw_every_pixel_term_a_student_logged():
    from kd_gan.experiment.plots import curve_panels

    history = {"student_loss": [0.3, 0.2], "ssim": [0.5, 0.4], "l1": [0.2, 0.1], "lap1": [0.1, 0.05], "other": [1.0, 1.0]}
    student = {"name": "student_mse_d1", "role": "student", "method": "student_mse", "recipe": "Lap1", "size_label": "d=1",
               "training": {"history": history}}
    teacher = {"name": "teacher_d4", "role": "teacher", "method": "teacher", "size_label": "d=4",
               "training": {"history": {"g_loss": [1.0], "d_loss": [0.5]}}}
    panels = dict(curve_panels({"teacher_candidates": [teacher], "models": [student]}))
    drawn = panels["students: Lap1"]
    assert [label for label, _, _ in drawn] == ["d=1 student_loss", "d=1 l1", "d=1 ssim", "d=1 lap1"]
    assert drawn[-1][1] == [0.1, 0.05] and len({style for _, _, style in drawn}) == 4  # Styles of the logged keys only.
    assert [label for label, _, _ in panels["teacher GANs"]] == ["d=4 g_loss", "d=4 d_loss"]
    assert panels["scratch GANs"] == []


def test_a_pixel_only_student_is_labelled_by_its_pixel_term_and_keeps_its_folder():
    stages = plan_stages(config(pixel_loss="l1", distillation=("pixel",), qat_epochs=0, loss="mse,joint"))
    students = {stage.folder: stage.label for stage in of_role(stages, "student")}
    assert students == {
        "students/mse_d1": "student (L1)", "students/joint_d1": "student (joint)",
        "students/mse_d2": "student (L1)", "students/joint_d2": "student (joint)",
    }
    assert StageSpec("student", 1, 5, "mse", kind="features", pixel_loss="ssim_l1").label == "student (SSIM + L1 + features)"
    with pytest.raises(ValueError, match="pixel_loss 'l2'"):
        StageSpec("student", 1, 5, "mse", pixel_loss="l2")


def test_a_students_learning_rate_is_constant_or_a_cosine_over_its_steps():
    assert student_learning_rate(config(student_learning_rate=3e-3), 500) == 3e-3
    cosine = student_learning_rate(config(student_learning_rate=2e-3, student_lr_schedule="cosine"), 400)
    assert [float(cosine(step)) for step in (0, 200, 400, 800)] == pytest.approx([2e-3, 1e-3, 0.0, 0.0], abs=1e-9)
    assert float(student_learning_rate(config(student_lr_schedule="cosine"), 0)(1)) == pytest.approx(0.0, abs=1e-9)
