"""`python -m kd_gan.export` (kd_gan.export.converters)."""

from absl import app, flags

from kd_gan.export.converters import main as _main
from kd_gan.export import converters as _impl

__doc__ = _impl.__doc__  # The command's --help shows the implementation's usage.

if __name__ == "__main__":
    _impl.define_flags()
    flags.adopt_module_key_flags(_impl)
    app.run(_main)
