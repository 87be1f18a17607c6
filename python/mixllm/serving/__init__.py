"""Serving: the OpenAI-compatible routing proxy (:mod:`.proxy`, ``mixllm serve``), its backends
(:mod:`.backend`, read from the pool file) and replicas on Ray Serve (:mod:`.ray_serve`)."""
