"""textmask: anomaly masks written as text, the OmniAD way (format version 1).

A mask becomes a short string of grid-cell coordinates that a language model can
read and write, and a model's string becomes a mask again, tolerantly::

    >>> import numpy as np
    >>> from textmask import encode, decode
    >>> mask = np.zeros((512, 512), dtype=np.uint8)
    >>> mask[70:80, 90:140] = 255                # a scratch
    >>> encode(mask)
    '(3, 4)-(3, 6)'
    >>> decode("(3, 4)-(3, 6)").sum()            # a 24 x 24 boolean cell grid
    np.int64(3)
    >>> decode("(3, 4)-(3, 6)", shape=(512, 512)).shape
    (512, 512)

Grid geometry
-------------
A grid has ``rows x cols`` cells (default 24 x 24; any ``rows, cols >= 1``).  For an
``H x W`` mask, cell row ``r`` covers pixel rows ``floor(r*H/rows)`` up to but not
including ``floor((r+1)*H/rows)``; columns likewise.  Every pixel lies in exactly one
cell, whatever ``H``, ``W`` and the grid; when ``H < rows`` some cells cover no pixel.
The same geometry maps cells back to pixels for any target size.

Labelling a cell
----------------
A mask value is anomalous when it is non-zero (bool, 0/1, 0/255 and class-id masks
all work).  A cell is anomalous when its fraction of anomalous pixels is greater than
``threshold`` (default 0: any anomalous pixel marks the cell).  A cell that covers no
pixel is never anomalous.

Canonical text
--------------
Cells are scanned row-major.  Each maximal run of consecutive anomalous cells in one
row is written ``(r, c)`` when it has one cell and ``(r, c1)-(r, c2)`` otherwise
(``c1 < c2``).  Runs are joined by ``", "``; inside a pair the separator is ``", "``;
there is no trailing separator.  Indices are 0-based unless ``index_base=1``.  The
empty mask is the empty string.  Formally, with ``N`` a decimal number without
leading zeros::

    text  := ""  |  run (", " run)*
    run   := pair  |  pair "-" pair          (same row, first column < second)
    pair  := "(" N ", " N ")"

``decode(encode(m))`` equals the patchified ``m`` and ``encode(decode(t)) == t`` for
every canonical ``t``.

Strict decoding
---------------
``decode(text, strict=True)`` accepts exactly the canonical texts, except that any
amount of ASCII whitespace (space, tab, line feed, carriage return, vertical tab,
form feed) may stand between tokens and around the text.  Runs must lie inside the grid, in row-major
order, and be maximal (two runs of one row are separated by at least one normal
cell).  Anything else raises :class:`TextMaskError` naming the character offset of
the first problem.

Tolerant decoding (the default)
-------------------------------
Model output is untrusted; tolerant decoding never raises on any ``str`` and reads
every *pair* and *run* it can find, ignoring everything else:

- a pair is ``(`` or ``[``, a row number, a comma or whitespace, a column number, and
  ``)`` or ``]``, with whitespace allowed around each number; a number is ASCII
  digits, optionally preceded by ``-`` (a negative number is outside the grid);
- a run is a pair, or two pairs joined by a range mark ``-``, ``–`` (en dash),
  ``—`` (em dash), ``~`` or ``to`` with optional whitespace around it;
- runs may be separated by ``,``, ``;``, line breaks, anything or nothing;
- a same-row run covers the columns between its two ends, in either order;
- a run across rows, ``(r1, c1)-(r2, c2)`` with ``r1 != r2``, covers the cells
  between its ends in row-major scan order: row ``r1`` from ``c1`` to the right edge,
  the full rows between, and row ``r2`` from the left edge to ``c2`` (ends given
  last-first are swapped);
- of each run, the part inside the grid is kept and the rest dropped; duplicates and
  overlaps are united;
- anything that is not a pair or a run (prose, ``none``, ``no anomaly``, broken
  pairs) yields no cells.

Decoding takes time linear in the text and memory bounded by the grid: numbers are
saturated at ``2**31 - 1`` while being read and each run is kept as one interval of
cell indices, so ``(0, 0)-(0, 99999999999)`` or a megabyte of junk is cheap.  With
``report=True``, :func:`decode` also returns a :class:`DecodeReport`: runs read, runs
partly or wholly outside the grid, cells dropped, characters skipped, and the offset
of the first skipped or dropped item.

Size limits
-----------
Shapes are untrusted input too (a CLI argument, a dataset field): every pixel shape
``(H, W)`` a function takes (``decode(..., shape=)``, :func:`unpatchify`,
:func:`area`, :func:`decode_batch`, the shape of a mask array) must have sides in ``[1, MAX_SIDE]``
(``MAX_SIDE = 2**31 - 1``) and ``H * W <= max_pixels()``, and a batch call's output
(``N x H x W`` pixels or ``N x rows x cols`` cells) at most ``max_pixels()`` elements;
anything larger raises :class:`TextMaskError` before any memory is allocated.
Mask arrays are checked the same way, before any copy of them is made.
``max_pixels()`` is ``2**31`` by default: a 2 GiB ``bool`` mask, some 46000 x 46000
pixels, far beyond any inspection image, while ``(100000, 100000)`` (10 GB) or a
shape that would overflow the 64-bit cell edges is refused with a message.  Raise it
with ``set_max_pixels(n)`` (per process) when the memory is there, or avoid pixel
masks altogether: decode to cells and score with :class:`GroundTruth`, which is exact
at pixel level without building one.  Cell grids hold at most
``textmask.grid.MAX_CELLS`` (``2**24``) cells, and cell indices of runs are below it.

Scores and rewards
------------------
:func:`score` compares a predicted cell set (or seg text) with a ground-truth mask at
the ground truth's own pixel resolution (exactly: the predicted region is the union
of the predicted cells' pixels) or at cell level.  :func:`detection_reward` is the
OmniAD detection accuracy reward: 1 when the ground truth is empty and the text names
no cell, 0 when the ground truth is empty and the text names a cell (even one covering
no pixel of a mask smaller than the grid), else ``alpha * F1`` (``alpha = 2``).  A
:class:`GroundTruth` holds per-cell counts computed once, so the completions of one
prompt share the precomputation.  :func:`score` returns :class:`Scores`, the confusion
counts with their ratios and the number of cells the prediction names;
``Scores.reward`` and the batch reward share one definition, so
``score(t, m).reward() == detection_reward(t, m)`` for every text and mask.
"""

