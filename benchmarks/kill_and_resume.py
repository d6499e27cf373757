"""Kill a tiny run at random instants, resume it, and check it ends where an uninterrupted run ends.

A tiny MNIST run (its own 40 + 12 image data set, written here; teacher d=2,
student d=1 from a teacher cache, a scratch GAN, 16 samples scored, every
cache inside the output folder) runs once without interruption. Then, for
each of `--kills` instants drawn uniformly over the first 80% of that run's duration, a fresh
run of the same command is killed (SIGKILL) at that instant and run again to
the end. Each resumed run's generators (teacher, student, scratch GAN) must
equal the uninterrupted run's to `--tolerance`, and its `results.json` must
equal the uninterrupted one's in everything but times and paths. Prints one
row per kill (instant, the stage the console was in, result) and writes JSON.

    python benchmarks/kill_and_resume.py --kills=20 --output_dir=runs/kill_and_resume
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

flags.DEFINE_integer("kills", 20, "Kill instants to try.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the kill instants.")
flags.DEFINE_float("tolerance", 1e-5, "Largest weight difference allowed against the uninterrupted run.")
flags.DEFINE_string("output_dir", "runs/kill_and_resume", "Where the runs, their data and caches go.")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_FLAGS = [
    "--dataset=mnist", "--teacher_depths=2", "--student_depths=1", "--latent_dim=8", "--batch_size=4",
    "--teacher_epochs=2", "--student_epochs=2", "--steps_per_epoch=3", "--grid_columns=4", "--eval_samples=16",
    "--teacher_cache=24",
]
# Fields of results.json that differ between any two runs: times and where the run was.
VARYING = {
    "wall_time_s", "invocation_wall_s", "earlier_invocations_s", "resumed_after_epoch", "training_time_s", "seconds_per_step",
    "seconds", "output_dir", "data_dir",
}


def write_tiny_mnist(folder):
    """40 train and 12 test images of noise in MNIST's file layout (as tests/conftest.py writes them)."""
    import gzip
    import struct

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, count in (("train-images-idx3-ubyte.gz", 40), ("t10k-images-idx3-ubyte.gz", 12)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        with gzip.open(os.path.join(folder, name), "wb") as file:
            file.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
    for name, count in (("train-labels-idx1-ubyte.gz", 40), ("t10k-labels-idx1-ubyte.gz", 12)):
        with gzip.open(os.path.join(folder, name), "wb") as file:
            file.write(struct.pack(">II", 2049, count) + rng.integers(0, 10, count, dtype=np.uint8).tobytes())


def start(run_dir, data_dir, log):
    environment = dict(os.environ, KD_GAN_CACHE_DIR=os.path.join(run_dir, "cache"), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.join(ROOT, "run_experiment.py"), f"--data_dir={data_dir}",
               f"--output_dir={run_dir}", *RUN_FLAGS]
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)


def run_to_end(run_dir, data_dir, log_path):
    with open(log_path, "a") as log:
        return start(run_dir, data_dir, log).wait()


def stage_at_kill(log_path):
    """The last stage the console had started when the run was killed."""
    stage = "set-up"
    with open(log_path, errors="replace") as file:
        for line in file:
            if "Stage " in line and ":" in line:
                name = line.split("Stage ", 1)[1].split(":")[0].split(" ")[0]
                stage = f"after {name}" if " finished " in line else name
            elif "Teacher cache" in line:
                stage = "cache fill"
            elif "Evaluating" in line:
                stage = "scoring"
    return stage


def generators(run_dir):
    from kd_gan.models.any_generator import load_generator

    found = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "*", "*", "generator.keras"))):
        found[os.path.relpath(path, run_dir)] = [np.asarray(w) for w in load_generator(path).get_weights()]
    return found


