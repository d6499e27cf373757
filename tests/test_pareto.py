"""The Pareto front over run folders: against a brute-force numpy check, and
refusing runs whose numbers are not comparable."""

import json
import os

import numpy as np
import pytest

from kd_gan.errors import InputError
from kd_gan.experiment import pareto


def brute_force_front(points, lower_is_better=True):
    array = np.asarray(points, dtype=float)
    values = array[:, 1] if lower_is_better else -array[:, 1]
    front = []
    for i in range(len(array)):
        no_worse = (array[:, 0] <= array[i, 0]) & (values <= values[i])
        better = (array[:, 0] < array[i, 0]) | (values < values[i])
        if not np.any(no_worse & better):
            front.append(i)
    return front


def test_the_front_is_the_set_of_undominated_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = list(zip(rng.integers(1, 8, 12).tolist(), rng.integers(0, 6, 12).tolist()))
        assert pareto.pareto_front(points) == brute_force_front(points)
        assert pareto.pareto_front(points, lower_is_better=False) == brute_force_front(points, lower_is_better=False)
    # Smaller and better wins; a tie in both keeps both.
    assert pareto.pareto_front([(10, 5.0), (5, 4.0), (5, 4.0), (20, 1.0)]) == [1, 2, 3]


def model(name, role, parameters, fid, num_samples=100, reference="mnist test", classifier="cnn-1"):
    return dict(name=name, role=role, label=role, method=role, parameters=parameters,
                quality={"fid": fid, "num_samples": num_samples, "reference": reference, "classifier": classifier,
                         "mnist_score": 10 - fid / 100})


def write_run(folder, models, dataset="mnist", config=None):
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as file:
        json.dump({"dataset": dataset, "models": models, **({"config": config} if config else {})}, file)
    return str(folder)


def test_rows_name_the_settings_in_which_their_runs_differ_where_those_reach_the_model(tmp_path):
    shared = dict(output_dir="ignored", student_epochs=20, mse_weight=1.0, mse_weight_end=None, discriminator_depth=None, seed=0)
    models = lambda: [model("teacher", "teacher", 1000, 10.0), model("student_w2", "student", 10, 90.0),
                      model("scratch_w2", "scratch", 10, 95.0)]
    first = write_run(tmp_path / "a", models(), config=dict(shared))
    second = write_run(tmp_path / "b", models(), config=dict(shared, output_dir="other", student_epochs=100, mse_weight_end=0.0))
    third = write_run(tmp_path / "c", models(), config=dict(shared, output_dir="third", discriminator_depth=22))
    old = write_run(tmp_path / "d", models())  # No configuration recorded: nothing to name.
    collected, _ = pareto.collect([first, second, third, old])
    settings = {(m["run"], m["name"]): m["settings"] for m in collected}
    assert settings[(first, "teacher")] == ""  # Teachers: one teacher, checked apart.
    assert settings[(first, "student_w2")] == "student_epochs=20, discriminator_depth=default, mse_weight_end=default"
    assert settings[(second, "student_w2")] == "student_epochs=100, discriminator_depth=default, mse_weight_end=0.0"
    # The pixel weight does not reach a scratch GAN; the epochs and the discriminator do.
    assert settings[(second, "scratch_w2")] == "student_epochs=100, discriminator_depth=default"
    assert settings[(third, "scratch_w2")] == "student_epochs=20, discriminator_depth=22"
    assert settings[(old, "student_w2")] == ""
    # Settings the runs share (mse_weight, seed) and the output folder are not named.
    assert not any("mse_weight=" in s or "seed" in s or "output_dir" in s for s in settings.values())
    table = pareto.write_front([first, second], str(tmp_path / "out"))
    assert "| settings that differ |" in table.splitlines()[0]
    assert f"| {second} | student_epochs=100, mse_weight_end=0.0 |" in table


