"""The one exception type that means "the user can fix this".

The CLI turns it into a one-paragraph message and a non-zero exit; everything else is a bug and
keeps its traceback so it can be reported.
"""


class UserError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do."""
