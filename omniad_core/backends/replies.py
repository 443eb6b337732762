"""Replies of OpenAI-compatible servers: messages out, rebuilt responses in.

Servers rewrite replies: with a reasoning parser (vLLM's and SGLang's
``--reasoning-parser``, ``transformers serve``'s own split) the ``<think>`` text comes in
``reasoning_content`` and may take the ``<seg>`` block with it.  :func:`rebuild_response`
puts the full reply back together and says when the seg is gone.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from omniad_core.backends.base import Generation, HTTPFailure, one_line

__all__ = [
    "generation_from_fields",
    "image_data_url",
    "read_stream",
    "rebuild_response",
    "reply_fields",
    "to_openai_messages",
]

_SEG_BLOCK = re.compile(r"<\s*seg\s*>.*?(?:<\s*[/\\]\s*seg\s*>|$)", re.IGNORECASE | re.DOTALL)
_SEG_OPEN = re.compile(r"<\s*seg\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_TAGS = re.compile(r"<\s*[/\\]?\s*think\s*>", re.IGNORECASE)


def rebuild_response(
    content: str | None, reasoning: str | None, *, truncated: bool = False
) -> tuple[str, bool]:
    """The full reply from a server's ``content`` and ``reasoning_content``.

    Returns ``(text, seg_stripped)``.  Without reasoning text the content is the reply,
    as generated.  With it, the reply is rebuilt in the format's order: the ``<seg>``
    block (found in either field), then ``<think>`` + the reasoning + ``</think>``, then
    the rest of the content (the ``<answer>``).  ``seg_stripped`` is True when neither
    field holds a ``<seg>`` block: the server dropped it and the mask cannot be recovered.
    ``truncated`` (the reply stopped at the token limit): when nothing follows the
    reasoning, ``</think>`` is not added, so the reply still reads as cut off.
    Linear time: each regex is scanned once, without nested quantifiers.

    >>> rebuild_response("<seg>(1, 2)</seg><think>x</think><answer>A</answer>", None)
    ('<seg>(1, 2)</seg><think>x</think><answer>A</answer>', False)
    >>> rebuild_response("<answer>A</answer>", "<seg>(1, 2)</seg>a scratch")
    ('<seg>(1, 2)</seg><think>a scratch</think><answer>A</answer>', False)
    >>> rebuild_response("<answer>B</answer>", "no defect")
    ('<think>no defect</think><answer>B</answer>', True)
    >>> rebuild_response("<seg></seg>", "the object", truncated=True)
    ('<seg></seg><think>the object', False)
    """
    content = content or ""
    if not reasoning or not reasoning.strip():
        return content, False
    seg = ""
    rest_reasoning = reasoning
    m = _SEG_BLOCK.search(reasoning)
    if m is not None:
        seg = m.group(0)
        rest_reasoning = reasoning[: m.start()] + reasoning[m.end() :]
    rest_content = content
    m = _SEG_BLOCK.search(content)
    if m is not None:
        if not seg:
            seg = m.group(0)
        rest_content = content[: m.start()] + content[m.end() :]
    think = _THINK_TAGS.sub("", rest_reasoning).strip()
    body = rest_content.strip()
    if _THINK_OPEN.search(body) is None:
        close = "" if truncated and not body else "</think>"
        body = f"<think>{think}{close}{body}"
    return f"{seg}{body}", not seg


# --------------------------------------------------------------------------- messages
def image_data_url(image: Any) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL (lossless: the server sees our pixels).

    >>> from PIL import Image
    >>> image_data_url(Image.new("RGB", (2, 2)))[:22]
    'data:image/png;base64,'
    """
    img = image if image.mode in ("RGB", "L", "RGBA") else image.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(
    messages: list[dict[str, Any]], images: Sequence[Any]
) -> list[dict[str, Any]]:
    """:mod:`omniad_core.prompts` messages as OpenAI chat messages.

    Text parts stay text (a system or assistant turn becomes one string); the i-th image
    entry becomes an ``image_url`` part holding ``images[i]`` as a PNG data URL, so a
    1-shot prompt sends its reference first and the query second, as the prompt orders them.

    >>> from PIL import Image
    >>> from omniad_core.prompts import build_messages, split_images
    >>> msgs, imgs = split_images(build_messages("Q?", Image.new("RGB", (2, 2)), options=["x", "y"]))
    >>> out = to_openai_messages(msgs, imgs)
    >>> [p["type"] for p in out[1]["content"]], out[0]["content"][:21]
    (['image_url', 'text'], 'You are a special ass')
    """
    out: list[dict[str, Any]] = []
    k = 0
    for m in messages:
        content = m.get("content")
        role = m["role"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for c in content or []:
            if c.get("type") == "image":
                if k >= len(images):
                    raise ValueError(
                        f"the conversation has more image entries than images ({len(images)})"
                    )
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(images[k])}})
                k += 1
            elif c.get("type") == "text":
                parts.append({"type": "text", "text": c["text"]})
            else:
                raise ValueError(f"unsupported content type {c.get('type')!r} in a {role} turn")
        if role != "user" and all(p["type"] == "text" for p in parts):
            out.append({"role": role, "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": role, "content": parts})
    if k != len(images):
        raise ValueError(f"{len(images)} images for {k} image entries in the conversation")
    return out


