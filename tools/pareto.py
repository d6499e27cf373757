"""The Pareto front of quality against size over run folders
(`kd_gan.experiment.pareto`): prints the markdown table and writes
pareto_<metric>.md/.json/.png.

    python tools/pareto.py runs/a runs/b --metric=fid --output=runs/pareto
"""

from absl import app, flags

from kd_gan.errors import InputError
from kd_gan.experiment.pareto import write_front

flags.DEFINE_string("output", None, "Folder for pareto_<metric>.md/.json/.png (default: the first run folder).")
flags.DEFINE_string("metric", "fid", "fid, kid, or the data set's score (inception_score, mnist_score).")
FLAGS = flags.FLAGS


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("Give the run folders: python tools/pareto.py runs/a runs/b [--metric=fid] [--output=DIR]")
    try:
        print(write_front(run_dirs, FLAGS.output or run_dirs[0], FLAGS.metric))
    except InputError as error:
        raise SystemExit(f"Error: {error}") from None


if __name__ == "__main__":
    app.run(main)
