"""The root of our failures, in the lowest layer so that every package raises under it:
schemas/ itself (a code pattern no code can be made from), runtime/, the parts, deploy/
and the command line. runtime/errors.py holds the rest of the tree: which failures of
the libraries each of ours is, and which are worth retrying."""


class CouponsError(Exception):
    """The root of our failures."""

    retriable: bool = False  # the same operation, tried again later, may succeed


class BadInput(CouponsError):
    """What was given cannot be used as it is: a setting, a file, an argument, a pattern.
    The same input gets the same answer: it is corrected, never retried."""
