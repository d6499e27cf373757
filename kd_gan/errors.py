"""The package's error type for user mistakes: bad values, bad or missing files.

The command-line entry points turn this type (and only this type) into a
one-line message; anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """A value or file given to kd_gan that it cannot use; the message names it and what is allowed."""


def check_integer(name, value, minimum, label=None):
    """`value` when it is an integer (not a bool) >= `minimum`; else an `InputError`
    naming it (`label`, default `name`) and the value received."""
    import numpy as np  # Kept local: this module is imported by everything, numpy by most.

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{label or name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)
