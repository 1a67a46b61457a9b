"""Outcomes of use cases that the edge turns into HTTP answers."""


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


class Unavailable(Exception):
    """Try again later: nothing is lost, the retry completes the work."""


class InvalidRequest(ValueError):
    """The request is well-formed but asks for something that cannot be done as asked."""