def reply_fields(reply: dict[str, Any]) -> dict[str, Any]:
    """The fields of a non-streamed chat-completions reply."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise HTTPFailure(502, f"the reply has no choices: {json.dumps(reply)[:160]}")
    choice = choices[0]
    msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    reasoning = msg.get("reasoning_content")
    if reasoning is None:
        reasoning = msg.get("reasoning")  # newer vLLM names it so
    return {
        "content": content if isinstance(content, str) else None,
        "reasoning_content": reasoning if isinstance(reasoning, str) else None,
        "finish_reason": choice.get("finish_reason"),
        "usage": reply.get("usage") if isinstance(reply.get("usage"), dict) else None,
        "model": reply.get("model"),
    }


def read_stream(
    lines: Any, deadline: float, stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """The fields of a streamed reply (server-sent events), its deltas joined.

    ``deadline`` (``time.monotonic()``) bounds the whole reply; ``stop()`` turning True
    (the caller was interrupted) ends it at the next line.

    Streaming is what keeps the seg with ``transformers serve``: its non-streamed reply
    overwrites the text before ``<think>`` with the text after ``</think>``, while the
    stream sends both as ``content`` deltas.
    """
    content: list[str] = []
    reasoning: list[str] = []
    out: dict[str, Any] = {"finish_reason": None, "usage": None, "model": None}
    for raw_line in lines:
        if time.monotonic() > deadline:
            raise HTTPFailure(None, "the reply took longer than the timeout")
        if stop is not None and stop():
            raise HTTPFailure(0, "stopped: the run was interrupted")
        line = raw_line.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise HTTPFailure(502, f"a streamed chunk is not JSON: {data[:120]!r}") from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            err = chunk["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            code = err.get("code") if isinstance(err, dict) else None
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
            raise HTTPFailure(status, f"the server failed mid-reply: {one_line(str(msg), 300)}")
        out["model"] = chunk.get("model") or out["model"]
        if isinstance(chunk.get("usage"), dict):
            out["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            r = delta.get("reasoning_content", delta.get("reasoning"))
            if isinstance(r, str):
                reasoning.append(r)
            if choice.get("finish_reason"):
                out["finish_reason"] = choice["finish_reason"]
    else:
        if out["finish_reason"] is None:
            raise HTTPFailure(None, "the stream ended before the reply was complete")
    out["content"] = "".join(content)
    out["reasoning_content"] = "".join(reasoning) if reasoning else None
    return out


def generation_from_fields(fields: dict[str, Any]) -> Generation:
    usage = fields.get("usage") or {}
    text, stripped = rebuild_response(
        fields.get("content"),
        fields.get("reasoning_content"),
        truncated=fields.get("finish_reason") == "length",
    )
    return Generation(
        text,
        raw=dict(fields),
        seg_stripped=stripped,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
    )


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
