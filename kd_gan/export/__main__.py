"""`python -m kd_gan.export`: a generator to SavedModel / `.tflite`, verified."""

from kd_gan.export.converters import cli

if __name__ == "__main__":
    cli()
