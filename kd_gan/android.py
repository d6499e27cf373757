"""`python -m kd_gan.android` (kd_gan.export.android)."""

from absl import app, flags

from kd_gan.export.android import main as _main
from kd_gan.export import android as _impl

__doc__ = _impl.__doc__  # The command's --help shows the implementation's usage.

if __name__ == "__main__":
    _impl.define_flags()
    flags.adopt_module_key_flags(_impl)
    app.run(_main)
