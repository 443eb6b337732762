"""Which MMAD questions a run evaluates: the full benchmark, a held-out split, no leakage.

A comparable MMAD figure states its protocol (``docs/method.md``): the full benchmark
or a held-out split (and which), 0-shot or 1-shot, and whether any test image was in
the training data.  :class:`EvalProtocol` makes each of these a recorded setting of the
run (in ``run.json``'s fingerprint, printed in the report), never a silent one:

- **held-out split** by image, from a fraction and a seed: an image is held out when
  :func:`split_value` of its MMAD key (the path in ``mmad.json``) is below the fraction.
  The value is a hash of the rule name, the seed and the key only, so an image's side
  never depends on the other images, on ``--categories`` or ``--limit``, or on the
  machine; every question of an image is on the same side.  The complement (the images
  to train on) is ``split_value(key, seed) >= fraction``;
- **split file**: a text file of image paths, one a line (MMAD keys such as
  ``MVTec-AD/bottle/test/good/000.png``, or absolute paths; blank lines and ``#``
  comments are ignored);
- **training images** of a folder written by ``omniad-train prepare``: its training split
  (the rows of ``.work/records.jsonl``, split again exactly as ``prepare`` split them and
  checked against ``manifest.json``'s counts) gives every image it trained on.  A test
  image matches one of them when it is the same MMAD entry (the row's id is
  ``mmad:<key>#k``), the same file (real path), or a file with the same bytes (e.g.
  MMAD's copy of an MVTec AD image that the training set read from an MVTec folder).
  Matches are *excluded* (left out and counted) or *refused* (the run stops before any
  work, naming them).

>>> round(split_value("MVTec-AD/bottle/test/good/000.png", 0), 6)
0.859725
>>> in_holdout("MVTec-AD/bottle/test/good/000.png", 0.8, 0)
False
>>> normalize_key("./MVTec-AD\\\\bottle/test/good/000.png")
'MVTec-AD/bottle/test/good/000.png'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omniad_train.data.output import split_rows
from omniad_train.evaluation.execution import Item

__all__ = [
    "SPLIT_RULE",
    "EvalProtocol",
    "TrainingImages",
    "TrainingOverlapError",
    "in_holdout",
    "load_training_images",
    "normalize_key",
    "protocol_text",
    "read_split_file",
    "split_value",
]

#: The name of the held-out split rule (part of every hash, recorded in run.json).
SPLIT_RULE = "omniad-mmad-split/1"


class TrainingOverlapError(ValueError):
    """Test images appear in a training set and the run was asked to refuse them."""


def normalize_key(path: str) -> str:
    """An image path as MMAD keys are written: ``/`` separators, no leading ``./``."""
    key = path.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def split_value(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by the rule, the seed and the image's MMAD key only.

    ``sha256("omniad-mmad-split/1:<seed>:<key>")``, its first 8 bytes as a big-endian
    integer divided by 2**64.
    """
    digest = hashlib.sha256(f"{SPLIT_RULE}:{int(seed)}:{normalize_key(key)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_holdout(key: str, fraction: float, seed: int) -> bool:
    """Whether the image is in the held-out (evaluated) part of the split."""
    return split_value(key, seed) < fraction


def read_split_file(path: str | os.PathLike[str]) -> tuple[frozenset[str], str]:
    """The image paths of a split file (normalized) and the file's SHA-256."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot read the split file {p} ({exc.strerror or exc}); give a text file of "
            "image paths, one a line"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"the split file {p} is not UTF-8 text; give a text file of image paths, one a line"
        ) from None
    entries = set()
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            entries.add(normalize_key(entry))
    if not entries:
        raise ValueError(f"the split file {p} lists no image path; give one path a line")
    return frozenset(entries), hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- training sets
def _file_digest(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _real(path: str) -> str:
    return os.path.realpath(path)


@dataclass
class TrainingImages:
    """The images a prepared dataset trains on, and how to recognise them.

    Attributes
    ----------
    folder : Path
        The prepared dataset folder.
    fingerprint : str or None
        Its ``manifest.json`` fingerprint (recorded in the run's settings).
    mmad_keys : frozenset of str
        MMAD keys of its rows that came from an ``mmad.json``.
    paths : frozenset of str
        Real paths of its source images.
    n_images, n_rows : int
        Images and rows of the training split.
    """

    folder: Path
    fingerprint: str | None
    mmad_keys: frozenset[str]
    paths: frozenset[str]
    n_images: int
    n_rows: int
    _by_size: dict[int, list[str]] = field(default_factory=dict, repr=False)
    _digests: dict[str, str | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for p in self.paths:
            try:
                size = os.stat(p).st_size
            except OSError:
                continue  # moved or deleted since: only the key and the path can match
            self._by_size.setdefault(size, []).append(p)

    def _digest(self, path: str) -> str | None:
        if path not in self._digests:
            self._digests[path] = _file_digest(path)
        return self._digests[path]

    def match(self, key: str, image: str | None) -> str | None:
        """Why the test image ``key`` (file ``image``) is a training image, or None."""
        if normalize_key(key) in self.mmad_keys:
            return f"the same MMAD entry is in the training set {self.folder}"
        if image is None:
            return None
        real = _real(image)
        if real in self.paths:
            return f"the same file is in the training set {self.folder}"
        try:
            size = os.stat(real).st_size
        except OSError:
            return None
        same_size = self._by_size.get(size)
        if not same_size:
            return None
        mine = _file_digest(real)
        for other in same_size:
            if mine is not None and self._digest(other) == mine:
                return f"the same image as {other} of the training set {self.folder}"
        return None

    def to_setting(self) -> dict[str, Any]:
        """What run.json records about it."""
        return {
            "folder": str(self.folder),
            "manifest_fingerprint": self.fingerprint,
            "training_images": self.n_images,
        }


def _bad_folder(folder: Path, what: str) -> ValueError:
    return ValueError(
        f"cannot tell which images {folder} trains on: {what}; give a folder written by "
        "`omniad-train prepare` (it holds manifest.json and .work/records.jsonl; prepare "
        "again with the same arguments to rebuild them)"
    )


def load_training_images(folder: str | os.PathLike[str]) -> TrainingImages:
    """The training images of a prepared dataset folder (see the module doc).

    ``manifest.json`` gives the split (``eval_fraction``, ``seed``) and the counts;
    ``.work/records.jsonl`` holds every row with its ``image_id`` and absolute
    ``image_path``.  The rows are split again with
    :func:`omniad_train.data.output.split_rows` (prepare's own function), and the
    training split must have the rows and images the manifest counts.
    """
    root = Path(folder).resolve()
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad_folder(root, "it has no manifest.json") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad_folder(root, f"manifest.json cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith(
        "omniad-prepare/"
    ):
        raise _bad_folder(root, "manifest.json is not a prepare manifest")
    rows = _records(root / ".work" / "records.jsonl", root)
    fraction = manifest.get("eval_fraction") or 0.0
    seed = manifest.get("seed", 0)
    if not isinstance(fraction, (int, float)) or not isinstance(seed, int):
        raise _bad_folder(root, "manifest.json has no usable eval_fraction / seed")
    train = split_rows(rows, float(fraction), seed)["train"]
    expected = ((manifest.get("counts") or {}).get("sft") or {}).get("splits", {}).get("train")
    got = {"rows": len(train), "images": len({r["image_id"] for r in train})}
    if not isinstance(expected, dict) or any(expected.get(k) != v for k, v in got.items()):
        want = {k: (expected or {}).get(k) for k in got} if isinstance(expected, dict) else None
        raise _bad_folder(
            root,
            f".work/records.jsonl gives {got['rows']} training rows of {got['images']} images, "
            f"manifest.json counts {want}",
        )
    keys = set()
    for r in train:
        rid = str(r.get("id", ""))
        if rid.startswith("mmad:"):
            keys.add(normalize_key(rid.removeprefix("mmad:").rpartition("#")[0] or rid[5:]))
    return TrainingImages(
        folder=root,
        fingerprint=manifest.get("fingerprint"),
        mmad_keys=frozenset(keys),
        paths=frozenset(_real(str(r["image_path"])) for r in train if r.get("image_path")),
        n_images=got["images"],
        n_rows=got["rows"],
    )


def _records(path: Path, root: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad_folder(root, "it has no .work/records.jsonl") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad_folder(root, f".work/records.jsonl cannot be read ({exc})") from None
    rows = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line, as prepare itself reads it
        row = entry.get("row") if isinstance(entry, dict) else None
        if isinstance(row, dict) and isinstance(row.get("image_id"), str):
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- the protocol
@dataclass
class EvalProtocol:
    """The MMAD evaluation protocol of a run: which split, which training sets.

    Parameters
    ----------
    holdout_fraction : float, optional
        Evaluate the held-out split: images with :func:`split_value` below it.
    split_seed : int
        The seed of the split (with ``holdout_fraction``).
    split_file : path, optional
        Evaluate only the images this file lists (exclusive with ``holdout_fraction``).
    exclude_training, refuse_training : paths of prepared dataset folders
        Leave out, or refuse to run on, every test image that is a training image of
        one of them.
    """

    holdout_fraction: float | None = None
    split_seed: int = 0
    split_file: str | os.PathLike[str] | None = None
    exclude_training: Sequence[str | os.PathLike[str]] = ()
    refuse_training: Sequence[str | os.PathLike[str]] = ()
    counts: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        f = self.holdout_fraction
        if f is not None and (
            isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1
        ):
            raise ValueError(
                f"holdout_fraction must be a number between 0 and 1 (e.g. 0.8), got {f!r}"
            )
        if f is not None and self.split_file is not None:
            raise ValueError("give a held-out fraction or a split file, not both")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            raise ValueError(f"split_seed must be an integer, got {self.split_seed!r}")
        self._entries: frozenset[str] = frozenset()
        self._sha: str | None = None
        if self.split_file is not None:
            self._entries, self._sha = read_split_file(self.split_file)
        self._exclude = [load_training_images(p) for p in self.exclude_training]
        self._refuse = [load_training_images(p) for p in self.refuse_training]
        self._seen: set[str] = set()
        self._excluded_images: set[str] = set()

    # ------------------------------------------------------------------ settings
    @property
    def split(self) -> str:
        """``full``, ``holdout`` or ``file``."""
        if self.holdout_fraction is not None:
            return "holdout"
        return "file" if self.split_file is not None else "full"

    def setting(self) -> dict[str, Any]:
        """The protocol as run.json records it (part of the fingerprint)."""
        out: dict[str, Any] = {"split": self.split}
        if self.split == "holdout":
            out.update(
                holdout_fraction=float(self.holdout_fraction),  # type: ignore[arg-type]
                split_seed=self.split_seed,
                split_rule=SPLIT_RULE,
            )
        elif self.split == "file":
            out.update(
                split_file=str(Path(self.split_file).resolve()),  # type: ignore[arg-type]
                split_file_sha256=self._sha,
            )
        out["exclude_training"] = [t.to_setting() for t in self._exclude]
        out["refuse_training"] = [t.to_setting() for t in self._refuse]
        return out

    # ------------------------------------------------------------------ selection
    def _in_split(self, key: str, image: str | None) -> bool:
        if self.split == "holdout":
            return in_holdout(key, float(self.holdout_fraction), self.split_seed)  # type: ignore[arg-type]
        if self.split == "file":
            k = normalize_key(key)
            if k in self._entries:
                self._seen.add(k)
                return True
            if image is not None:
                for form in (normalize_key(os.path.abspath(image)), normalize_key(_real(image))):
                    if form in self._entries:
                        self._seen.add(form)
                        return True
            return False
        return True

    def keep(self, item: Item) -> bool:
        """Whether a question of the stream is evaluated (counts what is left out)."""
        key = str(item.extra.get("image") or "")
        image = item.record.image if item.record is not None else None
        if not self._in_split(key, image):
            self.counts["outside_split"] += 1
            return False
        for t in self._exclude:
            if t.match(key, image) is not None:
                self.counts["excluded_training"] += 1
                self._excluded_images.add(key)
                return False
        return True

    def refuse(self, items: Iterable[Item]) -> None:
        """Raise :class:`TrainingOverlapError` when a selected question's image is a
        training image of a refused training set (nothing has been written yet)."""
        if not self._refuse:
            return
        found: dict[str, str] = {}
        for item in items:
            key = str(item.extra.get("image") or "")
            if key in found:
                continue
            image = item.record.image if item.record is not None else None
            for t in self._refuse:
                why = t.match(key, image)
                if why is not None:
                    found[key] = why
                    break
        if found:
            first = "; ".join(f"{k}: {w}" for k, w in list(found.items())[:3])
            more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
            raise TrainingOverlapError(
                f"{len(found)} test image(s) are training images: {first}{more}; leave them "
                "out with --exclude_training, or evaluate a split without them"
            )

    def summary(self, n_selected: int) -> dict[str, Any]:
        """The counts the report prints (run.json's config)."""
        out: dict[str, Any] = {
            "evaluated_questions": n_selected,
            "outside_split_questions": self.counts["outside_split"],
            "excluded_training_questions": self.counts["excluded_training"],
            "excluded_training_images": len(self._excluded_images),
        }
        if self.split == "file":
            out["split_file_entries"] = len(self._entries)
            out["split_file_entries_not_found"] = len(self._entries - self._seen)
        return out

    def check_split_found(self) -> None:
        """A split file none of whose entries is in the benchmark is an error."""
        if self.split == "file" and not self._seen:
            example = sorted(self._entries)[0]
            raise ValueError(
                f"no image of the split file {self.split_file} is in the benchmark (e.g. "
                f"{example!r}); list MMAD keys such as 'MVTec-AD/bottle/test/good/000.png' "
                "or absolute image paths"
            )


def protocol_text(setting: dict[str, Any] | None, counts: dict[str, Any] | None) -> str:
    """One sentence describing a run's protocol, for the report.

    >>> protocol_text({"split": "holdout", "holdout_fraction": 0.8, "split_seed": 0,
    ...                "exclude_training": [], "refuse_training": []}, None)
    'held-out split: the 80% of images with split_value(key, seed=0) < 0.8 (rule omniad-mmad-split/1)'
    >>> protocol_text(None, None)
    'full benchmark'
    """
    s = setting or {"split": "full"}
    c = counts or {}
    if s.get("split") == "holdout":
        f = float(s["holdout_fraction"])
        text = (
            f"held-out split: the {f:.0%} of images with split_value(key, seed="
            f"{s.get('split_seed')}) < {f:g} (rule {s.get('split_rule', SPLIT_RULE)})"
        )
    elif s.get("split") == "file":
        text = f"split file {s.get('split_file')} (sha256 {str(s.get('split_file_sha256'))[:12]})"
        if c.get("split_file_entries_not_found"):
            text += f", {c['split_file_entries_not_found']} of its entries not in the benchmark"
    else:
        text = "full benchmark"
    if c.get("outside_split_questions"):
        text += f"; {c['outside_split_questions']} questions outside the split"
    for t in s.get("exclude_training") or []:
        text += f"; training images of {t['folder']} excluded"
    if s.get("exclude_training"):
        text += (
            f" ({c.get('excluded_training_questions', 0)} questions of "
            f"{c.get('excluded_training_images', 0)} images)"
        )
    for t in s.get("refuse_training") or []:
        text += f"; checked: no training image of {t['folder']}"
    return text
