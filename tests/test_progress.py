"""The run's plan and time estimate."""

import logging
import types

import numpy as np
import pytest

from kd_gan import Discriminator, Generator, count_multiply_accumulates, experiment
from kd_gan.experiment import progress
from kd_gan.experiment.plan import plan_stages
from kd_gan.experiment.progress import PlannedStage, RunClock

from test_experiment import TINY, tiny_config


def test_one_measured_stage_scales_the_priors_by_its_speed_against_them():
    stages = [PlannedStage("a", 100, cost=1e9), PlannedStage("b", 200, cost=3e9), PlannedStage("m", 300, 2e9, "distillation")]
    clock = RunClock(stages, evaluation_images=0)
    assert clock.remaining_seconds() is None  # Nothing measured yet.
    overhead, per_mac = progress.STEP_OVERHEAD_S, progress.SECONDS_PER_MAC

    def prior(kind, cost):
        return overhead[kind] + per_mac * cost

    clock.measured("a", 2 * prior("adversarial", 1e9), steps_done=50)  # A machine half as fast as the priors'.
    assert clock.seconds_per_step(clock.stages["b"]) == pytest.approx(2 * prior("adversarial", 3e9))
    assert clock.seconds_per_step(clock.stages["m"]) == pytest.approx(2 * prior("distillation", 2e9))
    expected = 50 * 2 * prior("adversarial", 1e9) + 200 * 2 * prior("adversarial", 3e9) + 300 * 2 * prior("distillation", 2e9)
    assert clock.remaining_seconds("a", steps_done=50) == pytest.approx(expected)


def test_a_stage_is_predicted_at_the_speed_of_the_measured_stage_nearest_in_cost():
    # The default CelebA run's teacher: 3.49e10 multiply-accumulates per step, 121.7 ms.
    teacher, student = PlannedStage("teacher", 10, cost=3.49e10), PlannedStage("scratch", 10, cost=1e8)
    mse, other = PlannedStage("mse", 10, 2.5e7, "distillation"), PlannedStage("mse4", 10, 1.9e8, "distillation")
    clock = RunClock([teacher, student, mse, other])
    overhead, per_mac = progress.STEP_OVERHEAD_S, progress.SECONDS_PER_MAC

    def prior(kind, cost):
        return overhead[kind] + per_mac * cost

    clock.measured("teacher", 0.1217, 0)
    # The small adversarial stage costs about its overhead, not a thousandth of the teacher's step.
    assert clock.seconds_per_step(student) == pytest.approx(overhead["adversarial"], rel=0.1)
    clock.measured("mse", 0.03, 0)  # Far slower than its prior; nearer both small stages than the teacher.
    speed = 0.03 / prior("distillation", 2.5e7)
    assert clock.seconds_per_step(other) == pytest.approx(speed * prior("distillation", 1.9e8))
    assert clock.seconds_per_step(student) == pytest.approx(speed * prior("adversarial", 1e8))


def test_a_slow_large_teacher_does_not_slow_the_prediction_of_small_students():
    # A float32 teacher on a shared CPU, five times the bfloat16 priors; small
    # students measured at their priors: a small scratch GAN follows them.
    teacher = PlannedStage("teacher", 10, cost=1.6e11)
    mse, scratch = PlannedStage("mse", 10, 3e6, "distillation"), PlannedStage("scratch", 1000, cost=1.2e7)
    clock = RunClock([teacher, mse, scratch])
    overhead, per_mac = progress.STEP_OVERHEAD_S, progress.SECONDS_PER_MAC
    clock.measured("teacher", 5 * (overhead["adversarial"] + per_mac * 1.6e11), 0)
    clock.measured("mse", overhead["distillation"] + per_mac * 3e6, 0)
    assert clock.seconds_per_step(scratch) == pytest.approx(overhead["adversarial"] + per_mac * 1.2e7)


def test_after_a_fit_a_kind_not_measured_keeps_the_speed_of_the_stage_nearest_it():
    stages = [PlannedStage("big", 10, cost=1e10), PlannedStage("small", 10, cost=1e8), PlannedStage("qat", 10, 2e8, "distillation")]
    clock = RunClock(stages)
    overhead, per_mac = progress.STEP_OVERHEAD_S, progress.SECONDS_PER_MAC
    clock.measured("big", 5 * (overhead["adversarial"] + per_mac * 1e10), 0)  # Five times slower than the priors.
    clock.measured("small", 3 * (overhead["adversarial"] + per_mac * 1e8), 0)  # Three times.
    assert clock._fits()["adversarial"][2] == 1e8
    assert clock.seconds_per_step(clock.stages["qat"]) == pytest.approx(3 * (overhead["distillation"] + per_mac * 2e8))


def test_a_fit_on_two_slow_teachers_is_not_carried_down_to_small_students():
    # Two float32 teachers at five times the priors, a small MSE student at its
    # prior: the small joint student and scratch GAN follow the student.
    overhead, per_mac = progress.STEP_OVERHEAD_S, progress.SECONDS_PER_MAC
    stages = [PlannedStage("t16", 10, cost=4e10), PlannedStage("t32", 10, cost=1.6e11), PlannedStage("mse", 10, 3e7, "distillation"),
              PlannedStage("joint", 10, cost=1e8), PlannedStage("t64", 10, cost=6.4e11)]
    clock = RunClock(stages)
    for name in ("t16", "t32"):
        clock.measured(name, 5 * (overhead["adversarial"] + per_mac * clock.stages[name].cost), 0)
    clock.measured("mse", overhead["distillation"] + per_mac * 3e7, 0)
    assert clock.seconds_per_step(clock.stages["joint"]) == pytest.approx(overhead["adversarial"] + per_mac * 1e8)
    # Above its lowest point the fit serves: a larger teacher at the teachers' speed.
    assert clock.seconds_per_step(clock.stages["t64"]) == pytest.approx(5 * (overhead["adversarial"] + per_mac * 6.4e11))


