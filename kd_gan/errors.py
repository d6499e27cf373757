"""The package's error type for user mistakes: bad values, bad or missing files.

The command-line entry points turn this type into a one-line message, and
so the errors of the machine a user can fix (`machine_error_message`: a full
disk, a read-only or unwritable folder); anything else is a bug and keeps its
traceback.
"""

import errno

# OSErrors a user fixes on their machine, not in kd_gan: no space, no permission, a read-only
# file system, a path through a file, a folder where a file belongs.
MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR)


class InputError(ValueError):
    """A value or file given to kd_gan that it cannot use; the message names it and what is allowed."""


def check_integer(name, value, minimum, label=None):
    """`value` when it is an integer (not a bool) >= `minimum`; else an `InputError`
    naming it (`label`, default `name`) and the value received."""
    import numpy as np  # Kept local: this module is imported by everything, numpy by most.

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{label or name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def machine_error_message(error):
    """One line for an OSError of `MACHINE_ERRNOS` (naming the path), None for any other error."""
    if not isinstance(error, OSError) or error.errno not in MACHINE_ERRNOS:
        return None
    where = f": {error.filename}" if error.filename else ""
    hint = " Free some space and rerun: the run resumes." if error.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{error.strerror or error}{where}.{hint}"
