"""Teacher annotation: a model behind an OpenAI-compatible endpoint writes the analysis questions.

The :class:`TeacherWriter` is a :class:`~omniad_train.data.templates.QuestionWriter`:
for each folder image it asks a teacher model (any vLLM / SGLang / ``transformers
serve`` server or hosted API, through :class:`omniad_core.backends.EndpointBackend`)
for MMAD-style multiple-choice questions of the types the folders cannot answer
(Defect Analysis for defect images, Object Analysis for all), each with the reasoning
that becomes the SFT ``<think>`` text.  The teacher sees the image with the mask painted
over it and the folder facts (dataset, category, defect name, the mask's region, size
and shape); its system prompt is the teacher prompt (:class:`TeacherPrompt`, a versioned
text file users can edit), not OmniAD's.

The answer must be one JSON object (:func:`~omniad_train.data.teacher_json.find_json_object`)
that passes :func:`~omniad_train.data.teacher_json.check_reply`; an invalid answer is
asked again (the teacher is told what was wrong) up to ``retries`` times, then the image
gets a reject with the reason (it keeps its template questions).  Every final outcome is
cached in ``<cache_dir>/<key>.json``, the key made of the image's and mask's identity,
the folder facts, the teacher model's name and the prompt's version and file hash: an
interrupted or repeated run asks no image twice.  Tokens and seconds per image are kept
and reported (:meth:`TeacherWriter.report`, :meth:`TeacherWriter.summary`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omniad_core.backends import EndpointBackend, EndpointError, Generation
from omniad_train.data.cache import digest, fingerprint, write_atomic
from omniad_train.data.layouts import ImageItem
from omniad_train.data.records import Record, Reject, make_record, safe_text
from omniad_train.data.teacher_inputs import (
    PLACEHOLDERS,
    TeacherError,
    TeacherPrompt,
    default_prompt_path,
    prompt_fields,
    teacher_image,
)
from omniad_train.data.teacher_json import (
    TEACHER_TYPES,
    TeacherQuestion,
    check_reply,
    find_json_object,
)
from omniad_train.data.templates import DatasetFacts

__all__ = [
    "PLACEHOLDERS",
    "TEACHER_VERSION",
    "TeacherError",
    "TeacherPrompt",
    "TeacherWriter",
    "add_teacher_args",
    "default_prompt_path",
    "teacher_from_args",
    "teacher_image",
]

#: Bump when the request or the records change: every image is asked again.
TEACHER_VERSION = "1"
_SUFFIX = {"Defect Analysis": "defect_analysis", "Object Analysis": "object_analysis"}


# --------------------------------------------------------------------------- writer
class TeacherWriter:
    """Defect Analysis and Object Analysis questions written by a teacher model.

    Parameters
    ----------
    backend : EndpointBackend
        The teacher (any backend with ``generate``; ``name`` goes into the cache key).
    cache_dir : path
        Folder of the cached outcomes, e.g. ``<prepare output>/.work/teacher``.
    prompt : TeacherPrompt or path, optional
        The teacher prompt (default: the shipped ``teacher_prompt.txt``).
    retries : int
        Further attempts after an invalid answer (default 2).
    image_size : int
        The image is sent at most this many pixels on its longer side (default 768).
    max_new_tokens : int
        The teacher's token budget per answer (default 1024).
    types : sequence of str
        The types to ask for (default both of :data:`TEACHER_TYPES`; normal images only
        get Object Analysis).
    """

    name = "teacher"

    def __init__(
        self,
        backend: Any,
        *,
        cache_dir: str | os.PathLike[str],
        prompt: TeacherPrompt | str | os.PathLike[str] | None = None,
        retries: int = 2,
        image_size: int = 768,
        max_new_tokens: int = 1024,
        types: Sequence[str] = TEACHER_TYPES,
    ) -> None:
        self.backend = backend
        self.cache_dir = Path(cache_dir)
        self.prompt = prompt if isinstance(prompt, TeacherPrompt) else TeacherPrompt.load(prompt)
        for label, v, lo in (
            ("retries", retries, 0),
            ("image_size", image_size, 28),
            ("max_new_tokens", max_new_tokens, 16),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise TeacherError(f"teacher {label} must be an integer >= {lo}, got {v!r}")
        bad = [t for t in types if t not in TEACHER_TYPES]
        if bad or not types:
            raise TeacherError(
                f"teacher types must be among {', '.join(TEACHER_TYPES)}, got {list(types)!r}"
            )
        self.retries, self.image_size, self.max_new_tokens = retries, image_size, max_new_tokens
        self.types = tuple(t for t in TEACHER_TYPES if t in types)
        self.model = str(getattr(backend, "name", "") or "teacher")
        self.version = f"{TEACHER_VERSION}+prompt-{self.prompt.version}-{self.prompt.sha256[:12]}"
        self.requests = 0  #: chat requests sent (all runs of this writer)
        self.cache_hits = 0  #: images answered from the cache
        self.log: list[dict[str, Any]] = []  #: one entry per image written
        self._memo: dict[str, dict[str, Any]] = {}
        self._checked = False

    def __repr__(self) -> str:
        return f"TeacherWriter({self.backend!r}, prompt version {self.prompt.version})"

    # ------------------------------------------------------------------ keys and cache
    def asked(self, item: ImageItem) -> tuple[str, ...]:
        """The types asked for about ``item`` (no Defect Analysis for a normal image)."""
        return tuple(t for t in self.types if item.anomalous or t != "Defect Analysis")

    def cache_key(self, item: ImageItem) -> str:
        """The cache key of ``item``'s outcome: the image's and mask's identity, the folder
        facts, the types asked for, the image size, the teacher model's name and the
        prompt's version and file hash."""
        return digest(
            "teacher",
            TEACHER_VERSION,
            self.prompt.version,
            self.prompt.sha256,
            self.model,
            self.image_size,
            fingerprint(item.image),
            fingerprint(item.mask) if item.mask else None,
            item.anomalous,
            item.dataset,
            item.category,
            item.defect,
            self.asked(item),
        )

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> dict[str, Any] | None:
        """A cached outcome, or None when absent or not one of ours (then asked again)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        if entry.get("outcome") == "ok":
            try:
                entry["questions"] = [
                    TeacherQuestion.model_validate(q).model_dump() for q in entry["questions"]
                ]
            except Exception:
                return None
        elif entry.get("outcome") != "rejected" or not isinstance(entry.get("reason"), str):
            return None
        return entry

    # ------------------------------------------------------------------ QuestionWriter
    def notes(self, facts: DatasetFacts) -> list[dict[str, Any]]:
        """Nothing is skipped by dataset or category (per-image problems are rejects)."""
        return []

    def write(self, item: ImageItem, facts: DatasetFacts) -> list[Record | Reject]:
        """The teacher's records of ``item`` (asked now unless prefetched or cached), or a
        reject saying why there are none."""
        key = self.cache_key(item)
        entry = self._memo.pop(key, None)
        cached = False
        if entry is None:
            entry = self._load(key)
            cached = entry is not None
            if entry is None:
                self._ask([item])
                entry = self._memo.pop(key, None) or {
                    "outcome": "failed",
                    "reason": "the teacher gave no answer",
                }
        if cached:
            self.cache_hits += 1
        out = self._records(item, entry)
        self.log.append(
            {
                "image_id": item.image_id,
                "cached": cached,
                "outcome": entry["outcome"],
                "attempts": entry.get("attempts", 0),
                "prompt_tokens": entry.get("prompt_tokens", 0),
                "completion_tokens": entry.get("completion_tokens", 0),
                "seconds": entry.get("seconds", 0.0),
                "records": sum(isinstance(r, Record) for r in out),
            }
        )
        return out

    def prefetch(self, items: Iterable[ImageItem], facts: DatasetFacts | None = None) -> int:
        """Ask the teacher about every item not cached yet, with the backend's concurrency
        (:meth:`write` then only reads the answers); returns how many were asked."""
        todo, seen = [], set()
        for it in items:
            key = self.cache_key(it)
            if key not in seen and key not in self._memo and self._load(key) is None:
                seen.add(key)
                todo.append(it)
        chunk = max(1, int(getattr(self.backend, "batch_size", 8)))
        for k in range(0, len(todo), chunk):
            self._ask(todo[k : k + chunk])
        return len(todo)

    # ------------------------------------------------------------------ asking
    def _check_backend(self) -> None:
        if self._checked:
            return
        check = getattr(self.backend, "check", None)
        if check is not None:
            try:
                check()
            except EndpointError as exc:
                raise TeacherError(f"teacher endpoint: {exc}") from None
        self._checked = True

    def _ask(self, items: list[ImageItem]) -> None:
        """Ask about ``items`` (retrying invalid answers); outcomes go to the memo, final
        ones to the cache as soon as they are known."""
        from omniad_core.images import ImageError

        states = []
        for it in items:
            key = self.cache_key(it)
            try:
                image = teacher_image(it, self.image_size)
            except (ImageError, OSError, ValueError) as exc:
                self._memo[key] = {
                    "outcome": "failed",
                    "reason": f"the image cannot be shown to the teacher: {exc}",
                }
                continue
            asked = self.asked(it)
            fields = prompt_fields(it, asked)
            conv = [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": self.prompt.render("system", fields)}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": self.prompt.render("user", fields)},
                    ],
                },
            ]
            states.append(
                {
                    "item": it,
                    "key": key,
                    "asked": asked,
                    "fields": fields,
                    "conv": conv,
                    "image": image,
                    "attempts": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "seconds": 0.0,
                    "outcome": None,
                }
            )
        if not states:
            return
        self._check_backend()
        takes = "on_result" in inspect.signature(self.backend.generate).parameters
        pending = states
        for attempt in range(self.retries + 1):
            last = attempt == self.retries

            def on_result(
                i: int, gen: Generation, batch: list = pending, last: bool = last
            ) -> None:
                self._take(batch[i], gen, last)

            kwargs = {"on_result": on_result} if takes else {}
            gens = self.backend.generate(
                [s["conv"] for s in pending],
                [[s["image"]] for s in pending],
                max_new_tokens=self.max_new_tokens,
                **kwargs,
            )
            if not takes:
                for i, gen in enumerate(gens):
                    on_result(i, gen)
            pending = [s for s in pending if s["outcome"] is None]
            if not pending:
                break

    def _take(self, s: dict[str, Any], gen: Generation, last: bool) -> None:
        """Handle one answer: valid -> cached records; invalid -> retry turn or reject."""
        self.requests += 1
        s["attempts"] += 1
        s["prompt_tokens"] += gen.prompt_tokens or 0
        s["completion_tokens"] += gen.completion_tokens or 0
        s["seconds"] += float(gen.seconds or 0.0)
        usage = {k: s[k] for k in ("attempts", "prompt_tokens", "completion_tokens", "seconds")}
        if not gen.ok:
            s["outcome"] = "failed"
            self._memo[s["key"]] = {
                "outcome": "failed",
                "reason": f"the teacher endpoint failed: {gen.error}",
                **usage,
            }
            return
        content = (gen.raw or {}).get("content")
        scan = find_json_object(content) if isinstance(content, str) else None
        if scan is None or scan.value is None:
            scan = find_json_object(gen.text)
        info = s["item"].info
        if scan.value is None:
            reply, problems = None, [scan.problem or "no JSON object"]
        else:
            reply, problems = check_reply(scan.value, s["asked"], info, s["item"].anomalous)
        if reply is not None:
            entry = {"outcome": "ok", "questions": [q.model_dump() for q in reply.questions]}
        elif last:
            entry = {
                "outcome": "rejected",
                "reason": "; ".join(problems),
                "reply": safe_text((gen.text or "")[:4000]),
            }
        else:
            s["conv"] = [
                *s["conv"],
                {"role": "assistant", "content": [{"type": "text", "text": gen.text or ""}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": self.prompt.render(
                                "retry", {**s["fields"], "problems": "; ".join(problems)}
                            ),
                        }
                    ],
                },
            ]
            return
        s["outcome"] = entry["outcome"]
        entry = {
            "key": s["key"],
            "image_id": s["item"].image_id,
            "model": self.model,
            "prompt_version": self.prompt.version,
            "prompt_sha256": self.prompt.sha256,
            **entry,
            **usage,
        }
        write_atomic(self._path(s["key"]), (json.dumps(entry) + "\n").encode())
        self._memo[s["key"]] = entry

    def _records(self, item: ImageItem, entry: dict[str, Any]) -> list[Record | Reject]:
        where = f"{item.rel}#teacher"
        if entry["outcome"] == "ok":
            out: list[Record | Reject] = []
            for q in entry["questions"]:
                suffix = _SUFFIX[q["type"]]
                out.append(
                    make_record(
                        "mvtec",
                        f"{item.rel}#{suffix}",
                        id=f"{item.image_id}#{suffix}",
                        image_id=item.image_id,
                        image=item.image,
                        mask=item.mask,
                        anomalous=item.anomalous,
                        question=q["question"],
                        options=q["options"],
                        answer=q["answer"],
                        type=q["type"],
                        category=item.category,
                        dataset=item.dataset,
                        defect=item.defect,
                        reference=item.reference,
                        reasoning=q["reasoning"],
                        question_source="teacher",
                    )
                )
            return out
        if entry["outcome"] == "rejected":
            n = entry.get("attempts", self.retries + 1)
            reason = (
                f"the teacher's answer was invalid after {n} attempt{'s' if n != 1 else ''}: "
                f"{entry['reason']}; the image keeps its template questions (edit the teacher "
                "prompt or use a stronger teacher model; a new prompt version asks again)"
            )
        else:
            reason = (
                f"{entry['reason']}; the image keeps its template questions and the teacher "
                "is asked again on the next run"
            )
        return [Reject(source="teacher", record=where, reason=reason)]

    # ------------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        """Tokens, seconds and outcomes of the images written (for ``manifest.json``):
        totals over the images asked in this run and over all (cached included), and one
        entry per image."""
        asked = [e for e in self.log if not e["cached"]]

        def total(rows: list[dict[str, Any]], k: str) -> Any:
            return round(sum(r[k] for r in rows), 3) if k == "seconds" else sum(r[k] for r in rows)

        return {
            "name": self.name,
            "version": self.version,
            "model": self.model,
            "prompt": {
                "path": self.prompt.path,
                "version": self.prompt.version,
                "sha256": self.prompt.sha256,
            },
            "images": len(self.log),
            "asked": len(asked),
            "cached": len(self.log) - len(asked),
            "requests": self.requests,
            "records": sum(e["records"] for e in self.log),
            "rejected": sum(e["outcome"] == "rejected" for e in self.log),
            "failed": sum(e["outcome"] == "failed" for e in self.log),
            "this_run": {
                k: total(asked, k) for k in ("prompt_tokens", "completion_tokens", "seconds")
            },
            "all": {
                k: total(self.log, k) for k in ("prompt_tokens", "completion_tokens", "seconds")
            },
            "per_image": list(self.log),
        }

    def summary(self) -> str:
        """One line: images asked and cached, records, rejects, tokens and time per image."""
        r = self.report()
        run = r["this_run"]
        per = f", {run['seconds'] / r['asked']:.1f} s per image asked" if r["asked"] else ""
        return (
            f"teacher {self.model}: {r['images']:,} images ({r['asked']:,} asked in "
            f"{r['requests']:,} requests, {r['cached']:,} from the cache), {r['records']:,} "
            f"records, {r['rejected']:,} rejected, {r['failed']:,} failed; this run "
            f"{run['prompt_tokens']:,} prompt + {run['completion_tokens']:,} completion tokens, "
            f"{run['seconds']:.1f} s{per}"
        )


# --------------------------------------------------------------------------- command line
def add_teacher_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``--teacher_*`` options of ``omniad-train prepare`` to ``parser``."""
    g = parser.add_argument_group(
        "teacher (Defect Analysis and Object Analysis questions written by a model behind an "
        "OpenAI-compatible endpoint; see docs/data.md)"
    )
    g.add_argument(
        "--teacher_endpoint", metavar="URL", help="API root, e.g. http://127.0.0.1:8000/v1"
    )
    g.add_argument(
        "--teacher_model", metavar="NAME", help="the served model's name (GET /v1/models)"
    )
    g.add_argument(
        "--teacher_api_key_env", metavar="VAR", help="environment variable holding the API key"
    )
    g.add_argument(
        "--teacher_concurrency",
        type=int,
        default=4,
        metavar="N",
        help="requests in flight (default 4)",
    )
    g.add_argument(
        "--teacher_retries",
        type=int,
        default=2,
        metavar="N",
        help="an invalid answer is asked again at most N times, then rejected (default 2)",
    )
    g.add_argument(
        "--teacher_prompt",
        type=Path,
        metavar="FILE",
        help="your teacher prompt file (default: the shipped teacher_prompt.txt)",
    )