def test_two_measured_costs_fit_overhead_and_slope_and_evaluations_add_their_images():
    stages = [PlannedStage(name, 10, cost=cost) for name, cost in (("a", 1e6), ("b", 2e6), ("c", 5e6))]
    clock = RunClock(stages, evaluation_images=280, classifier="tensorflow-bfloat16")
    clock.measured("a", 0.002 + 1e-9 * 1e6, 0)
    clock.measured("b", 0.002 + 1e-9 * 2e6, 0)
    assert clock.seconds_per_step(clock.stages["c"]) == pytest.approx(0.002 + 1e-9 * 5e6)
    clock.finished("a", 0.03)
    clock.classified(140, 7.0)  # 20 images/s measured; 140 images left.
    assert clock.remaining_seconds() == pytest.approx(10 * 0.004 + 10 * 0.007 + 140 / 20)


def test_gan_step_cost_counts_generator_and_discriminator_passes():
    generator, discriminator = Generator(8, (28, 28, 1), 1), Discriminator((28, 28, 1), 1)
    g, d = count_multiply_accumulates(generator), count_multiply_accumulates(discriminator)
    assert progress.gan_step_cost(generator, discriminator, 4) == 4 * (3 * g + 3 * d + g + 6 * d)
    assert progress.gan_step_cost(generator, discriminator, 4, critic_steps=5) == 4 * (3 * g + 3 * d + 5 * (g + 6 * d))


def test_the_plan_names_the_run_stages_with_their_steps_and_marks_finished_ones(tiny_mnist, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("KD_GAN_CACHE_DIR", str(tmp_path / "cache"))  # The reference is computed in this run.
    config = tiny_config(tiny_mnist, tmp_path / "run", loss="both", eval_samples=4)
    stages = progress.planned_stages(plan_stages(config), config, 3, str(tmp_path / "run"), (28, 28, 1))
    names = ["teacher_d2", "student_mse_d1", "student_joint_d1", "scratch_d1"]
    assert [s.name for s in stages] == names and all(s.steps == 3 and not s.done for s in stages)
    joint, mse = stages[2].cost, stages[1].cost
    assert joint > mse > 0
    assert [s.kind for s in stages] == ["adversarial", "distillation", "adversarial", "adversarial"]
    # The absl logger's own level: the suite's earlier tests may have left it above INFO.
    with caplog.at_level(logging.INFO, logger="absl"):
        experiment.run(config)
    text = caplog.text
    assert all(f"Plan: {name}: 3 steps" in text for name in names)
    assert "left (estimate)" in text
    # The plan comes first, before the reference statistics are computed.
    assert text.index("Plan: teacher_d2") < text.index("Computing the statistics") < text.index("Reference statistics of")
    again = progress.planned_stages(plan_stages(config), config, 3, str(tmp_path / "run"), (28, 28, 1))
    assert all(s.done for s in again)
    assert [s.name for s in again] == names


def test_a_stage_measures_its_speed_after_its_first_steps():
    clock = RunClock([PlannedStage("s", 200, cost=1.0)])
    timer = progress.StageTimer(clock, "s")
    timer.set_params({"steps": 100})
    timer.on_epoch_begin(0)
    for batch in range(9, 100, 10):  # Ten executions of 10 steps.
        timer.on_train_batch_end(batch)
    assert clock.stages["s"].seconds_per_step is not None and clock.stages["s"].seconds_per_step >= 0
    assert np.isfinite(clock.remaining_seconds())


def test_a_reference_that_kept_its_pass_time_sets_the_classifier_speed_and_an_older_one_does_not():
    clock = RunClock([PlannedStage("s", 10, cost=1.0, seconds_per_step=0.1)], evaluation_images=1000, classifier="tensorflow-float32")
    loaded = types.SimpleNamespace(reference=types.SimpleNamespace(seconds=None, count=500, source="x"))  # An older file.
    progress.reference_ready(clock, loaded)
    progress.reference_ready(clock, None)  # A run without evaluation.
    assert clock.images_per_s == progress.CLASSIFIER_IMAGES_PER_S["tensorflow-float32"]  # The prior stays.
    computed = types.SimpleNamespace(reference=types.SimpleNamespace(seconds=10.0, count=500, source="x"))
    progress.reference_ready(clock, computed)
    assert clock.images_per_s == 50.0 and clock.evaluation_images == 1000  # The reference is not a model's evaluation.
    assert clock.remaining_seconds() == pytest.approx(10 * 0.1 + 1000 / 50.0)


def test_a_given_teacher_is_planned_as_one_more_evaluation_until_its_score_is_cached(tiny_mnist, tmp_path):
    root = tmp_path / "run"
    config = tiny_config(tiny_mnist, root, teacher_path=str(tmp_path / "teacher.keras"), loss="both")
    teacher = Generator(config.latent_dim, (28, 28, 1), 2)
    clock = progress.run_clock(config, plan_stages(config), 3, str(root), (28, 28, 1), teacher, eval_samples=10)
    assert [s.name for s in clock.stages.values()] == ["student_mse_d1", "student_joint_d1", "scratch_d1"]
    assert clock.evaluation_images == 10 * 4  # Three models trained here, and the given teacher.
    root.mkdir()
    (root / progress.GIVEN_TEACHER_EVALUATION).write_text("{}")
    assert progress.run_clock(config, plan_stages(config), 3, str(root), (28, 28, 1), teacher, eval_samples=10).evaluation_images == 10 * 3
