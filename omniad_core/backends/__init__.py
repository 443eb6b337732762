"""What produces the model's text: an in-process transformers model or a served model.

The :class:`~omniad_core.inspector.Inspector` builds the prompt, prepares the images and
parses the reply in one code path; a *backend* turns its chat messages and images into
text.  Two backends are built in, and a third is optional:

- :class:`TransformersBackend`: ``model.generate`` in this process (batched, greedy, left
  padding, the pinned settings of :data:`omniad_core.inspector.GREEDY`).
- :class:`EndpointBackend`: an OpenAI-compatible chat endpoint (vLLM, SGLang,
  ``transformers serve``, a hosted model), many requests in flight at once, retried with
  exponential backoff, a failed request reported per item (:attr:`Generation.error`),
  never raised.
- :class:`VLLMBackend`: vLLM's offline engine when ``vllm`` is installed (untested on
  the CPU machines this project is tested on; see ``docs/serving.md``).

Servers rewrite replies: with a reasoning parser (vLLM's and SGLang's
``--reasoning-parser``, ``transformers serve``'s own split) the ``<think>`` text comes in
``reasoning_content`` and may take the ``<seg>`` block with it.
:func:`rebuild_response` puts the full reply back together and says when the seg is
gone (:attr:`Generation.seg_stripped`).

Only the standard library is used for HTTP (``urllib`` in a thread pool); torch and
transformers are imported by :class:`TransformersBackend` only.
"""

from omniad_core.backends.base import SEG_STRIPPED, Backend, EndpointError, Generation
from omniad_core.backends.endpoint import (
    EndpointBackend,
    backoff_delays,
    is_retryable,
    normalize_base_url,
)
from omniad_core.backends.local import TransformersBackend, VLLMBackend
from omniad_core.backends.replies import image_data_url, rebuild_response, to_openai_messages

__all__ = [
    "SEG_STRIPPED",
    "Backend",
    "EndpointBackend",
    "EndpointError",
    "Generation",
    "TransformersBackend",
    "VLLMBackend",
    "backoff_delays",
    "image_data_url",
    "is_retryable",
    "normalize_base_url",
    "rebuild_response",
    "to_openai_messages",
]
