"""One exception type for every mistake a user can fix.

The command line turns a :class:`SlimnasError` into a single line on stderr and exit code 2; the library
raises it with a message that names the problem and what to do about it.
"""


class SlimnasError(ValueError):
    """A problem with the user's input (model, file, option): the message says what to fix."""


class BudgetUnreachable(SlimnasError):
    """A budget below what the smallest model of the space can do: no search can meet it, so raise the budget (or
    widen the space). Its own type so that a caller running many budgets can record this one and go on."""
