"""One exception type for every mistake a user can fix.

The command line turns a :class:`SlimnasError` into a single line on stderr and exit code 2; the library
raises it with a message that names the problem and what to do about it.
"""


class SlimnasError(ValueError):
    """A problem with the user's input (model, file, option): the message says what to fix."""
