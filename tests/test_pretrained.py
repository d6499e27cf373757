"""Teachers kept with the package: every manifest entry loads by name after its
sha256 check, a changed byte is refused, and tools/keep_teacher.py writes the
record a later load checks."""

import importlib.util
import json
import os
import shutil

import pytest

import kd_gan
from kd_gan import Generator, count_parameters
from kd_gan.errors import InputError
from kd_gan.models.pretrained import PRETRAINED_DIR, pretrained_manifest

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "keep_teacher.py")


def keep_teacher_tool():
    spec = importlib.util.spec_from_file_location("keep_teacher", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(pretrained_manifest()))
def test_every_kept_teacher_loads_by_name_as_its_manifest_describes_it(name):
    record = pretrained_manifest()[name]
    teacher = kd_gan.pretrained(name)
    assert isinstance(teacher, Generator) and list(teacher.image_shape) == record["image_shape"]
    assert teacher.depth == record["depth"] and teacher.latent_dim == record["latent_dim"]
    assert count_parameters(teacher) == record["parameters"]


def test_an_unknown_name_or_a_changed_byte_is_refused(tmp_path):
    names = sorted(pretrained_manifest())
    with pytest.raises(InputError, match=rf"Unknown pretrained generator 'celeb_a_d64'; choose one of \[{', '.join(map(repr, names))}\]"):
        kd_gan.pretrained("celeb_a_d64")
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    record = pretrained_manifest()["celeb_a_d32"]
    data = bytearray((folder / record["file"]).read_bytes())
    data[len(data) // 2] ^= 1
    (folder / record["file"]).write_bytes(bytes(data))
    with pytest.raises(InputError, match="not the .* of its manifest: the file was changed or damaged"):
        kd_gan.pretrained("celeb_a_d32", folder=str(folder))


def test_a_run_teacher_is_kept_with_a_record_that_a_load_checks(tmp_path):
    run = tmp_path / "run"
    (run / "teachers" / "d2").mkdir(parents=True)
    teacher = Generator(8, (28, 28, 1), depth=2)
    teacher.save(run / "teachers" / "d2" / "generator.keras")
    quality = {"num_samples": 100, "fid": 12.345, "reference": "mnist test"}
    entry = {"name": "teacher", "role": "teacher", "parameters": count_parameters(teacher), "path": "teachers/d2/generator.keras",
             "quality": quality}
    (run / "results.json").write_text(json.dumps({"dataset": "mnist", "models": [entry]}))
    folder = tmp_path / "pretrained"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    tool = keep_teacher_tool()
    record = tool.keep(str(run), "mnist_d2", "python run_experiment.py ...", "MNIST train", "3 steps", folder=str(folder))
    assert record["fid"] == 12.35 and record["fid_record"]["num_samples"] == 100 and record["depth"] == 2
    assert (record["latent_dim"], record["image_shape"], record["parameters"]) == (8, [28, 28, 1], count_parameters(teacher))
    kept = kd_gan.pretrained("mnist_d2", folder=str(folder))
    assert kept.get_config()["depth"] == 2
    with pytest.raises(InputError, match="'mnist_d2' is already kept"):
        tool.keep(str(run), "mnist_d2", "c", "d", "t", folder=str(folder))
    # A teacher given to the run (no file of its own there) cannot be kept from it.
    entry.pop("path")
    (run / "results.json").write_text(json.dumps({"dataset": "mnist", "models": [entry]}))
    with pytest.raises(InputError, match="was given \\(--teacher_path\\)"):
        tool.keep(str(run), "mnist_other", "c", "d", "t", folder=str(folder))
