"""The single exception type of :mod:`textmask`."""

__all__ = ["TextMaskError"]


class TextMaskError(ValueError):
    """Invalid input to a :mod:`textmask` function, or strict decoding failed.

    A ``ValueError`` subclass, so ``except ValueError`` catches it too.  The message
    says what was expected, what came, and how to fix it.
    """
