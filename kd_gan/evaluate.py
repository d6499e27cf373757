"""`python -m kd_gan.evaluate`: FID / KID / precision-recall of folders, tars,
`.npz` statistics and generators (`kd_gan.evaluation.cli`)."""

from kd_gan.evaluation.cli import cli

if __name__ == "__main__":
    cli()
