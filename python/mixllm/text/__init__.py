"""From prompt text to the router's features, and on to a decision.

* :mod:`.tokens` -- token counts (the MiniLM WordPiece tokenizer, located on disk);
* :mod:`.onnx` -- :class:`~.onnx.Encoder`, the frozen sentence encoder on ONNX Runtime;
* :mod:`.static` -- :class:`~.static.StaticEncoder`, a token table distilled from it;
* :mod:`.tags` -- :class:`~.tags.TagTransform`, the learned tag-enhanced feature transform;
* :mod:`.pipeline` -- :class:`~.pipeline.TextRouter`: prompt view, encoder, transform, router.

Nothing here is imported with :mod:`mixllm` itself: each module loads its heavy dependencies
(ONNX Runtime, tokenizers) only when it is imported.
"""
