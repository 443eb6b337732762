"""Write a synthetic dataset: MVTec-style folders plus an MMAD-style ``mmad.json``.

Layout under ``out_dir`` (``<dataset>`` defaults to ``synth``, or ``synth_train`` for
``split="train"``)::

    out_dir/
      mmad.json         keys "<dataset>/<category>/test/<defect>/000.png"; image root = out_dir
      synthetic.json    manifest: parameters, counts, timing
      <dataset>/        MVTec root: iter_mvtec(out_dir / <dataset>)
        <category>/train/good/000.png
        <category>/test/good/000.png
        <category>/test/<defect>/000.png
        <category>/ground_truth/<defect>/000_mask.png   (0 / 255)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omniad_train.data.reasoning import describe_mask, rng_for
from omniad_train.synthetic.questions import questions_for
from omniad_train.synthetic.render import CATEGORIES, render_sample, sample_seed

__all__ = ["GenerationResult", "generate", "synthetic_main"]

Split = Literal["train", "test"]
MANIFEST = "synthetic.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GenerationResult:
    """What :func:`generate` wrote: paths, counts and timing."""

    out_dir: Path
    mvtec_root: Path
    mmad_json: Path
    dataset: str
    split: str
    seed: int
    image_size: int
    categories: tuple[str, ...]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    n_images: int = 0
    n_questions: int = 0
    seconds: float = 0.0

    @property
    def image_root(self) -> Path:
        """The folder ``mmad.json``'s keys are relative to (``out_dir``)."""
        return self.out_dir

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        n_defect = sum(
            v
            for c in self.counts.values()
            for k, v in c.items()
            if k.startswith("test/") and k != "test/good"
        )
        return (
            f"{self.n_images} images ({n_defect} with defects) in {len(self.categories)} "
            f"categories and {self.n_questions} questions written to {self.out_dir} in "
            f"{self.seconds:.1f} s ({self.images_per_second:.0f} images/s); MVTec root "
            f"{self.mvtec_root}, MMAD file {self.mmad_json}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "out_dir": str(self.out_dir),
            "mvtec_root": str(self.mvtec_root),
            "mmad_json": str(self.mmad_json),
            "image_root": str(self.image_root),
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "image_size": self.image_size,
            "categories": list(self.categories),
            "counts": self.counts,
            "n_images": self.n_images,
            "n_questions": self.n_questions,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Job:
    category: str
    folder: str  # "train/good", "test/good", "test/<defect>"
    index: int
    seed: int

    @property
    def defect(self) -> str | None:
        part = self.folder.split("/")[1]
        return None if part == "good" else part

    @property
    def rel(self) -> str:
        return f"{self.category}/{self.folder}/{self.index:03d}.png"

    @property
    def mask_rel(self) -> str | None:
        d = self.defect
        return None if d is None else f"{self.category}/ground_truth/{d}/{self.index:03d}_mask.png"


_Result = tuple[str, list[dict[str, Any]] | None, dict[str, Any]]


def _run(args: tuple[_Job, Path, str, int, int]) -> _Result:
    """Render and write one image (and mask); return its MMAD key, questions and facts."""
    from PIL import Image

    job, root, dataset, size, seed = args
    sample = render_sample(job.category, job.defect, seed=job.seed, size=size)
    path = root / job.rel
    Image.fromarray(sample.image).save(path, compress_level=1)
    if job.mask_rel is not None:
        assert sample.mask is not None
        Image.fromarray(sample.mask.astype("uint8") * 255).save(
            root / job.mask_rel, compress_level=1
        )
    key = f"{dataset}/{job.rel}"
    attrs = {k: v for k, v in sample.attrs.items() if isinstance(v, (str, int, float))}
    if job.folder.startswith("train/"):
        return key, None, attrs
    return key, questions_for(sample, seed=seed, key=key), attrs


def _check_count(name: str, value: int) -> int:
    if int(value) != value or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _prepare_root(out_dir: Path, dataset: str) -> Path:
    root = out_dir / dataset
    if root.exists() and any(root.iterdir()):
        manifest = out_dir / MANIFEST
        ours = False
        if manifest.is_file():
            try:
                ours = json.loads(manifest.read_text(encoding="utf-8")).get("dataset") == dataset
            except ValueError:
                ours = False
        if not ours:
            raise FileExistsError(
                f"{str(root)!r} exists and was not written by generate(); choose another "
                "out_dir or dataset name, or remove it"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def generate(
    out_dir: str | os.PathLike[str],
    *,
    n_train_good: int = 10,
    n_test_good: int = 5,
    n_test_defect_per_type: int = 5,
    categories: Sequence[str] | None = None,
    image_size: int = 256,
    seed: int = 0,
    split: Split = "test",
    dataset: str | None = None,
    templates: int = 3,
    workers: int | None = None,
    progress: bool = True,
) -> GenerationResult:
    """Render a synthetic defect dataset and write it in MVTec and MMAD layouts.

    Parameters
    ----------
    out_dir
        Output folder (see the module docstring for the layout).  A previous output of
        this function for the same ``dataset`` is replaced; other existing data is not
        touched (``FileExistsError``).
    n_train_good, n_test_good, n_test_defect_per_type
        Images per category in ``train/good``, ``test/good`` and each ``test/<defect>``.
    categories
        Category names, or one comma-separated string (default: all of
        :data:`~omniad_train.synthetic.CATEGORIES`).
    image_size
        Side of the square images, at least 64.
    seed
        Base seed; every image's own seed is derived from it, ``split``, the category,
        the folder and the index, so outputs are identical for identical arguments.
    split
        ``"test"`` for evaluation data, ``"train"`` for training data: the two draw
        from disjoint seed streams, so they never share an image even with one ``seed``.
    dataset
        Name of the dataset folder (and first component of ``mmad.json`` keys); default
        ``synth`` for ``split="test"`` and ``synth_train`` for ``split="train"``.
    templates
        Number of ``similar_templates`` / ``random_templates`` per question entry
        (normal ``train/good`` images of the same category).
    workers
        Processes used to render (default: up to 8, one per CPU); 1 renders in-process.
        The output does not depend on it.
    progress
        Show a tqdm progress bar.
    """
    t0 = time.perf_counter()
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(categories, str):  # "wood,pcb"
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    cats = tuple(CATEGORIES) if categories is None else tuple(dict.fromkeys(categories))
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown or not cats:
        raise ValueError(
            f"unknown categories {unknown or '(none given)'}; choose from {', '.join(CATEGORIES)}"
        )
    if int(image_size) < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")
    n_train = _check_count("n_train_good", n_train_good)
    n_good = _check_count("n_test_good", n_test_good)
    n_def = _check_count("n_test_defect_per_type", n_test_defect_per_type)
    name = dataset or ("synth" if split == "test" else "synth_train")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"dataset must be a plain folder name, got {name!r}")
    out = Path(out_dir)
    root = _prepare_root(out, name)

    jobs: list[_Job] = []
    counts: dict[str, dict[str, int]] = {}
    for cat in cats:
        folders = [("train/good", n_train), ("test/good", n_good)]
        folders += [(f"test/{d}", n_def) for d in CATEGORIES[cat].defects]
        counts[cat] = {}
        for folder, count in folders:
            (root / cat / folder).mkdir(parents=True, exist_ok=True)
            if folder != "test/good" and folder.startswith("test/"):
                (root / cat / "ground_truth" / folder[5:]).mkdir(parents=True, exist_ok=True)
            counts[cat][folder] = count
            for i in range(count):
                s = sample_seed(seed, split, cat, folder, i)
                jobs.append(_Job(cat, folder, i, s))

    args = [(j, root, name, int(image_size), int(seed)) for j in jobs]
    n_workers = min(8, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    n_workers = min(n_workers, max(1, len(jobs) // 8))
    results: list[_Result]
    bar = _bar(len(jobs), progress, f"synthetic {name}")
    if n_workers == 1:
        results = []
        for a in args:
            results.append(_run(a))
            bar.update(1)
    else:
        # compile the mask-description kernels once here, so forked workers inherit them
        describe_mask(np.eye(4, dtype=bool))
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            results = []
            for r in pool.map(_run, args, chunksize=4):
                results.append(r)
                bar.update(1)
    bar.close()

    train_good: dict[str, list[tuple[str, dict[str, Any]]]] = {c: [] for c in cats}
    for job, (key, _, attrs) in zip(jobs, results, strict=True):
        if job.folder == "train/good":
            train_good[job.category].append((key, attrs))
    mmad: dict[str, Any] = {}
    for job, (key, conversation, attrs) in zip(jobs, results, strict=True):
        if conversation is None:
            continue
        similar, random_ = _templates(train_good[job.category], attrs, templates, seed, key)
        mmad[key] = {
            "conversation": conversation,
            "mask_path": None if job.mask_rel is None else f"{name}/{job.mask_rel}",
            "similar_templates": similar,
            "random_templates": random_,
        }
    mmad_json = out / "mmad.json"
    mmad_json.write_text(json.dumps(mmad, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    result = GenerationResult(
        out_dir=out,
        mvtec_root=root,
        mmad_json=mmad_json,
        dataset=name,
        split=split,
        seed=int(seed),
        image_size=int(image_size),
        categories=cats,
        counts=counts,
        n_images=len(jobs),
        n_questions=sum(len(v["conversation"]) for v in mmad.values()),
        seconds=time.perf_counter() - t0,
    )
    (out / MANIFEST).write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
    return result


def _templates(
    pool: list[tuple[str, dict[str, Any]]], attrs: dict[str, Any], k: int, seed: int, key: str
) -> tuple[list[str], list[str]]:
    """Normal reference images: the most similar (most shared facts, e.g. the same
    colour), ties broken at random, and a plain random draw."""
    k = min(max(0, int(k)), len(pool))
    rng = rng_for(seed, key, "similar")
    order = list(range(len(pool)))
    rng.shuffle(order)
    order.sort(key=lambda i: -sum(pool[i][1].get(a) == v for a, v in attrs.items()))
    similar = [pool[i][0] for i in order[:k]]
    random_ = rng_for(seed, key, "random").sample([p[0] for p in pool], k)
    return similar, random_


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="img")


# --------------------------------------------------------------------------- CLI
_EPILOG = """\
examples:
  omniad-train synth data/synth                       # evaluation set: test/ + mmad.json
  omniad-train synth data/synth_train --split train --n_test_defect_per_type 40
  omniad-train synth data/small --categories wood,pcb --image_size 512 --seed 3
  omniad-train synth --list                           # categories and their defects

Read the output with iter_mvtec(OUT_DIR/<dataset>) or iter_mmad(OUT_DIR/mmad.json).
Exit status: 0 on success, 1 on a bad argument or an existing folder not written here.
"""


def build_parser(prog: str = "omniad-train synth") -> argparse.ArgumentParser:
    """The argument parser of :func:`synthetic_main` (every option of :func:`generate`)."""
    from omniad_train.cli import CommandParser

    p = CommandParser(
        prog=prog,
        description="Render a synthetic industrial-defect dataset (textures and objects with "
        "scratches, cracks, holes, stains, contamination, missing and misplaced parts) with "
        "exact masks, as MVTec-style folders plus an MMAD-style mmad.json.",
        epilog=_EPILOG,
    )
    p.add_argument("out_dir", type=Path, nargs="?", help="output folder")
    p.add_argument(
        "--n_train_good",
        type=int,
        metavar="N",
        default=10,
        help="train/good images per category (default 10)",
    )
    p.add_argument(
        "--n_test_good",
        type=int,
        metavar="N",
        default=5,
        help="test/good images per category (default 5)",
    )
    p.add_argument(
        "--n_test_defect_per_type",
        type=int,
        metavar="N",
        default=5,
        help="test images per defect type and category (default 5)",
    )
    p.add_argument(
        "--categories",
        default=None,
        metavar="LIST",
        help="comma-separated categories (default: all; see --list)",
    )
    p.add_argument(
        "--image_size",
        type=int,
        metavar="N",
        default=256,
        help="image side in pixels (default 256)",
    )
    p.add_argument("--seed", type=int, metavar="N", default=0, help="base seed (default 0)")
    p.add_argument(
        "--split",
        choices=("train", "test"),
        default="test",
        help="seed stream: 'train' images never equal 'test' ones (default test)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="dataset folder name (default synth, or synth_train for --split train)",
    )
    p.add_argument(
        "--templates",
        type=int,
        metavar="N",
        default=3,
        help="reference templates per entry (default 3)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=None,
        help="render processes (default: CPUs, max 8)",
    )
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--list", action="store_true", help="list categories and defect types, then exit"
    )
    return p


def synthetic_main(argv: Sequence[str] | None = None, prog: str = "omniad-train synth") -> int:
    """Command line of :func:`generate`; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser(prog)
    try:
        ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0)
    if ns.list:
        for c in CATEGORIES.values():
            print(f"{c.name:<11} {c.kind:<8} {', '.join(c.defects)}")
        return 0
    if ns.out_dir is None:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: the output folder is required", file=sys.stderr)
        return 2
    cats = (
        None
        if ns.categories is None
        else [c.strip() for c in ns.categories.split(",") if c.strip()]
    )
    try:
        result = generate(
            ns.out_dir,
            n_train_good=ns.n_train_good,
            n_test_good=ns.n_test_good,
            n_test_defect_per_type=ns.n_test_defect_per_type,
            categories=cats,
            image_size=ns.image_size,
            seed=ns.seed,
            split=ns.split,
            dataset=ns.dataset,
            templates=ns.templates,
            workers=ns.workers,
            progress=not ns.no_progress,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
