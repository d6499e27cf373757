"""The console of the command-line tools: kd_gan's own progress lines, not
the INFO chatter of the libraries beneath (tfds' readers and builders).

Warnings and errors of every library always show; `--verbosity=1` (absl's
DEBUG) shows everything.
"""

import logging
import os

from absl import logging as absl_logging

# Libraries whose INFO lines describe their own machinery, not the run.
QUIET_LIBRARIES = ("tensorflow_datasets",)


class LibraryInfoFilter(logging.Filter):
    """Drops INFO (and DEBUG) records logged from the code of `QUIET_LIBRARIES`
    unless absl's verbosity asks for debug output."""

    def filter(self, record):
        if record.levelno >= logging.WARNING or absl_logging.get_verbosity() >= absl_logging.DEBUG:
            return True
        path = os.path.normpath(record.pathname or "").split(os.sep)
        return not any(library in path for library in QUIET_LIBRARIES)


def quiet_libraries():
    """Installs `LibraryInfoFilter` (once) on absl's logger, which the libraries
    log through whichever handler prints (one a later import adds to the root
    logger too), and on absl's handler."""
    for target in (absl_logging.get_absl_logger(), absl_logging.get_absl_handler()):
        if not any(isinstance(f, LibraryInfoFilter) for f in target.filters):
            target.addFilter(LibraryInfoFilter())
