"""The one exception type the CLI turns into a single-line error and a non-zero exit."""


class AlmabenchError(Exception):
    """Bad input or a missing resource: the message is shown to the user as is, without a traceback."""