from textmask._errors import TextMaskError
from textmask._limits import MAX_SIDE, max_pixels, set_max_pixels
from textmask.codec import (
    DecodeReport,
    cells_to_runs,
    decode,
    decode_batch,
    encode,
    encode_batch,
    is_canonical,
    patchify,
    runs_to_cells,
    runs_to_text,
    text_to_runs,
    unpatchify,
)
from textmask.fidelity import codec_fidelity, defect_masks
from textmask.grid import Grid
from textmask.metrics import Scores, area, f1, iou, precision, recall, score
from textmask.regions import REGIONS, region, region_of
from textmask.reward import GroundTruth, detection_reward, detection_rewards
from textmask.warmup import warmup

__version__ = "0.1.0"
FORMAT_VERSION = 1

__all__ = [
    "FORMAT_VERSION",
    "MAX_SIDE",
    "REGIONS",
    "DecodeReport",
    "Grid",
    "GroundTruth",
    "Scores",
    "TextMaskError",
    "area",
    "cells_to_runs",
    "codec_fidelity",
    "decode",
    "decode_batch",
    "defect_masks",
    "detection_reward",
    "detection_rewards",
    "encode",
    "encode_batch",
    "f1",
    "iou",
    "is_canonical",
    "max_pixels",
    "patchify",
    "precision",
    "recall",
    "region",
    "region_of",
    "runs_to_cells",
    "runs_to_text",
    "score",
    "set_max_pixels",
    "text_to_runs",
    "unpatchify",
    "warmup",
]
