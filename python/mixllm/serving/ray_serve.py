"""Scale-out on Ray Serve: proxy replicas that learn together (the ``ray`` extra).

Each replica runs the app of :mod:`mixllm.serving.proxy` and learns online from the feedback it gets.
Every ``sync_every_s`` it pushes what it learned since its last sync
(:meth:`~mixllm.router.Router.export_delta`: per LLM the change of the sums A and b) to one
``_Hub`` actor, which adds the deltas up, and rebuilds its router as the common start plus
everything the hub holds (:meth:`~mixllm.router.Router.apply_delta`, exact). Feedback that
reaches a replica other than the one that answered (Serve routes each request independently)
is left in the hub's mailbox for the answering replica, named by the tag in the response id,
and learned at its next sync (:meth:`Proxy.feedback <mixllm.serving.proxy.Proxy.feedback>`, the
path of the proxy's own ``/v1/feedback``). An outcome memory (neighbour features) is not
merged: each replica's holds the outcomes of its own responses. See docs/SERVING.md.

Needs ``pip install 'mixllm[ray,serve]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..text.encoder import Encoder
from ..types import LLM
from .backend import Backend
from .proxy import FeedbackConflict

__all__ = ["build_app"]

log = logging.getLogger("mixllm.serving.ray_serve")


class _Hub:
    """The sum of every replica's deltas, and a mailbox of forwarded feedback per replica."""

    def __init__(self) -> None:
        self.version = 0
        self.total: dict[str, Any] | None = None
        self.mail: dict[str, list[tuple[str, float | None, bool | None]]] = {}

    def push(self, delta: dict[str, Any]) -> int:
        if self.total is None:
            self.total = {"dim": delta["dim"], "fit_intercept": delta["fit_intercept"],
                          "llms": {}}
        for name, d in delta["llms"].items():
            t = self.total["llms"].setdefault(
                name, {"A": np.zeros_like(d["A"]), "b": np.zeros_like(d["b"]), "n_obs": 0})
            t["A"] = t["A"] + d["A"]
            t["b"] = t["b"] + d["b"]
            t["n_obs"] += int(d["n_obs"])
        self.version += 1
        return self.version

    def state(self) -> tuple[int, dict[str, Any] | None]:
        return self.version, self.total

    def post(self, replica: str, rid: str, quality: float | None, up: bool | None) -> None:
        box = self.mail.setdefault(replica, [])
        if len(box) < 100_000:  # bounded: a replica that is gone never empties its box
            box.append((rid, quality, up))

    def take(self, replica: str) -> list[tuple[str, float | None, bool | None]]:
        return self.mail.pop(replica, [])


class _Replica:
    """One proxy replica (wrapped by ``serve.ingress`` in :func:`build_app`)."""

    def __init__(self, pool: Sequence[LLM], backends: Mapping[str, Backend], state_dir: Any,
                 encoder: Encoder | None, config: Any, hub: Any, sync_every_s: float) -> None:
        import ray

        from .proxy import ServeConfig, create_proxy

        self._ray = ray
        self.hub = hub
        self.tag = secrets.token_hex(4)
        cfg = config or ServeConfig()
        # Replicas load the state folder but do not write it (concurrent writers would
        # remove each other's files).
        cfg = dataclasses.replace(cfg, save_state=False)
        self.proxy = create_proxy(pool, backends, state_dir=state_dir, encoder=encoder,
                                  config=cfg, id_prefix=self.tag + "-",
                                  forward_feedback=self._forward)
        self.initial = self.proxy.router.clone()
        self.last = self.initial.clone()
        self.version = 0
        self.period = float(sync_every_s)
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True, name="mixllm-sync").start()

    def __serve_build_asgi_app__(self):
        return self.proxy.app

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def _forward(self, rid: str, quality: float | None, up: bool | None) -> bool:
        parts = rid.split("-")
        if len(parts) < 4 or parts[:2] != ["chatcmpl", "mixllm"] or parts[2] == self.tag:
            return False
        self._ray.get(self.hub.post.remote(parts[2], rid, quality, up))
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sync()
            except Exception:
                log.exception("sync with the hub failed")

    def sync(self) -> None:
        """Learn forwarded feedback, push the local delta, rebuild from the hub's sum."""
        ray, proxy = self._ray, self.proxy
        for rid, quality, up in ray.get(self.hub.take.remote(self.tag)):
            try:
                proxy.feedback(rid, quality, up)
            except KeyError:
                log.warning("forwarded feedback for an expired response id %s", rid)
            except (FeedbackConflict, ValueError) as exc:
                log.warning("forwarded feedback for %s refused: %s", rid, exc or "answered")

        def exchange(router):
            delta = router.export_delta(self.last)
            if any(d["n_obs"] for d in delta["llms"].values()):
                ray.get(self.hub.push.remote(delta))
            version, total = ray.get(self.hub.state.remote())
            if version == self.version:
                return None
            fresh = self.initial.clone()
            if total is not None:
                fresh.apply_delta(total)
            self.last = fresh.clone()
            self.version = version
            return fresh

        proxy.replace_router(exchange)


def build_app(pool: Sequence[LLM], backends: Mapping[str, Backend], *, state_dir: Any = None,
              encoder: Encoder | None = None, config: Any = None, num_replicas: int = 2,
              sync_every_s: float = 1.0, hub_name: str = "mixllm-hub"):
    """A Ray Serve application of ``num_replicas`` proxy replicas sharing one hub actor.

    Run it with ``ray.serve.run(build_app(...))`` inside a Ray cluster (``ray.init()``); the
    arguments are those of :func:`mixllm.serving.proxy.create_app`. The encoder is shipped to every
    replica, so it must be picklable (the default, ``None``, builds MiniLM in each replica).
    """
    try:
        import ray
        from ray import serve
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("the Ray deployment needs pip install 'mixllm[ray]'") from exc

    hub = ray.remote(num_cpus=0)(_Hub).options(name=hub_name, get_if_exists=True).remote()
    replica = serve.deployment(num_replicas=num_replicas, name="mixllm")(
        serve.ingress()(_Replica))
    return replica.bind(list(pool), dict(backends), state_dir, encoder, config, hub,
                        sync_every_s)
