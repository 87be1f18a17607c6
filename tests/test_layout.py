"""The package's shape: what ``import mixllm`` loads, the encoder protocol, the one path from
text to decision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mixllm
from mixllm import LLM, PipelineConfig, TextRouter
from mixllm.text.encoder import Encoder

from fakes import HashEncoder

PYTHON_DIR = str(Path(mixllm.__file__).resolve().parents[1])


def _modules_after(code: str) -> set[str]:
    """The modules loaded by ``code`` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": PYTHON_DIR})
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_mixllm_loads_no_encoder_stack_and_no_native_core():
    loaded = _modules_after("import mixllm")
    for heavy in ("onnxruntime", "tokenizers", "tqdm", "mixllm._core", "pandas", "sklearn"):
        assert heavy not in loaded, heavy
    # a top-level name loads its module on first use, and only then
    loaded = _modules_after("import mixllm; mixllm.Router")
    assert "mixllm._core" in loaded and "onnxruntime" not in loaded


def test_reading_data_needs_no_native_core(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt_id": "p1", "prompt": "hi", "model": "a", "quality": 1.0,
             "input_tokens": 3, "output_tokens": 4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = _modules_after(f"import mixllm; d = mixllm.load_data({str(path)!r}); "
                            "assert d.models == ['a']")
    assert "mixllm._core" not in loaded and "mixllm.router" not in loaded


def test_top_level_names_and_version():
    for name in mixllm.__all__:
        assert getattr(mixllm, name) is not None
    assert {"Encoder", "OnnxEncoder", "StaticEncoder", "CacheInfo", "TextDecision",
            "load_data"} <= set(mixllm.__all__)
    assert not hasattr(mixllm, "load")  # datasets: load_data; routers: Router.load
    with pytest.raises(AttributeError):
        mixllm.no_such_name  # noqa: B018
    assert isinstance(mixllm.__version__, str) and mixllm.__version__
    assert (Path(mixllm.__file__).parent / "py.typed").is_file()  # PEP 561: the hints count


def test_encoders_meet_the_protocol():
    assert isinstance(HashEncoder(), Encoder)

    class Partial:  # no encode_with_counts
        dim, identity, max_length, model_sha256 = 4, "p", 8, "0" * 64

        def encode(self, texts, progress=False):
            return np.zeros((len(texts), 4), np.float32)

        def count_tokens(self, texts):
            return np.zeros(len(texts), np.int64)

    assert not isinstance(Partial(), Encoder)
    with pytest.raises(TypeError, match="Encoder"):
        TextRouter([LLM("a", 1, 1)], PipelineConfig(), Partial())


@pytest.mark.parametrize("tags", [False, True])
def test_decide_is_route_with_its_features_and_one_tokenisation(rng, tags):
    pool = [LLM("cheap", 0.1, 0.2), LLM("big", 10.0, 30.0)]
    enc = HashEncoder(8)
    tr = TextRouter(pool, PipelineConfig(view="full", tags=tags, n_clusters=2), enc)
    E = rng.normal(size=(40, 8))
    tr.fit(E, rng.random((40, 2)), np.full((40, 2), 50.0), ["a", "b"] * 20 if tags else None)
    prompt = "prove that there are infinitely many primes"
    enc.calls.clear()
    td = tr.decide(prompt, lam=0.01)
    assert enc.calls == ["encode_with_counts"]  # one tokenisation for features and count
    x, n_in = tr.featurize(prompt)
    np.testing.assert_array_equal(td.features, x)
    assert td.input_tokens == n_in == len(prompt.split())
    assert td.decision == tr.router.route(x, n_in, lam=0.01) == tr.route(prompt, lam=0.01)
    # another view embeds a part of the prompt and counts the whole of it: the view's count
    # with its embedding and the other blocks' alone (counts that add over blocks), ...
    tr.config = PipelineConfig(view="last_block", tags=tags)
    enc.calls.clear()
    td = tr.decide("Examples: 1 + 1 = 2\n\nWhat is 2 + 2?")
    assert enc.calls == ["encode_with_counts", "count_tokens"] and td.input_tokens == 11
    # ... or, where the encoder does not say its counts add up, the whole prompt apart
    enc.additive_counts = False
    enc.calls.clear()
    assert tr.decide("Examples: 1 + 1 = 2\n\nWhat is 2 + 2?").input_tokens == 11
    assert enc.calls == ["encode", "count_tokens"]
    enc.additive_counts = True
    enc.calls.clear()
    assert tr.decide("  What is 2 + 2?\n").input_tokens == 5  # one block: nothing else
    assert enc.calls == ["encode_with_counts"]
    # feedback learns on the features of the decision
    before = tr.router.n_observations()["big"]
    assert tr.feedback(prompt, "big", 1.0, 20) is tr
    assert tr.router.n_observations()["big"] == before + 1


class _CountingEncoder(HashEncoder):
    """The hash embedding with MiniLM's real token counts (what the static encoder counts)."""

    def __init__(self) -> None:
        from mixllm.text.tokens import _tokenizer, counts_add_at_line_breaks

        super().__init__(8)
        self.additive_counts = counts_add_at_line_breaks(_tokenizer())

    def _count(self, texts):
        from mixllm.text.tokens import count_tokens

        return count_tokens(texts)


#: Pieces of prompts: words, punctuation, CJK, accents, controls, special tokens, and every
#: character ``str.isspace`` accepts (what a block's strip removes at a cut).
_PIECES = ["word", "Wörd", "ÉCOLE", "naïve", "e\u0301", "\u0301", "日本語", "x" * 120, "!?",
           "(a)", "[SEP]", "[MASK]x", "\x00", "\ufffd", "\u200b", "\x1fz", "A:", "1.5", "\t",
           "\r\n", "\n", "\n\n", "\n\n\n", " ", *(chr(c) for c in range(0x3001)
                                        if chr(c).isspace())]


def test_minilm_counts_add_over_blocks_for_every_view(rng):
    from mixllm.text.tokens import _tokenizer, count_tokens, counts_add_at_line_breaks

    assert counts_add_at_line_breaks(_tokenizer())
    enc = _CountingEncoder()
    tr = TextRouter([LLM("a", 1, 1)], PipelineConfig(tags=False), enc)
    tr.fit(rng.normal(size=(4, 8)), rng.random((4, 1)), np.full((4, 1), 5.0), None)
    prompts = ["".join(rng.choice(_PIECES, size=int(rng.integers(0, 30))))
               for _ in range(600)]
    whole = count_tokens(prompts)
    for view in ("full", "last_block", "first_last"):
        tr.config = PipelineConfig(view=view, tags=False)
        got = [tr.featurize(p)[1] for p in prompts]
        np.testing.assert_array_equal(got, whole, err_msg=view)


@pytest.mark.realdata
def test_input_tokens_are_the_whole_prompts_count_on_the_real_prompts(shared_data, rng):
    from mixllm.data import load_routerbench, load_routerdc
    from mixllm.text.tokens import count_tokens

    prompts = list(load_routerbench(shared_data / "routerbench_subset").prompts)
    dc = load_routerdc(shared_data / "routerdc_7llm").prompts
    prompts += [dc[i] for i in rng.choice(len(dc), 1500, replace=False)]
    enc = _CountingEncoder()
    tr = TextRouter([LLM("a", 1, 1)], PipelineConfig(tags=False), enc)
    tr.fit(rng.normal(size=(4, 8)), rng.random((4, 1)), np.full((4, 1), 5.0), None)
    whole = count_tokens(prompts)
    for view in ("last_block", "first_last"):
        tr.config = PipelineConfig(view=view, tags=False)
        enc.calls.clear()
        got = [tr.featurize(p)[1] for p in prompts]
        np.testing.assert_array_equal(got, whole, err_msg=view)
        # the few-shot prompts were cut: the other blocks counted apart, nothing twice
        assert enc.calls.count("count_tokens") > 1000
        assert enc.calls.count("encode_with_counts") == len(prompts)


def test_encoders_on_minilms_tokenizer_say_their_counts_add_up():
    from mixllm.text.onnx import OnnxEncoder
    from mixllm.text.static import StaticEncoder, StaticTable
    from mixllm.text.tokens import DEFAULT_TOKENIZER_FILE, package_file

    tok_json = package_file(DEFAULT_TOKENIZER_FILE).read_bytes()
    table = StaticTable(np.ones((30522, 3), np.float32), np.ones(30522, np.float32), tok_json)
    assert StaticEncoder(table).additive_counts is True
    assert OnnxEncoder().additive_counts is True


def test_learn_takes_a_decision_back_to_the_router_and_the_outcome_memory(rng):
    pool = [LLM("cheap", 0.1, 0.2), LLM("big", 10.0, 30.0)]
    tr = TextRouter(pool, PipelineConfig(features="neighbours", neighbours=(3,), ridge=1.0),
                    HashEncoder(8))
    tr.fit(rng.normal(size=(20, 8)), rng.random((20, 2)), np.full((20, 2), 50.0), None)
    td = tr.decide("Examples: 1 + 1 = 2\n\nWhat is 2 + 2?")
    np.testing.assert_array_equal(td.embedding, tr.encoder.encode(["What is 2 + 2?"])[0])
    n, obs = len(tr.memory), tr.router.n_observations()["big"]
    before = tr.memory.features(td.embedding[None])[0]
    assert tr.learn(td.features, "big", 0.0, 5.0, embedding=td.embedding, weight=0.5) is tr
    assert len(tr.memory) == n  # a weighted outcome (a thumb): the router only
    tr.learn(td.features, "big", 1.0, 5.0, embedding=td.embedding)
    assert len(tr.memory) == n + 1 and tr.router.n_observations()["big"] == obs + 2
    # the memory holds the outcome at the prompt's embedding, its nearest neighbour now
    after = tr.memory.features(td.embedding[None])[0]
    assert after[1] > before[1]  # "big" answered it with quality 1
    tr.feedback("What is 3 + 3?", "cheap", 1.0, 5.0)  # text: embedded again, learned alike
    assert len(tr.memory) == n + 2


def test_set_router_checks_what_it_takes(rng):
    pool = [LLM("a", 1, 1), LLM("b", 2, 2)]
    tr = TextRouter(pool, PipelineConfig(tags=False), HashEncoder(8))
    tr.fit(rng.normal(size=(10, 8)), rng.random((10, 2)), np.full((10, 2), 5.0), None)
    fresh = tr.router.clone()
    old = tr.set_router(fresh)
    assert tr.router is fresh and old is not fresh
    with pytest.raises(ValueError, match="features"):
        tr.set_router(mixllm.Router(pool, 3))
    with pytest.raises(TypeError):
        tr.set_router("router")
    assert tr.router is fresh


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_router_pickles_through_its_checked_state_format(rng, engine):
    import pickle

    from mixllm import Router, StateError

    pool = [LLM("a", 1.0, 2.0), LLM("b", 0.2, 0.4), LLM("c", 5.0, 5.0)]
    r = Router(pool, 6, alpha=0.1, engine=engine)
    r.fit(rng.normal(size=(30, 6)), rng.random((30, 3)), rng.integers(1, 50, (30, 3)) * 1.0)
    X = rng.normal(size=(20, 6))
    for i in range(12):  # feedback after the fit: corrections a plain copy of A, b would lose
        assert r.feedback(X[i], "abc"[i % 3], 0.5, 10.0) is r
    assert r.feedback_thumbs(X[0], "b", True, 3.0) is r
    state = r.to_bytes()
    raw = pickle.dumps(r)
    back = pickle.loads(raw)
    assert back.engine == engine and back.names == r.names
    assert back.to_bytes() == r.to_bytes()  # the same state, array for array
    for x in X:
        assert back.route(x, 100, lam=0.05) == r.route(x, 100, lam=0.05)
    back.feedback(X[1], "a", 1.0, 5.0)
    r.feedback(X[1], "a", 1.0, 5.0)
    assert back.route(X[2], 10) == r.route(X[2], 10)
    # the pickle carries the checked bytes: damage in them is caught, not loaded
    i = raw.find(state)
    assert i > 0
    bad = bytearray(raw)
    bad[i + len(state) // 2] ^= 0xFF  # inside the arrays
    with pytest.raises(StateError):
        pickle.loads(bytes(bad))
