"""Evaluating routers offline: replay a dataset as a stream (:mod:`.evaluate`), the paper-style
experiments (:mod:`.experiments`), the queueing simulation behind the latency term
(:mod:`.latency`), budget control (:mod:`.budget`) and plots (:mod:`.plot`)."""
