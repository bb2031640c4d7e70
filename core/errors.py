"""User-facing errors: one line saying what is wrong and what to do.

The CLI prints `str(err)` and exits with status 2; the GUI shows it in a dialog.
Anything else that escapes a job is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input the user can fix. The message says what to do."""

    exit_code = 2


class MediaError(UserError):
    """The file is not a usable video or audio file."""


class FaceError(UserError):
    """No usable face track in the clip."""


class ProjectError(UserError):
    """The project folder is missing, corrupt, from a newer version or already used."""


class CheckpointError(UserError):
    """A checkpoint is corrupt, unsafe, or belongs to another project or config."""
