"""The package's error type for user mistakes: bad values, bad or missing files.

The command-line entry points turn this type (and only this type) into a
one-line message; anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """A value or file given to kd_gan that it cannot use; the message names it and what is allowed."""