def test_runs_are_merged_with_one_teacher_and_the_front_written(tmp_path):
    first = write_run(tmp_path / "a", [
        model("teacher", "teacher", 1000, 10.0), model("student_d1", "student", 10, 90.0), model("scratch_d1", "scratch", 10, 300.0),
    ])
    second = write_run(tmp_path / "b", [model("teacher", "teacher", 1000, 10.0), model("student_w2", "student", 12, 60.0),
                                         model("student_w3", "student", 20, 70.0)])
    models, dataset = pareto.collect([first, second])
    assert dataset == "mnist" and [m["name"] for m in models] == ["teacher", "student_d1", "scratch_d1", "student_w2", "student_w3"]
    table = pareto.write_front([first, second], str(tmp_path / "out"))
    front_rows = [line for line in table.splitlines() if line.endswith("| yes |")]
    # By size, largest first; w3 (larger than w2 and worse) and the scratch GAN are dominated.
    assert [row.split("`")[1] for row in front_rows] == ["teacher", "student_w2", "student_d1"]
    with open(tmp_path / "out" / "pareto_fid.json") as file:
        record = json.load(file)
    assert record["front"] == [f"teacher @ {first}", f"student_d1 @ {first}", f"student_w2 @ {second}"]
    assert [m["compression_ratio"] for m in models] == [1.0, 100.0, 100.0, 1000 / 12, 50.0]
    # Higher is better for the data set's score (here a falling function of FID: the same front).
    models, _ = pareto.collect([first, second], metric="mnist_score")
    assert pareto.pareto_front([(m["parameters"], m["value"]) for m in models], lower_is_better=False) == [0, 1, 3]


def test_runs_that_are_not_comparable_are_refused(tmp_path):
    base = write_run(tmp_path / "a", [model("teacher", "teacher", 1000, 10.0), model("s", "student", 10, 90.0)])
    teacher = model("teacher", "teacher", 1000, 10.0)
    other_count = write_run(tmp_path / "b", [teacher, model("s", "student", 10, 80.0, num_samples=50)])
    other_teacher = write_run(tmp_path / "c", [model("teacher", "teacher", 2000, 10.0)])
    other_data = write_run(tmp_path / "d", [model("teacher", "teacher", 1000, 10.0)], dataset="cifar10")
    other_reference = write_run(tmp_path / "e", [teacher, model("s", "student", 10, 80.0, reference="mnist train")])
    other_network = write_run(tmp_path / "f", [teacher, model("s", "student", 10, 80.0, classifier="cnn-2")])
    with pytest.raises(InputError, match=r"fid sample count \(.*a: 100, .*b: 50\)"):
        pareto.collect([base, other_count])
    with pytest.raises(InputError, match="fid reference"):
        pareto.collect([base, other_reference])
    with pytest.raises(InputError, match="fid feature network"):
        pareto.collect([base, other_network])
    with pytest.raises(InputError, match="teacher parameters.*1000.*2000"):
        pareto.collect([base, other_teacher])
    with pytest.raises(InputError, match="data set"):
        pareto.collect([base, other_data])
    with pytest.raises(InputError, match="no results.json"):
        pareto.collect([str(tmp_path / "missing")])
    with pytest.raises(InputError, match="'psnr'.*choose one of"):
        pareto.collect([base], metric="psnr")


def test_teachers_of_one_size_are_one_point_only_when_they_are_the_same_teacher(tmp_path):
    first = write_run(tmp_path / "a", [model("teacher", "teacher", 1000, 10.0), model("s1", "student", 10, 90.0)])
    same = write_run(tmp_path / "b", [model("teacher", "teacher", 1000, 10.0), model("s2", "student", 10, 80.0)])
    reseeded = write_run(tmp_path / "c", [model("teacher", "teacher", 1000, 12.0), model("s3", "student", 10, 70.0)])
    models, _ = pareto.collect([first, same, reseeded])
    assert [(m["run"], m["name"]) for m in models if m["role"] == "teacher"] == [(first, "teacher"), (reseeded, "teacher")]
    # A first teacher without a score leaves the later run's teacher in.
    unscored = model("teacher", "teacher", 1000, 10.0)
    unscored["quality"] = None
    models, _ = pareto.collect([write_run(tmp_path / "d", [unscored, model("s4", "student", 10, 60.0)]), same])
    assert [(m["run"], m["name"]) for m in models] == [(str(tmp_path / "d"), "s4"), (same, "teacher"), (same, "s2")]
