"""Binary confusion counts and their ratios, with the package convention ``0 / 0 == 1``.

:class:`Confusion` is :class:`textmask.Scores`, the one confusion-count type of the
toolkit, under the name the metrics have always used: a textmask score, a detection
meter's pooled counts and a threshold's counts are the same objects, and they add.

Examples
--------
>>> import textmask
>>> Confusion is textmask.Scores
True
>>> c = Confusion(tp=2, fp=1, fn=1, tn=6)
>>> c.f1, c.accuracy, c.precision, c.recall
(0.6666666666666666, 0.8, 0.6666666666666666, 0.6666666666666666)
>>> (c + Confusion(tn=10)).total
20
>>> Confusion(tn=5).f1          # nothing to find, nothing predicted
1.0
"""

from __future__ import annotations

from textmask import Scores as Confusion

__all__ = ["Confusion"]
