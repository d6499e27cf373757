"""Score a saved generator, or real images of a split, with the standard metrics.

    python -m kd_gan.evaluate --dataset=mnist --generator=runs/mnist_mse/student.keras \\
        --num_samples=10000 --output=metrics.json
    python -m kd_gan.evaluate --dataset=cifar10 --real_split=train[:5000] \\
        --reference_split=train[5000:10000] --num_samples=5000 --inception_path=../shared/data/inception/fid_inception_v3

Prints a table and writes JSON with the classifier used and the sample count.
FID is against `--reference_split` of the same data set (its first
`--num_samples` images; default: the experiment's reference, MNIST test or
CIFAR-10 / CelebA train; MNIST train when scoring MNIST test itself),
with real-data activations cached under `$KD_GAN_CACHE_DIR/stats`.
"""

import json
import os

from absl import app, flags

from kd_gan import data

flags.DEFINE_enum("dataset", None, list(data.DATASETS), "Data set the images belong to.", required=True)
flags.DEFINE_string("generator", None, "A generator to score (.keras or SavedModel dir).")
flags.DEFINE_string("real_split", None, "Score real images of this split instead of a generator.")
flags.DEFINE_string("reference_split", None, "Real split FID is measured against (default: mnist test, cifar10/celeb_a train).")
flags.DEFINE_integer("num_samples", 10_000, "Images scored (and reference images); FID depends on it.", lower_bound=2)
flags.DEFINE_string("output", "metrics.json", "JSON output path.")
flags.DEFINE_string("data_dir", None, "Local data (default: $KD_GAN_DATA_DIR, else tfds download).")
flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
FLAGS = flags.FLAGS


def evaluate(dataset, num_samples, generator_path=None, real_split=None, reference_split=None,
             data_dir=None, inception_path=None, seed=0):
    """The metric record of a generator or of a real split (see module doc)."""
    from kd_gan import metrics, models, report

    if (generator_path is None) == (real_split is None):
        raise ValueError("Give exactly one of generator_path (--generator) and real_split (--real_split).")
    if reference_split is None:
        reference_split = report.REFERENCE_SPLITS[dataset]  # As in the experiment's results.
        if real_split is not None and real_split.split("[")[0] == reference_split:
            if dataset != "mnist":
                raise ValueError(
                    f"real_split={real_split!r} overlaps the default reference split {reference_split!r}: "
                    "pass a disjoint --reference_split (e.g. train[:5000] against train[5000:10000])."
                )
            reference_split = "train"
    classifier = metrics.classifier_for(dataset, inception_path, data_dir)
    reference, _, _ = metrics.real_activations(classifier, dataset, reference_split, num_samples, data_dir)
    if generator_path is not None:
        record, _ = metrics.evaluate_generator(models.load_generator(generator_path), classifier, reference, num_samples, seed)
        record["generator"] = os.path.abspath(generator_path)
    else:
        activations, logits, vol = metrics.real_activations(classifier, dataset, real_split, num_samples, data_dir)
        record = metrics.quality(activations, logits, vol, classifier, reference, num_samples)
        record["real_split"] = real_split
    record.update(dataset=dataset, reference_split=reference_split)
    if isinstance(classifier, metrics.MnistClassifier):
        record["classifier_test_accuracy"] = classifier.test_accuracy
    return record


def main(argv):
    del argv
    record = evaluate(
        FLAGS.dataset, FLAGS.num_samples, FLAGS.generator, FLAGS.real_split, FLAGS.reference_split,
        FLAGS.data_dir, FLAGS.inception_path, FLAGS.seed,
    )
    for key, value in record.items():
        print(f"{key:<28} {value}")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as file:
        json.dump(record, file, indent=2)
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
