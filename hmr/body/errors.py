"""Errors of the body-model layer."""


class BodyModelNotFoundError(FileNotFoundError):
    """A body model or regressor file the user pointed to does not exist."""


class KeypointSetUnavailableError(KeyError):
    """The body model has no definition for the requested keypoint set."""

    def __str__(self) -> str:
        return str(self.args[0])
