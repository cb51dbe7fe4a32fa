"""The exceptions that mean "the user can fix this".

Each carries, where one parameter is at fault, its name, the value given and what is allowed (as
pyhmmer's `InvalidParameter` does), so every front end names the parameter in its own words: the
Python API as `sensitivity=100`, the CLI as `--sensitivity 100`, HTTP as the field. The CLI turns
any of them into a one-paragraph message and exit code 2; the HTTP API maps each kind to its
status code through one table (`HTTP_STATUS`), so no handler has to guess or re-run a query to
choose one. Everything else is a bug and keeps its traceback so it can be reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any

#: Marks "no value given" apart from a value that is None.
_UNSET: Any = object()


class UserError(Exception):
    """A problem with the user's input, files or environment, with a message saying what to do.

    `param` names the function parameter at fault (None when no single one is), `value` is what
    was given, `choices` what is allowed, `hint` what to do next.
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        value: Any = _UNSET,
        choices: Iterable[object] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.value = value
        self.choices = tuple(choices) if choices is not None else None
        self.hint = hint

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET

    def render(self, name_of: Callable[[str], str | None] | None = None) -> str:
        """The message, led by the parameter as the caller spells it.

        `name_of(param)` gives that spelling (`--max-evalue` on the command line); where it gives
        None, or no `name_of` is passed, it is the Python keyword with the value as in a call.
        """
        parts = []
        if self.param is not None:
            spelled = name_of(self.param) if name_of is not None else None
            if spelled is None:
                shown = str(self.value) if isinstance(self.value, PurePath) else self.value  # not PosixPath('...')
                named = f"{self.param}={shown!r}" if self.has_value else self.param
            else:
                named = spelled + (f" {self.value}" if self.has_value else "")
            parts.append(f"{named}: {self.message}")
        else:
            parts.append(self.message)
        if self.choices:
            parts.append(f"Choose from: {', '.join(str(choice) for choice in self.choices)}.")
        if self.hint:
            parts.append(self.hint)
        return " ".join(parts)

    def __str__(self) -> str:
        return self.render()


class NotFound(UserError):
    """A named thing (species, gene, model, mapping table, file) does not exist."""


class Ambiguous(UserError):
    """A name matches several things (a symbol shared by genes, several models); the message lists them."""


class Invalid(UserError, ValueError):
    """Input that exists but cannot be used as given (malformed file, bad option value, mixed spaces).

    A `ValueError` too, so code that guards a call with `except ValueError` keeps working.
    """


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
