"""Score images against a reference: FID, KID, precision/recall, score, VoL.

Image folders (or tar archives of PNG/JPEG, searched recursively) against
another folder, tar or saved statistics:

    python -m kd_gan.evaluate --images=samples/ --reference_images=real/ \\
        --inception_path=../shared/data/inception/fid_inception_v3
    python -m kd_gan.evaluate --reference_images=real/ --save_stats=real.npz   # statistics only
    python -m kd_gan.evaluate --images=samples/ --reference_images=real.npz

A generator (`.keras`, SavedModel folder, or `.tflite` run by LiteRT, so the
number is that of the file shipped to phones), or real images of a split,
against a data set's reference split:

    python -m kd_gan.evaluate --dataset=mnist --generator=runs/mnist_mse/student.keras --num_samples=10000
    python -m kd_gan.evaluate --dataset=cifar10 --generator=student_int8.tflite --data_dir=../shared/data

The reference is all images of the reference split or folder (the standard
protocol; `--reference_samples=N` takes a seeded random subset), its
statistics cached under `$KD_GAN_CACHE_DIR/stats` (a stopped pass resumes from
the progress it saves there every 5 minutes). Folders are scored with
the FID Inception (`--dataset=mnist`: the MNIST classifier, on grey 28x28
images); images of any size go through its resize to 299x299; grey is tiled to
RGB. Prints a table and writes JSON (`--output`).
"""

import os

from absl import app, flags

from kd_gan.evaluation import classifiers
from kd_gan.data import loading as data
from kd_gan.models import any_generator
from kd_gan.evaluation import scoring
from kd_gan.evaluation.classifiers import INCEPTION_ENGINES, INCEPTION_PRECISIONS
from kd_gan.errors import InputError, machine_error_message
from kd_gan._io import write_json

FLAGS = flags.FLAGS

DEFAULT_GENERATOR_SAMPLES = 10_000


def define_flags():
    """The command line's flags (defined only when run as a script: importing
    the module defines none, so other scripts may use these names)."""
    flags.DEFINE_enum("dataset", None, list(data.DATASETS), "Data set of the generator / real split (and of the reference split).")
    flags.DEFINE_string("generator", None, "A generator to score: .keras, SavedModel folder, or .tflite.")
    flags.DEFINE_string("images", None, "A folder or tar of PNG/JPEG images to score.")
    flags.DEFINE_string("real_split", None, "Score real images of this split of --dataset.")
    flags.DEFINE_string("reference_images", None, "Reference: a folder, tar, or .npz of saved statistics (default: --dataset's reference split).")
    flags.DEFINE_string("reference_split", None, "Reference split of --dataset (default: mnist test, cifar10/celeb_a train).")
    flags.DEFINE_enum("image_size", None, ["32", "64"], "Image size of --dataset=images (its reference split is the converted folder given as --data_dir).")
    flags.DEFINE_integer("reference_samples", None, "Seeded random subset of the reference (default: all of it).", lower_bound=2)
    flags.DEFINE_integer("num_samples", None, "Images scored: generator samples (default 10,000), or a seeded random subset of --images / --real_split (default all).", lower_bound=2)
    flags.DEFINE_string("save_stats", None, "Write the reference's statistics to this .npz (reuse it as --reference_images).")
    flags.DEFINE_string("output", "metrics.json", "JSON output path.")
    flags.DEFINE_string("data_dir", None, "Local data (default: $KD_GAN_DATA_DIR, else tfds download).")
    flags.DEFINE_string("inception_path", None, "Local FID Inception SavedModel (default: $KD_GAN_INCEPTION, else TF-Hub).")
    flags.DEFINE_enum("inception_precision", "auto", list(INCEPTION_PRECISIONS), "FID Inception pass: auto (bfloat16 on CPUs with bfloat16 units (AMX, AVX512-BF16), else float32; $KD_GAN_INCEPTION_PRECISION), float32 or bfloat16 (FID within 0.5% of float32's: docs/EVALUATION.md).")
    flags.DEFINE_enum("inception_engine", "auto", list(INCEPTION_ENGINES), "What runs the FID Inception: auto (OpenVINO on a CPU where installed, else TensorFlow; $KD_GAN_INCEPTION_ENGINE), tensorflow or openvino.")
    flags.DEFINE_integer("seed", 0, "Seed of the latent vectors and of random subsets.")


def reference_statistics(classifier, dataset=None, reference_images=None, reference_split=None,
                         reference_samples=None, data_dir=None, seed=0, image_size=None):
    """The reference's `ImageStatistics`: saved `.npz`, folder/tar, or a data set's split."""
    if reference_images is not None:
        if reference_images.endswith(".npz"):
            return scoring.ImageStatistics.load(reference_images)
        return scoring.folder_statistics(classifier, reference_images, reference_samples, seed)
    if dataset is None:
        raise InputError("Give a reference: --reference_images (folder, tar or .npz) or --dataset (its reference split).")
    split = reference_split or scoring.REFERENCE_SPLITS[dataset]
    return scoring.dataset_statistics(classifier, dataset, split, reference_samples, data_dir, seed=seed, image_size=image_size)


