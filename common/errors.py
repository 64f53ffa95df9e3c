"""The package's one error type for bad input.

Readers raise `DataError` with a message that names the file and the field (and the
index where there is one); the scripts catch it at the command-line edge and print
that one line instead of a traceback.
"""


class DataError(ValueError):
    """Bad or inconsistent input data: a missing field, a wrong shape, a stale cache."""

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        self.message = message  # without the path, for a caller that adds to it
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __reduce__(self):  # from a worker process: the path and message stay apart
        return type(self), (self.message, self.path)
