"""`python -m kd_gan.evaluate` (kd_gan.evaluation.cli)."""

from absl import app, flags

from kd_gan.evaluation.cli import main as _main
from kd_gan.evaluation import cli as _impl

__doc__ = _impl.__doc__  # The command's --help shows the implementation's usage.

if __name__ == "__main__":
    _impl.define_flags()
    flags.adopt_module_key_flags(_impl)
    app.run(_main)
