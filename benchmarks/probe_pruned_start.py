"""Probe: how close a pruned start is to its teacher, refit or not.

For a kept teacher and width profiles, the MSE between the teacher's images
and those of `kd_gan.prune_generator(teacher, widths)` with and without the
least-squares refit (`refit_samples`), on 512 latent vectors the refit never
saw, with batch statistics (as a student trains) and with the moving ones (as
it is evaluated); beside it, the teacher images' own variance around their mean
(the error of a constant image at the mean). Prints a table and writes
`benchmarks/results/probe_pruned_start_<teacher>.json` with the CPU named.

    python benchmarks/probe_pruned_start.py cifar10_d32 64-32-16 2-11-11
"""

import sys
import time

import numpy as np
import tensorflow as tf

import kd_gan
from kd_gan.models.precision import cpu_label, cpu_record
from timing import write_results


def main(name, profiles, refit_samples=1024):
    teacher = kd_gan.pretrained(name)
    z = tf.random.stateless_normal((512, teacher.latent_dim), seed=(7, 1))
    target = teacher(z, training=False).numpy()
    rows = []
    for text in profiles:
        widths = tuple(int(width) for width in text.split("-"))
        for refit in (0, refit_samples):
            start = time.perf_counter()
            student = kd_gan.prune_generator(teacher, widths, refit_samples=refit)
            seconds = time.perf_counter() - start
            # Moving statistics first: a call in training mode updates them.
            errors = {mode: float(np.mean((student(z, training=mode == "batch").numpy() - target) ** 2)) for mode in ("moving", "batch")}
            rows.append({"widths": text, "refit_samples": refit, "mse_batch_statistics": errors["batch"],
                         "mse_moving_statistics": errors["moving"], "seconds": round(seconds, 2)})
    variance = float(target.var(axis=0).mean())
    print(f"teacher {name}: its images' variance around their mean {variance:.4f}; {cpu_label()}")
    print("| widths | refit samples | MSE (batch statistics) | MSE (moving statistics) | s |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['widths']} | {row['refit_samples']} | {row['mse_batch_statistics']:.4f} | "
              f"{row['mse_moving_statistics']:.4f} | {row['seconds']} |")
    write_results(f"benchmarks/results/probe_pruned_start_{name}.json", {"teacher": name, "test_latents": 512},
                  rows, teacher_variance=variance, cpu=cpu_record())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
