"""Keeps a run's teacher with the package: copies its `generator.keras` into
`kd_gan/models/pretrained/` and writes its manifest record (sha256, shape,
latent size, depth, parameters, the run's command and scores) from the run folder.

    python tools/keep_teacher.py --run=runs/mnist_headline_1669 --name=mnist_d128 \
        --command="python run_experiment.py ..." --data="the full MNIST training split" \
        --training="5 epochs of 930 steps, 2,400 s on a 2-core AMD EPYC (AVX2)"

The command, data and training are words only the person who ran it knows;
the rest is read off the run. A name already in the manifest is refused
(a kept file is committed once).
"""

import json
import os
import shutil

from absl import app, flags

from kd_gan._io import file_digest
from kd_gan.errors import InputError
from kd_gan.models import count_parameters
from kd_gan.models.any_generator import load_generator
from kd_gan.models.pretrained import PRETRAINED_DIR, pretrained_manifest

flags.DEFINE_string("run", None, "A finished run_experiment.py folder.", required=True)
flags.DEFINE_string("name", None, "The kept teacher's name, e.g. mnist_d128.", required=True)
flags.DEFINE_string("command", None, "The command that trained it.", required=True)
flags.DEFINE_string("data", None, "What it was trained on, in words.", required=True)
flags.DEFINE_string("training", None, "Steps, seconds and machine, in words.", required=True)
flags.DEFINE_string("folder", PRETRAINED_DIR, "The pretrained folder (with manifest.json).")
FLAGS = flags.FLAGS


def teacher_record(run_dir):
    """The run's selected teacher: its results.json entry and generator path."""
    with open(os.path.join(run_dir, "results.json")) as file:
        results = json.load(file)
    teacher = results["models"][0]
    if not teacher.get("path"):
        raise InputError(f"{run_dir}'s teacher was given (--teacher_path), not trained there: keep the run that trained it.")
    return results, teacher, os.path.join(run_dir, teacher["path"])


def keep(run_dir, name, command, data, training, folder=PRETRAINED_DIR):
    """Copies the teacher and adds its manifest record; returns the record."""
    manifest = pretrained_manifest(folder)
    if name in manifest:
        raise InputError(f"{name!r} is already kept ({manifest[name]['file']}); choose another name.")
    results, teacher, source = teacher_record(run_dir)
    generator = load_generator(source)
    target = os.path.join(folder, f"{name}.keras")
    shutil.copyfile(source, target)
    quality = teacher.get("quality") or {}
    manifest[name] = {
        "file": os.path.basename(target),
        "sha256": file_digest(target),
        "dataset": results["dataset"],
        "image_shape": list(generator.image_shape),
        "latent_dim": generator.latent_dim,
        "depth": getattr(generator, "depth", None),
        "parameters": count_parameters(generator),
        "data": data,
        "command": command,
        "training": training,
        "fid": round(quality["fid"], 2) if quality.get("fid") is not None else None,
        "fid_record": {key: value for key, value in quality.items() if key != "fid"} | {"run": run_dir},
    }
    with open(os.path.join(folder, "manifest.json"), "w") as file:
        json.dump(manifest, file, indent=2)
        file.write("\n")
    return manifest[name]


def main(argv):
    del argv
    try:
        print(json.dumps(keep(FLAGS.run, FLAGS.name, FLAGS.command, FLAGS.data, FLAGS.training, FLAGS.folder), indent=2))
    except InputError as error:
        raise SystemExit(f"Error: {error}") from None


if __name__ == "__main__":
    app.run(main)
