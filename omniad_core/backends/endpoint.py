"""An OpenAI-compatible chat endpoint as a backend: concurrency, retries, early checks.

Only the standard library is used for HTTP (``urllib`` in a thread pool): one request
per worker, at most ``concurrency`` in flight.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omniad_core.backends.base import EndpointError, Generation, HTTPFailure, one_line
from omniad_core.backends.replies import (
    generation_from_fields,
    read_stream,
    reply_fields,
    to_openai_messages,
)

__all__ = [
    "EndpointBackend",
    "backoff_delays",
    "is_retryable",
    "normalize_base_url",
    "served_spec",
]


def is_retryable(status: int | None) -> bool:
    """Whether a failed request is tried again: connection errors and timeouts (None),
    408, 429 and 5xx; never another 4xx (a bad request stays bad).

    >>> [is_retryable(s) for s in (None, 408, 429, 500, 503, 400, 401, 404)]
    [True, True, True, True, True, False, False, False]
    """
    return status is None or status in (408, 429) or 500 <= status <= 599


def backoff_delays(
    retries: int, backoff: float, rng: random.Random | None = None, cap: float = 60.0
) -> list[float]:
    """Seconds to wait before each retry: exponential (``backoff * 2**k``, at most ``cap``)
    with "equal jitter" (a uniform draw in its upper half), so clients do not retry in step.

    >>> backoff_delays(4, 1.0, random.Random(0))
    [0.9222, 1.758, 2.8411, 5.0357]
    >>> backoff_delays(2, 0.0)
    [0.0, 0.0]
    """
    rng = rng or random.Random()
    out = []
    for k in range(max(0, int(retries))):
        d = min(cap, backoff * 2.0**k)
        out.append(round(d / 2 + rng.uniform(0, d / 2), 4))
    return out


def normalize_base_url(base_url: str) -> str:
    """The API root of an OpenAI-compatible server: ``/v1`` is added to a bare host.

    >>> normalize_base_url("http://127.0.0.1:8000"), normalize_base_url("https://api.x.com/v1/")
    ('http://127.0.0.1:8000/v1', 'https://api.x.com/v1')
    """
    if not isinstance(base_url, str) or not base_url.strip():
        raise EndpointError("the endpoint URL is empty; give e.g. http://127.0.0.1:8000/v1")
    url = base_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(
            f"the endpoint URL {base_url!r} is not an http(s) URL; give e.g. "
            "http://127.0.0.1:8000/v1"
        )
    if parts.path in ("", "/"):
        url += "/v1"
    return url


# --------------------------------------------------------------------------- endpoint
class EndpointBackend:
    """An OpenAI-compatible chat-completions endpoint.

    Parameters
    ----------
    base_url : str
        The API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added to a bare host).
    model : str
        The served model's name, as ``GET /v1/models`` lists it.
    api_key_env : str, optional
        Name of the environment variable holding the API key (sent as a bearer token).
        The key is read from the environment only, never shown in a repr, log or result.
    concurrency : int
        Requests in flight at once (default 8: enough to keep one server's batch busy).
    timeout : float
        Seconds per request.
    retries : int
        Further attempts after a retryable failure (:func:`is_retryable`), waiting
        :func:`backoff_delays` between them (a server's ``Retry-After`` is honoured).
    backoff : float
        The first wait, doubled at each retry.
    temperature : float
        0 (default): greedy.
    seed : int, optional
        Seeds the backoff jitter (tests).
    give_up_after : int
        After this many requests in a row failed to connect even after their retries, the
        rest of the call fails at once (each with its error) instead of waiting out every
        retry against a server that is gone.
    stream : bool
        True (default): read the reply as a stream of deltas.  ``transformers serve``
        keeps the ``<seg>`` block only this way (its non-streamed reply drops it); for
        other servers both ways give the same text.
    extra_body : dict, optional
        Further request fields for servers that take them, e.g.
        ``{"repetition_penalty": 1.0}`` for a vLLM or SGLang server that applies the
        checkpoint's generation config (Qwen's carries 1.05).  Hosted APIs reject unknown
        fields.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = 300.0,
        retries: int = 4,
        backoff: float = 1.0,
        temperature: float = 0.0,
        seed: int | None = None,
        give_up_after: int = 16,
        stream: bool = True,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        if not isinstance(model, str) or not model.strip():
            raise EndpointError(
                "the served model name is empty; give the name GET /v1/models lists"
            )
        self.model = model.strip()
        self.name = self.model
        self.api_key_env = api_key_env or None
        self._key: str | None = None
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env)
            if value is None or not value.strip():
                raise EndpointError(
                    f"the API key variable {self.api_key_env} is not set (or empty); "
                    f"export {self.api_key_env}=... first, or leave out the key variable "
                    "for a local server that needs none"
                )
            self._key = value.strip()
        if int(concurrency) < 1:
            raise EndpointError(f"concurrency must be >= 1, got {concurrency}")
        if not timeout > 0:
            raise EndpointError(f"timeout must be > 0 seconds, got {timeout}")
        if int(retries) < 0 or backoff < 0:
            raise EndpointError(f"retries and backoff must be >= 0, got {retries}, {backoff}")
        self.concurrency = int(concurrency)
        self.batch_size = 4 * self.concurrency
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.give_up_after = int(give_up_after)
        self.stream = bool(stream)
        self.extra_body = dict(extra_body or {})
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return (
            f"EndpointBackend({self.base_url!r}, {self.model!r}{key}, "
            f"concurrency={self.concurrency})"
        )

    # ------------------------------------------------------------------ http
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            h["Authorization"] = f"Bearer {self._key}"
        return h

    def _open(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one HTTP request, return the open response; raises :class:`HTTPFailure`
        (its message never holds the key: headers are not part of any message)."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=self._headers()
        )
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            raise HTTPFailure(
                exc.code, f"HTTP {exc.code} from {path}: {detail}", retry_after
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise HTTPFailure(None, f"cannot reach {self.base_url}: {reason}") from None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request whose reply is a JSON object."""
        resp = self._open(method, path, body)
        try:
            with resp:
                payload = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            raise HTTPFailure(None, f"{self.base_url} broke off its reply: {exc}") from None
        try:
            out = json.loads(payload)
        except ValueError:
            raise HTTPFailure(
                502, f"{path} answered with something that is not JSON: {payload[:120]!r}"
            ) from None
        if not isinstance(out, dict):
            raise HTTPFailure(502, f"{path} answered with JSON that is not an object")
        return out

    def _chat(self, body: dict[str, Any], stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """``POST /chat/completions``: the reply's fields (``content``, ``reasoning_content``,
        ``finish_reason``, ``usage``, ``model``), streamed or not."""
        if not self.stream:
            return reply_fields(self._call("POST", "/chat/completions", body))
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        resp = self._open("POST", "/chat/completions", body)
        deadline = time.monotonic() + self.timeout
        try:
            with resp:
                return read_stream(resp, deadline, stop)
        except (http.client.HTTPException, OSError) as exc:
            raise HTTPFailure(None, f"{self.base_url} broke off its reply: {exc}") from None

    def check(self) -> None:
        """Fail early, in one line: the URL must answer ``GET /models`` and list the model.

        Raises
        ------
        EndpointError
            Unreachable URL, a key the server refuses, a server that is not
            OpenAI-compatible, or a model name it does not serve (the message lists the
            names it does).
        """
        try:
            listing = self._call("GET", "/models")
        except HTTPFailure as exc:
            if exc.status is None:
                raise EndpointError(
                    f"{exc}; is the server running? (start it as docs/serving.md shows, and "
                    "give its API root, e.g. http://127.0.0.1:8000/v1)"
                ) from None
            if exc.status in (401, 403):
                which = f"the key in {self.api_key_env}" if self.api_key_env else "no API key"
                raise EndpointError(
                    f"{self.base_url} refused {which} (HTTP {exc.status}); name the variable "
                    "that holds a valid key with --api-key-env"
                ) from None
            raise EndpointError(
                f"{self.base_url}/models failed ({exc}); give the API root of an "
                "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
            ) from None
        data = listing.get("data")
        ids = [d.get("id") for d in data if isinstance(d, dict)] if isinstance(data, list) else []
        if self.model not in ids:
            shown = ", ".join(repr(i) for i in ids[:10]) or "none"
            raise EndpointError(
                f"{self.base_url} does not serve a model named {self.model!r}; it lists "
                f"{shown}: pass one of these as the served model name"
            )

    # ------------------------------------------------------------------ generation
    def request_body(
        self, conversation: list[dict[str, Any]], images: Sequence[Any], max_new_tokens: int
    ) -> dict[str, Any]:
        """The chat-completions request of one conversation."""
        return {
            **self.extra_body,
            "model": self.model,
            "messages": to_openai_messages(conversation, images),
            "max_tokens": int(max_new_tokens),
            "temperature": self.temperature,
            "stream": False,
        }

    def _delay(self, attempt: int) -> float:
        with self._rng_lock:
            return backoff_delays(attempt + 1, self.backoff, self._rng)[-1]

    def _one(self, body: dict[str, Any], stop: Callable[[], bool]) -> Generation:
        t0 = time.perf_counter()
        attempt = 0
        while True:
            try:
                gen = generation_from_fields(self._chat(body, stop))
                gen.raw = {**(gen.raw or {}), "attempts": attempt + 1}
                gen.seconds = time.perf_counter() - t0
                return gen
            except HTTPFailure as exc:
                if not is_retryable(exc.status) or attempt >= self.retries or stop():
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    return Generation(
                        None,
                        error=one_line(f"{exc}{tries}"),
                        raw={"status": exc.status, "attempts": attempt + 1},
                        seconds=time.perf_counter() - t0,
                    )
                wait = self._delay(attempt)
                if exc.retry_after is not None:
                    wait = max(wait, min(exc.retry_after, 60.0))
                time.sleep(wait)
                attempt += 1

    def generate(
        self,
        conversations: list[list[dict[str, Any]]],
        images: list[list[Any]],
        *,
        max_new_tokens: int,
        progress: bool = False,
        on_result: Callable[[int, Generation], None] | None = None,
    ) -> list[Generation]:
        """Send every conversation with at most :attr:`concurrency` in flight; input order out.

        ``on_result(i, generation)`` is called as each request finishes (in the worker
        thread, one call at a time), e.g. to write a run log line as soon as it is known.
        A progress bar (``progress``) shows requests/s and generated tokens/s.
        """
        n = len(conversations)
        if len(images) != n:
            raise ValueError(f"{len(images)} image lists for {n} conversations")
        results: list[Generation | None] = [None] * n
        lock = threading.Lock()
        state = {"down": 0, "given_up": False, "tokens": 0}

        def stop() -> bool:
            return state["given_up"]

        bar = None
        if progress and n > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="requests", unit="req")
        t_start = time.perf_counter()

        def work(i: int) -> None:
            if state["given_up"]:
                results[i] = Generation(
                    None,
                    error=f"not sent: {self.give_up_after} requests in a row could not reach "
                    f"{self.base_url}",
                    raw={"status": None, "attempts": 0},
                )
            else:
                try:
                    body = self.request_body(conversations[i], images[i], max_new_tokens)
                except ValueError as exc:
                    results[i] = Generation(None, error=one_line(str(exc)))
                else:
                    results[i] = self._one(body, stop)
            g = results[i]
            with lock:
                unreachable = g.error is not None and (g.raw or {}).get("status", 0) is None
                state["down"] = state["down"] + 1 if unreachable else 0
                if state["down"] >= self.give_up_after:
                    state["given_up"] = True
                state["tokens"] += g.completion_tokens or 0
                if on_result is not None:
                    on_result(i, g)
                if bar is not None:
                    dt = max(time.perf_counter() - t_start, 1e-9)
                    bar.update(1)
                    bar.set_postfix_str(f"{bar.n / dt:.2f} req/s, {state['tokens'] / dt:.1f} tok/s")

        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, max(n, 1)))
        try:
            for future in [pool.submit(work, i) for i in range(n)]:
                future.result()
        except BaseException:  # Ctrl-C: nothing more is sent, streams end at their next line
            state["given_up"] = True
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()
            raise
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
        return [g if g is not None else Generation(None, error="not run") for g in results]


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(2000).decode("utf-8", "replace")
    except Exception:
        body = ""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            err = parsed.get("error", parsed.get("detail", parsed))
            if isinstance(err, dict):
                err = err.get("message", err)
            body = str(err)
    except ValueError:
        pass
    return one_line(body or str(exc.reason), 300)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def served_spec(
    model: str, spec: str | os.PathLike[str] | dict[str, Any] | None
) -> dict[str, Any] | None:
    """The ``omniad.json`` settings a served model runs with, or None when unknown.

    ``spec`` is a mapping, a checkpoint folder or its ``omniad.json``; without it, a
    ``model`` name that is a local checkpoint folder with an ``omniad.json`` gives it
    (``transformers serve`` names a model by the folder it was given).

    >>> served_spec("gpt-4o", None) is None
    True
    """
    from omniad_core.checkpoint import SPEC_FILE, load_spec

    if spec is None:
        try:
            folder = Path(model).expanduser()
            if folder.is_dir() and (folder / SPEC_FILE).is_file():
                return load_spec(folder)
        except OSError:
            pass
        return None
    if not isinstance(spec, (str, os.PathLike)):
        return dict(spec)
    path = Path(spec).expanduser()
    folder = path if path.is_dir() else path.parent
    if not (path.is_dir() or (path.is_file() and path.name == SPEC_FILE)):
        raise FileNotFoundError(
            f"spec {path}: give the served checkpoint's folder or its {SPEC_FILE}"
        )
    found = load_spec(folder)
    if not found:
        raise FileNotFoundError(f"spec {path}: {folder} has no {SPEC_FILE}")
    return found
