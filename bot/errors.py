"""Refusals a user can cause; the message is a gettext msgid that handlers translate."""


class DomainError(Exception):
    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


class AccessDenied(DomainError):
    """The user is known but may not do this (another office, a role they lack)."""


class NotFound(DomainError):
    """What the user named does not exist, or not for them (never reveal which)."""