def evaluate(dataset=None, num_samples=None, generator_path=None, real_split=None, reference_split=None,
             data_dir=None, inception_path=None, seed=0, images=None, reference_images=None,
             reference_samples=None, save_stats=None, image_size=None, inception_precision="auto", inception_engine="auto"):
    """The metric record of a generator, an image folder or a real split against a reference (see module doc).

    With no candidate (`generator_path`, `images`, `real_split` all None) and
    `save_stats`, computes and saves the reference's statistics only.
    """
    given = {"--generator": generator_path, "--images": images, "--real_split": real_split}
    candidates = [flag for flag, value in given.items() if value is not None]
    if len(candidates) > 1:
        raise InputError(f"Give at most one of --generator, --images and --real_split; got {', '.join(candidates)}.")
    if not candidates and save_stats is None:
        raise InputError("Nothing to score: give --generator, --images or --real_split (or --save_stats to only save the reference's statistics).")
    if (generator_path or real_split) and dataset is None:
        raise InputError("--generator and --real_split need --dataset (it picks the classifier and the reference split).")
    if real_split is not None and reference_images is None:
        reference = reference_split or scoring.REFERENCE_SPLITS[dataset]
        same_split = reference.split("[")[0] == real_split.split("[")[0]
        # A whole split overlaps any slice of it; slices are the user's to keep disjoint.
        if same_split and (reference == real_split or "[" not in reference or "[" not in real_split):
            if dataset != "mnist" or reference_split is not None:
                raise InputError(
                    f"real_split={real_split!r} overlaps the reference split {reference!r}: "
                    "pass a disjoint --reference_split (e.g. train[:50%] against train[50%:])."
                )
            reference_split = "train"  # MNIST test's own reference: MNIST train.
    classifier = (
        classifiers.classifier_for(dataset, inception_path, inception_precision, inception_engine)
        if dataset
        else classifiers.InceptionClassifier(inception_path, inception_precision, inception_engine)
    )
    reference = reference_statistics(
        classifier, dataset, reference_images, reference_split, reference_samples, data_dir, seed, image_size
    )
    record = {}
    if save_stats:
        record["saved_stats"] = reference.save(save_stats)
    score_name = classifier.score_name
    if generator_path is not None:
        count = num_samples or DEFAULT_GENERATOR_SAMPLES
        generator = any_generator.load_generator(generator_path)
        record.update(scoring.evaluate_generator(generator, classifier, reference, count, seed))
        record["generator"] = os.path.abspath(generator_path)
    elif images is not None:
        candidate = scoring.folder_statistics(classifier, images, num_samples, seed, cache=False)
        record.update(scoring.quality(candidate, reference, score_name), images=candidate.source)
    elif real_split is not None:
        candidate = scoring.dataset_statistics(classifier, dataset, real_split, num_samples, data_dir, seed=seed, image_size=image_size)
        record.update(scoring.quality(candidate, reference, score_name), real_split=real_split)
    else:
        record.update(reference=reference.source, reference_count=reference.count, classifier=reference.network)
    if dataset:
        record["dataset"] = dataset
    if isinstance(classifier, classifiers.MnistClassifier):
        record["classifier_test_accuracy"] = classifier.test_accuracy
    else:  # The Inception pass that computed the features (also in the classifier's name).
        record.update(inception_engine=classifier.engine, inception_precision=classifier.precision)
    return record


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        record = evaluate(
            FLAGS.dataset, FLAGS.num_samples, FLAGS.generator, FLAGS.real_split, FLAGS.reference_split,
            FLAGS.data_dir, FLAGS.inception_path, FLAGS.seed, FLAGS.images, FLAGS.reference_images,
            FLAGS.reference_samples, FLAGS.save_stats, int(FLAGS.image_size) if FLAGS.image_size else None,
            FLAGS.inception_precision, FLAGS.inception_engine,
        )
    except (InputError, FileNotFoundError) as error:
        raise SystemExit(f"Error: {error}") from None
    except OSError as error:  # A full disk, an unwritable folder: one line; other OSErrors are bugs.
        if machine_error_message(error) is None:
            raise
        raise SystemExit(f"Error: {machine_error_message(error)}") from None
    for key, value in record.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value
        print(f"{key:<28} {shown}")
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    write_json(FLAGS.output, record)
    print(f"Wrote {FLAGS.output}")


def cli():
    """`python -m kd_gan.evaluate`: defines its flags, then runs `main`."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
