"""The exceptions that mean "the user can fix this".

The CLI turns any of them into a one-paragraph message and exit code 2; the HTTP API maps each
kind to its status code through one table (`HTTP_STATUS`), so no handler has to guess or re-run a
query to choose one. Everything else is a bug and keeps its traceback so it can be reported.
"""


class UserError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do."""


class NotFound(UserError):
    """A named thing (species, gene, model, mapping table, file) does not exist."""


class Ambiguous(UserError):
    """A name matches several things (a symbol shared by genes, several models); the message lists them."""


class Invalid(UserError):
    """Input that exists but cannot be used as given (malformed file, bad option value, mixed spaces)."""


class Unavailable(UserError):
    """Something needed is not there right now (weights, a store lock, a server, disk space)."""


#: HTTP status for each kind; the most specific class wins (a plain UserError is a bad request).
HTTP_STATUS: dict[type[UserError], int] = {
    NotFound: 404,
    Ambiguous: 400,
    Invalid: 422,
    Unavailable: 503,
    UserError: 400,
}


def http_status(error: UserError) -> int:
    """Status code of `error`'s kind, walking its class hierarchy so subclasses inherit their parent's."""
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 400
