"""`python -m kd_gan.android`: Kotlin for a `.tflite` generator (`kd_gan.export.android`)."""

from kd_gan.export.android import cli

if __name__ == "__main__":
    cli()
