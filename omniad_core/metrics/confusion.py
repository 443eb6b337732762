"""Binary confusion counts and their ratios, with the package convention ``0 / 0 == 1``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omniad_core.metrics._common import ratio

__all__ = ["Confusion", "confusion_from"]


@dataclass(frozen=True)
class Confusion:
    """Binary confusion counts and their ratios (fractions in [0, 1]).

    Ratios with a zero denominator are 1.0.  Counts add with ``+``.

    Examples
    --------
    >>> c = Confusion(tp=2, fp=1, fn=1, tn=6)
    >>> c.f1, c.accuracy, c.precision, c.recall
    (0.6666666666666666, 0.8, 0.6666666666666666, 0.6666666666666666)
    >>> (c + Confusion(tn=10)).total
    20
    >>> Confusion(tn=5).f1          # nothing to find, nothing predicted
    1.0
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        if not isinstance(other, Confusion):
            return NotImplemented
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of samples counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``."""
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``."""
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1.0 when ``tp + fp + fn == 0``."""
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        """``(tp + tn) / total``; 1.0 when nothing was counted."""
        return ratio(self.tp + self.tn, self.total)


def confusion_from(c: Sequence[int]) -> Confusion:
    return Confusion(int(c[0]), int(c[1]), int(c[2]), int(c[3]))
