"""FID, KID and precision/recall between two folders of images.

Folders or tars of PNG/JPEG (searched recursively, any one image size) go
through the standard FID Inception; the reference's statistics are cached by
the folder's content and saved as `.npz`, so later comparisons against it
skip its classifier pass
(`python -m kd_gan.evaluate --images=... --reference_images=reference.npz`,
the command line of the same function).

    python examples/evaluate_folders.py --images=samples/ --reference_images=real/ \\
        --inception_path=../shared/data/inception/fid_inception_v3
    python examples/evaluate_folders.py --tiny   # two small folders it writes, scored by the MNIST network

FIDs depend on the number of images: compare them only at equal counts (KID
does not). Writes `--output_dir/metrics.json` and `reference.npz`.
"""

import json
import os

import numpy as np
from absl import app, flags

from kd_gan.data import save_png
from kd_gan.evaluation import evaluate

flags.DEFINE_string("images", None, "Folder or tar of the images to score (e.g. a generator's samples).")
flags.DEFINE_string("reference_images", None, "Folder or tar of the real images.")
flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_integer("num_samples", None, "Score a seeded random subset of --images (default: all).")
flags.DEFINE_string("output_dir", "runs/evaluate_folders", "Where metrics.json and reference.npz go.")
flags.DEFINE_boolean("tiny", False, "Write two small folders of 28x28 images and score them with the MNIST network.")
FLAGS = flags.FLAGS


def write_tiny_folders(root, count=24):
    """Two folders of 28x28 grey images: bright squares on black, and noise."""
    rng = np.random.default_rng(0)
    for name in ("squares", "noise"):
        for index in range(count):
            image = np.zeros((28, 28, 1), np.uint8)
            if name == "squares":
                top, left = rng.integers(2, 14, 2)
                image[top : top + 12, left : left + 12] = 255
            else:
                image = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
            save_png(image, os.path.join(root, name, f"{index:03d}.png"))
    return os.path.join(root, "noise"), os.path.join(root, "squares")


def main(argv):
    del argv
    if FLAGS.tiny:
        candidate_path, reference_path = write_tiny_folders(os.path.join(FLAGS.output_dir, "folders"))
    elif FLAGS.images and FLAGS.reference_images:
        candidate_path, reference_path = FLAGS.images, FLAGS.reference_images
    else:
        raise app.UsageError("Give --images and --reference_images (or --tiny).")
    record = evaluate(
        # dataset="mnist" picks the MNIST network (it ships with the package); None, the FID Inception.
        dataset="mnist" if FLAGS.tiny else None, images=candidate_path, reference_images=reference_path,
        num_samples=FLAGS.num_samples, inception_path=FLAGS.inception_path,
        save_stats=os.path.join(FLAGS.output_dir, "reference.npz"),
    )
    with open(os.path.join(FLAGS.output_dir, "metrics.json"), "w") as file:
        json.dump(record, file, indent=2)
    for key in ("fid", "kid", "precision", "recall", "num_samples", "reference_count"):
        print(f"{key:<16} {record[key]}")
    print(f"Wrote {FLAGS.output_dir}/metrics.json")


if __name__ == "__main__":
    app.run(main)
