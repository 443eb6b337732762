"""The work folder of ``prepare``: resized images, masks and processed rows, kept across runs.

Layout of ``<output>/.work/``::

    images/<key>.png   the source image resized to image_size x image_size (RGB PNG)
    images/<key>.json  its original width and height
    masks/<key>.png    the mask at the image's original size (8-bit PNG, 0/255); a
                       folder of masks (MVTec LOCO) is stored united
    masks/<key>.json   the mask's MaskInfo (area, centroid, region, shape words)
    */<key>.err        the error of a file that could not be read (not retried until
                       the file changes)
    records.jsonl      one line per processed record: its key and its row or reject

A key is a hash of the source's identity (absolute path, size and modification time,
like ``make``) and of the parameters that shape the file (``image_size``), so a changed
file or parameter is processed again and an unchanged one is never re-read.  Files are
written to a temporary name and renamed, and a JSON file is written after its PNG, so
an interrupted run leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from omniad_core.images import ImageError, load_image, load_mask, max_image_pixels
from omniad_train.data.masks import read_mask
from omniad_train.data.reasoning import describe_mask
from omniad_train.data.records import MaskInfo

__all__ = ["ImageEntry", "MaskEntry", "RecordLog", "WorkCache", "digest", "fingerprint"]

#: Bump when the resizing changes: cached images made the old way are redone.
RESIZE_VERSION = "bicubic/2"  # 2: images wider than 8 bits are scaled by their range
#: Bump when reading masks changes (2: raw values, floats > 0, NaN and 16-bit colour refused;
#: 3: masks smaller than 48 px count their separate regions right).
MASK_VERSION = "raw/3"


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def fingerprint(path: str | os.PathLike[str]) -> str:
    """Identity of a file or folder: absolute path, sizes and modification times."""
    p = Path(path)
    where = os.path.abspath(p)
    try:
        st = p.stat()
    except OSError:
        return f"{where}|missing"
    if p.is_dir():
        parts = []
        for e in sorted(p.iterdir()):
            try:
                s = e.stat()
                parts.append(f"{e.name}:{s.st_size}:{s.st_mtime_ns}")
            except OSError:
                parts.append(f"{e.name}:missing")
        return f"{where}|dir|{';'.join(parts)}"
    return f"{where}|{st.st_size}|{st.st_mtime_ns}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@lru_cache(maxsize=64)
def zero_mask_png(height: int, width: int) -> bytes:
    """An all-zero 8-bit PNG mask of the given size."""
    return png_bytes(np.zeros((height, width), np.uint8))


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ImageEntry:
    key: str
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class MaskEntry:
    key: str
    path: Path
    info: MaskInfo


def _error_file(folder: Path, key: str) -> Path:
    """Where the error of an unreadable file is remembered.

    The name holds the pixel limit, so a file refused as too large is read again once
    the user raises the limit (``OMNIAD_MAX_IMAGE_PIXELS``).
    """
    return folder / f"{key}-{max_image_pixels()}.err"


class WorkCache:
    """Resized images and united masks, cached under content keys in ``folder``.

    ``reads`` counts the source images and masks actually decoded in this process.
    """

    def __init__(self, folder: str | os.PathLike[str], image_size: int) -> None:
        self.folder = Path(folder)
        self.image_size = int(image_size)
        self.images = self.folder / "images"
        self.masks = self.folder / "masks"
        self.reads: Counter[str] = Counter()

    def image_key(self, source: str) -> str:
        return digest("image", fingerprint(source), self.image_size, RESIZE_VERSION)

    def image(self, source: str) -> ImageEntry:
        """The resized image of ``source`` (read and resized only when not cached).

        Raises :class:`~omniad_core.images.ImageError` for a missing or unreadable file.
        """
        from PIL import Image

        key = self.image_key(source)
        png, meta = self.images / f"{key}.png", self.images / f"{key}.json"
        if meta.is_file() and png.is_file():
            m = json.loads(meta.read_text())
            return ImageEntry(key, png, int(m["width"]), int(m["height"]))
        self._raise_known_error(_error_file(self.images, key))
        self.reads["image"] += 1
        img = self._remember_error(_error_file(self.images, key), load_image, source)
        width, height = img.size
        size = (self.image_size, self.image_size)
        small = img if img.size == size else img.resize(size, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        small.save(buf, format="PNG")
        write_atomic(png, buf.getvalue())
        info = {"source": os.path.abspath(source), "width": width, "height": height}
        write_atomic(meta, json.dumps(info).encode())
        return ImageEntry(key, png, width, height)

    def mask(self, source: str) -> MaskEntry:
        """The united mask of ``source`` (a file or a folder) and its description."""
        key = digest("mask", fingerprint(source), MASK_VERSION)
        png, meta = self.masks / f"{key}.png", self.masks / f"{key}.json"
        if meta.is_file() and png.is_file():
            return MaskEntry(key, png, MaskInfo.model_validate_json(meta.read_text()))
        self._raise_known_error(_error_file(self.masks, key))
        self.reads["mask"] += 1
        mask = self._remember_error(_error_file(self.masks, key), read_mask, source)
        info = describe_mask(mask)
        write_atomic(png, png_bytes(mask.astype(np.uint8) * 255))
        write_atomic(meta, info.model_dump_json().encode())
        return MaskEntry(key, png, info)

    @staticmethod
    def _raise_known_error(err: Path) -> None:
        if err.is_file():  # this very file failed before: do not read it again
            raise ImageError(err.read_text(encoding="utf-8"))

    @staticmethod
    def _remember_error(err: Path, read: Any, source: str) -> Any:
        try:
            return read(source)
        except ImageError as exc:
            write_atomic(err, str(exc).encode())
            raise

    def mask_array(self, key: str) -> np.ndarray:
        return load_mask(self.masks / f"{key}.png")

    def image_bytes(self, key: str) -> bytes:
        return (self.images / f"{key}.png").read_bytes()

    def mask_bytes(self, key: str) -> bytes:
        return (self.masks / f"{key}.png").read_bytes()

    def has(self, image_keys: list[str], mask_key: str | None) -> bool:
        """True when the cached files a logged row refers to are all still there."""
        ok = all((self.images / f"{k}.png").is_file() for k in image_keys)
        return ok and (mask_key is None or (self.masks / f"{mask_key}.png").is_file())


class RecordLog:
    """An append-only JSONL log of processed records: ``{"key": ..., "row"|"reject": ...}``.

    A torn last line (the process died while writing it) is ignored when loading.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def load(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return done
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    done[entry["key"]] = entry
        return done

    def __enter__(self) -> RecordLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()
        self._fh = None

    def append(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()

    def rewrite(self, entries: list[dict[str, Any]]) -> None:
        """Keep only ``entries`` (drops rows of records no longer asked for)."""
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        write_atomic(self.path, text.encode())
