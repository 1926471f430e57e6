"""User-facing errors.

Every failure a user can cause (bad file, no face, wrong checkpoint, corrupt
bitstream) raises a subclass of :class:`FaceVid2VidError`. The CLI prints its
message as one line on stderr and exits non-zero; it never shows a traceback.
"""


class FaceVid2VidError(Exception):
    """Base class of errors caused by inputs, with a message meant for users."""


class InputError(FaceVid2VidError):
    """An input file is missing, unreadable, empty or of the wrong kind."""


class NoFaceError(FaceVid2VidError):
    """No face was found where one is needed."""


class CheckpointError(FaceVid2VidError):
    """A checkpoint is missing, unreadable or does not match the model."""


class BitstreamError(FaceVid2VidError):
    """A .fv2v bitstream is corrupt, truncated or made for another model."""


class DataError(FaceVid2VidError):
    """Sample data cannot be fetched or fails its checksum."""


class UsageError(InputError):
    """A command-line argument is out of range or cannot be satisfied here (exit code 2)."""


class OutputError(UsageError):
    """An output path cannot be used: wrong extension, a folder, unwritable, or one of the inputs."""