def comparable(value):
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if key not in VARYING}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def differences(expected, found, path="results"):
    """Where two records differ (floats to 1e-6 relative), as paths."""
    if isinstance(expected, dict) and isinstance(found, dict):
        keys = set(expected) | set(found)
        return [d for key in sorted(keys) for d in differences(expected.get(key), found.get(key), f"{path}.{key}")]
    if isinstance(expected, list) and isinstance(found, list) and len(expected) == len(found):
        return [d for i, (a, b) in enumerate(zip(expected, found)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(found, float):
        return [] if abs(expected - found) <= 1e-6 * max(1.0, abs(expected)) else [path]
    return [] if expected == found else [path]


def compare(reference_dir, run_dir, reference_generators, reference_results):
    found = generators(run_dir)
    if set(found) != set(reference_generators):
        return dict(ok=False, why=f"generators {sorted(found)} against {sorted(reference_generators)}")
    weight_difference = max(
        float(np.max(np.abs(a - b))) if a.size else 0.0
        for name in found for a, b in zip(reference_generators[name], found[name])
    )
    with open(os.path.join(run_dir, "results.json")) as file:
        changed = differences(reference_results, comparable(json.load(file)))
    ok = weight_difference <= FLAGS.tolerance and not changed
    return dict(ok=ok, max_weight_difference=weight_difference, results_differ=changed[:5])


def main(argv):
    del argv
    from kd_gan.models.precision import cpu_record

    root = os.path.abspath(FLAGS.output_dir)
    data_dir = os.path.join(root, "data")
    write_tiny_mnist(os.path.join(data_dir, "mnist"))
    reference_dir = os.path.join(root, "uninterrupted")
    began = time.perf_counter()
    if run_to_end(reference_dir, data_dir, os.path.join(root, "uninterrupted.log")):
        raise SystemExit(f"The uninterrupted run failed: see {root}/uninterrupted.log")
    duration = time.perf_counter() - began
    reference_generators = generators(reference_dir)
    with open(os.path.join(reference_dir, "results.json")) as file:
        reference_results = comparable(json.load(file))
    draws = random.Random(FLAGS.seed)
    # Over the first 80% of the uninterrupted run's time: a later run on a quieter machine ends sooner.
    instants = sorted(draws.uniform(0.0, 0.8 * duration) for _ in range(FLAGS.kills))
    print(f"Uninterrupted: {duration:.1f} s, {len(reference_generators)} generators. Killing at {FLAGS.kills} instants.\n")
    print("| kill | at s | stage | resumed rc | max weight difference | results | ok |\n|---|---|---|---|---|---|---|")
    rows = []
    for index, instant in enumerate(instants):
        run_dir = os.path.join(root, f"killed_{index:02d}")
        log_path = os.path.join(root, f"killed_{index:02d}.log")
        with open(log_path, "w") as log:
            process = start(run_dir, data_dir, log)
            try:
                process.wait(timeout=instant)
                killed = False  # It ended before the instant.
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed = True
        stage = stage_at_kill(log_path) if killed else "finished"
        code = run_to_end(run_dir, data_dir, log_path)
        result = compare(reference_dir, run_dir, reference_generators, reference_results) if code == 0 else dict(ok=False, why="resume failed")
        row = dict(kill=index, at_seconds=round(instant, 2), killed=killed, stage=stage, resumed_rc=code, **result)
        rows.append(row)
        print(f"| {index} | {instant:.1f} | {stage} | {code} | {result.get('max_weight_difference', '-')} | "
              f"{'same' if not result.get('results_differ') else ', '.join(result['results_differ'])} | "
              f"{'yes' if result['ok'] else 'NO: ' + result.get('why', '')} |", flush=True)
    summary = dict(cpu=cpu_record(), uninterrupted_seconds=round(duration, 1), run_flags=RUN_FLAGS,
                   kills=rows, all_ok=all(row["ok"] for row in rows))
    with open(os.path.join(root, "kill_and_resume.json"), "w") as file:
        json.dump(summary, file, indent=1)
    killed = sum(row["killed"] for row in rows)
    print(f"\n{sum(row['ok'] for row in rows)} of {len(rows)} resumed to the uninterrupted run ({killed} killed, "
          f"{len(rows) - killed} ended before their instant); {root}/kill_and_resume.json")
    if not summary["all_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    app.run(main)
