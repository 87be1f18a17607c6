"""Routing data: per-prompt, per-LLM quality, cost, tokens and latency, and the files they come in.

A :class:`RoutingData` (:mod:`.dataset`) holds ``n`` prompts answered (or not) by ``K`` LLMs;
every per-LLM array is ``(n, K)`` float64 in :attr:`RoutingData.models` order, with NaN for
"not observed / unknown". One module per format:

* :mod:`.routerbench` -- :func:`load_routerbench`: RouterBench's wide layout (CSV, Parquet, or
  its published pandas pickle behind ``allow_pickle=True``), one row per prompt, three columns
  per LLM; :func:`routerbench_pool` builds its 11 LLMs from its ``models.json``.
* :mod:`.routerdc` -- :func:`load_routerdc`: RouterDC's JSON lists of ``{"question",
  "scores"}`` records.
* :mod:`.long` -- :func:`load_long` / :func:`save_long`: mixllm's own long format (JSONL, CSV,
  Parquet), one row per (prompt, LLM) observation; the format the project writes.
* :mod:`.auto` -- :func:`load_data`: any of the above, chosen from the path.
* :mod:`.pool` -- pool files (the LLMs, their prices and latency profiles) in TOML or JSON,
  read by :func:`load_pool` and written by :func:`save_pool`.

Token counts come from :func:`mixllm.text.tokens.count_tokens` (MiniLM WordPiece). Cost of LLM
``k`` on prompt ``i`` when it has to be computed (USD)::

    cost[i, k] = input_tokens[i, k] * input_price_k / 1e6 + output_tokens[i, k] * output_price_k / 1e6

Every problem with a file raises :class:`~mixllm.types.DataError` naming the file and what is
wrong with it. docs/DATA.md specifies the formats and records what was measured on the real data.
"""

from ..types import DataError
from .auto import load_data
from .dataset import RoutingData, cost_fit
from .long import LONG_OPTIONAL, LONG_REQUIRED, load_long, save_long
from .pool import POOL_VERSION, load_endpoints, load_pool, load_pool_settings, save_pool
from .routerbench import ROUTERBENCH_LATENCY_ASSUMPTIONS, load_routerbench, routerbench_pool
from .routerdc import load_routerdc

__all__ = [
    "DataError",
    "LONG_OPTIONAL",
    "LONG_REQUIRED",
    "POOL_VERSION",
    "ROUTERBENCH_LATENCY_ASSUMPTIONS",
    "RoutingData",
    "cost_fit",
    "load_data",
    "load_endpoints",
    "load_long",
    "load_pool",
    "load_pool_settings",
    "load_routerbench",
    "load_routerdc",
    "routerbench_pool",
    "save_long",
    "save_pool",
]
