"""Errors the responder raises on purpose; each says what is wrong in words a user can act on."""

from __future__ import annotations


class ResponderError(Exception):
    """Base class for every error raised on purpose."""


class EventError(ResponderError):
    """An input event that cannot be understood: malformed, incomplete or of an unknown kind."""


class NotHandledError(EventError):
    """A well-formed AWS event of a kind the responder deliberately does not respond to (not what
    it subscribes to): said in one line, logged, never alerted as a rejected event."""


class RetryLaterError(Exception):
    """The work could not be done now and must be tried again: the invocation fails, so Lambda
    retries it (then sends it to the failure queue). Deliberately not a ResponderError, which a
    handler turns into a result."""


class RulesError(ResponderError):
    """A rules file that does not load or validate; the message names the file and the rule."""


class ConfigError(ResponderError):
    """A setting that is missing or invalid."""


class ClusterAccessError(ResponderError):
    """The cluster could not be reached or authenticated to."""
