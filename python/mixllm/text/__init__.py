"""From prompt text to the router's features, and on to a decision.

* :mod:`.tokens` -- where the default model's files are; token counts with its tokenizer;
* :mod:`.encoder` -- the :class:`~.encoder.Encoder` protocol every encoder meets, and the
  input checks and read-only attributes they share;
* :mod:`.onnx` -- :class:`~.onnx.OnnxEncoder`, a frozen transformer on ONNX Runtime (MiniLM
  by default);
* :mod:`.static` -- :class:`~.static.StaticEncoder`, a token table distilled from it, pooled
  in the C++ core;
* :mod:`.tags` -- :class:`~.tags.TagTransform`, the learned tag-enhanced feature transform;
* :mod:`.neighbours` -- :class:`~.neighbours.OutcomeMemory`, each LLM's mean outcome on the
  nearest stored prompts;
* :mod:`.selection` -- the feature map and ridge chosen inside fit, by cross-validation;
* :mod:`.pipeline` -- :class:`~.pipeline.TextRouter`: prompt view, encoder, transform and
  router; :meth:`~.pipeline.TextRouter.decide` is the one path from text to decision.

Nothing here is imported with :mod:`mixllm` itself: each module loads its heavy dependencies
(ONNX Runtime, tokenizers, tqdm) only when it is imported.
"""