def teacher_from_args(args: argparse.Namespace) -> TeacherWriter | None:
    """The :class:`TeacherWriter` the ``--teacher_*`` options ask for (None without
    ``--teacher_endpoint``); its cache is ``<output_dir>/.work/teacher``.

    Raises
    ------
    TeacherError
        A missing model name, bad numbers, a bad prompt file or endpoint settings.
    """
    url = getattr(args, "teacher_endpoint", None)
    if not url:
        others = [
            f"--{n}"
            for n in ("teacher_model", "teacher_api_key_env", "teacher_prompt")
            if getattr(args, n, None)
        ]
        if others:
            raise TeacherError(f"{', '.join(others)} need --teacher_endpoint URL; add it")
        return None
    if not getattr(args, "teacher_model", None):
        raise TeacherError(
            "--teacher_endpoint needs --teacher_model NAME (the name GET /v1/models lists)"
        )
    concurrency, retries = args.teacher_concurrency, args.teacher_retries
    if not isinstance(concurrency, int) or concurrency < 1:
        raise TeacherError(f"--teacher_concurrency must be >= 1, got {concurrency!r}")
    if not isinstance(retries, int) or retries < 0:
        raise TeacherError(f"--teacher_retries must be >= 0, got {retries!r}")
    prompt = TeacherPrompt.load(args.teacher_prompt)
    try:
        backend = EndpointBackend(
            url,
            args.teacher_model,
            api_key_env=args.teacher_api_key_env,
            concurrency=concurrency,
        )
    except EndpointError as exc:
        raise TeacherError(f"teacher endpoint: {exc}") from None
    return TeacherWriter(
        backend,
        cache_dir=Path(args.output_dir) / ".work" / "teacher",
        prompt=prompt,
        retries=retries,
    )
