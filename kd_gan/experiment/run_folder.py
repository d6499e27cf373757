"""A run folder: one writer at a time, refusing one that holds a run with
other settings or other data, clearing it on request, waiting for every worker."""

import dataclasses
import json
import os
import shutil

from kd_gan import _io
from kd_gan.errors import InputError
from kd_gan.experiment.config import ExperimentConfig
from kd_gan.experiment.distribute import barrier, is_chief, worker_output_dir
from kd_gan.training import objectives

# Fields that may change between runs in one output folder: they do not
# change what the finished stages trained (evaluation and export are redone).
RERUNNABLE_FIELDS = frozenset(
    {
        "output_dir", "data_dir", "inception_path", "eval_samples", "reference_samples", "export", "quantization",
        "grid_columns", "verbose", "distillation", "qat_epochs",
        # The scoring pass: its statistics and evaluations are named by it, so a change re-scores.
        "inception_precision", "inception_engine",
        # The scratch GANs are stages of their own: a finished run gains its baselines in place.
        "scratch",
        # Compared by content (student_start.json), not by path.
        "student_start",
    }
)
LOCK_FILE = _io.LOCK_FILE  # Held (flock) by the process writing the folder.
DATA_RECORD = "data.json"  # What data the folder's models were trained and scored on.
START_RECORD = "student_start.json"  # The generator file the students start from (`student_start`).
# What `overwrite` deletes: only what a run writes.
OUTPUTS = (
    "teachers", "students", "scratch", "tensorboard", "export", "config.json", "results.json", "results.csv",
    "report.md", "samples.png", "samples_labelled.png", "interpolation.png", "quality_vs_compression.png", "training_curves.png",
    "heldout_z.npy", "teacher_evaluation.json", "workers", "teacher_cache", DATA_RECORD, START_RECORD,
)



def recorded_config(recorded):
    """A run's recorded configuration (its config.json, as JSON values) with
    every field: one newer than the run at its default value, and the settings
    that default to another's value derived from the run's own."""
    defaults = json.loads(json.dumps({field.name: field.default for field in dataclasses.fields(ExperimentConfig)}))
    objective = recorded.get("objective", objectives.NON_SATURATING)
    derived = {
        "critic_steps": objectives.OBJECTIVE_DEFAULTS.get(objective, {}).get("critic_steps"),
        "d_learning_rate": recorded.get("learning_rate"),
    }
    return {**defaults, **derived, **recorded}


def check_output_dir(config, overwrite=False, keep=()):
    """Refuses a folder holding a run with another configuration; `overwrite`
    clears it (what a run writes, except the outputs named in `keep`)."""
    path = os.path.join(config.output_dir, "config.json")
    if overwrite:
        for name in (name for name in OUTPUTS if name not in keep):
            target = os.path.join(config.output_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        return
    if not os.path.isfile(path):
        return
    with open(path) as file:
        previous = recorded_config(json.load(file))
    current = json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples as lists, like the file.
    changed = {
        key: (previous.get(key), value)
        for key, value in current.items()
        if key not in RERUNNABLE_FIELDS and previous.get(key) != value
    }
    if changed:
        listing = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items()))
        raise InputError(
            f"{config.output_dir!r} holds a run with another configuration ({listing}). Use another "
            "--output_dir, the same settings to resume it, or --overwrite to delete it and start again."
        )


def prepare_output_dir(config, overwrite, strategy):
    """Refuses another run's folder, or clears it with `overwrite`, then waits
    for every worker.

    Each process clears only what it writes: the chief `output_dir` (its
    workers' folders left to them), another multi-worker process its own
    `workers/<task>` folder, so no process deletes files another is writing,
    on a shared file system or not. All wait for each other before a stage
    starts.
    """
    if is_chief(strategy):
        check_output_dir(config, overwrite, keep=("workers",) if strategy.num_replicas_in_sync > 1 else ())
    elif overwrite:
        own = worker_output_dir(strategy, config.output_dir)
        check_output_dir(dataclasses.replace(config, output_dir=own), overwrite=True)
    else:
        check_output_dir(config)
    barrier(strategy)


def writer_lock(folder):
    """Holds the run folder's exclusive writer lock while the block runs
    (`kd_gan._io.folder_lock` on `<folder>/.lock`).

    Raises:
        InputError: another process holds the lock (named), or the folder
            cannot be created or written.
    """
    return _io.folder_lock(folder, "run folder", "wait for it to finish, stop it, or use another --output_dir", holder="run")


def check_data(root, identity, data_dir):
    """Records the data a run folder's models are trained and scored on, or
    refuses other data than the recorded (the same data at another path passes).

    Args:
        root: the run's folder.
        identity: `kd_gan.data.loading.dataset_identity` of the training split.
        data_dir: where the data were read from (recorded, never compared).
    """
    _check_record(root, DATA_RECORD, "identity", {"identity": identity, "data_dir": data_dir}, lambda recorded: (
        f"{root!r} holds models trained on other data: {recorded.get('identity')} (from "
        f"{recorded.get('data_dir')!r}), not {identity} (from {data_dir!r}). Use the same data"
    ))


def check_student_start(root, path):
    """Records the contents of the generator file the run's students start
    from (`student_start`), or refuses a file of other contents than the
    recorded (the same file at another path passes)."""
    digest = _io.file_digest(path)
    _check_record(root, START_RECORD, "sha256", {"sha256": digest, "path": os.path.abspath(path)}, lambda recorded: (
        f"{root!r} holds students started from {recorded.get('path')!r} (sha256 {str(recorded.get('sha256'))[:12]}...); "
        f"student_start={path!r} holds other weights (sha256 {digest[:12]}...). Start from the same file"
    ))


def _check_record(root, name, key, record, refusal):
    """Writes `record` as the run folder's file `name`, or, when the folder
    has one, refuses (InputError: `refusal(recorded)` and the ways out) a
    `record` whose `key` differs from the recorded one."""
    path = os.path.join(root, name)
    if os.path.isfile(path):
        recorded = _io.read_json(path)
        if recorded.get(key) != record[key]:
            raise InputError(refusal(recorded) + ", another --output_dir, or --overwrite to delete the run and start again.")
        return
    _io.write_json(path, record)
