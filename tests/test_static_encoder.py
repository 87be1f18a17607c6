"""The static encoder: a tiny table built here against the NumPy reference, its file format, the
TextRouter save/load path that rebuilds it, and (a few seconds) a table distilled from MiniLM.

Tolerance: the core pools in float32 (see tests/test_kernels.py); a tiny table's sums are exact
to ~1e-6 of the float64 reference.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from mixllm import LLM, PipelineConfig, TextRouter, _reference
from mixllm.cli import main
from mixllm.text.static import (StaticEncoder, StaticTable, build_table, default_table_path,
                                   zipf_sif_weights)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = ["the", "sum", "product", "python", "function", "hello", "movie", "list", "of"]
VOCAB = {t: i for i, t in enumerate(SPECIALS + WORDS)}
DIM = 7


def tiny_tokenizer_json() -> bytes:
    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])])
    return tok.to_str().encode()


def tiny_table(seed: int = 7) -> StaticTable:
    rng = np.random.default_rng(seed)
    T = rng.normal(size=(len(VOCAB), DIM)).astype(np.float16).astype(np.float32)
    w = rng.uniform(0.1, 1.0, size=len(VOCAB)).astype(np.float32)
    return StaticTable(T, w, tiny_tokenizer_json())


def oracle(table: StaticTable, texts, max_length=512) -> np.ndarray:
    ids = [[VOCAB.get(w, VOCAB["[UNK]"]) for w in t.split()][:max_length] for t in texts]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in ids])]).astype(np.int64)
    flat = np.array([t for r in ids for t in r], dtype=np.int64)
    return _reference.embed_pool(table.table, table.weights, flat, offsets)


TEXTS = ["the sum of the product", "python function", "hello", "", "zebra movie list",
         "list " * 40]


def test_encode_matches_the_reference_on_every_backend(backend):
    table = tiny_table()
    enc = StaticEncoder(table)
    got = enc.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), DIM) and enc.dim == DIM
    np.testing.assert_allclose(got, oracle(table, TEXTS), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(got[3], 0.0)  # no tokens: the zero vector
    np.testing.assert_allclose(np.linalg.norm(got[[0, 1, 2, 4, 5]], axis=1), 1.0, atol=1e-6)
    # one at a time (the serving path) equals the batch
    for t, row in zip(TEXTS, got):
        np.testing.assert_array_equal(enc.encode_one(t), row)


def test_truncation_counts_and_one_tokenisation():
    table = tiny_table()
    enc = StaticEncoder(table, max_length=3)
    texts = ["the sum of the product", "hello hello"]
    np.testing.assert_allclose(enc.encode(texts), oracle(table, texts, 3), atol=2e-6)
    np.testing.assert_array_equal(enc.count_tokens(texts), [5, 2])  # never truncated
    np.testing.assert_array_equal(enc.count_tokens(texts, special_tokens=True), [7, 4])
    E, n = enc.encode_with_counts(texts)
    np.testing.assert_array_equal(E, enc.encode(texts))
    np.testing.assert_array_equal(n, [5, 2])
    assert StaticEncoder(table).identity != enc.identity  # max_length is part of it
    assert enc.max_length == 3 and enc.table_path is None  # a table from memory
    assert "Tokens embedded" in StaticEncoder.max_length.__doc__
    with pytest.raises(AttributeError, match="no setter"):
        enc.max_length = 4


def test_bad_inputs_are_value_errors():
    enc = StaticEncoder(tiny_table())
    for bad in ("a str", [b"bytes"], [1], ["ok", None]):
        with pytest.raises(ValueError):
            enc.encode(bad)
    with pytest.raises(ValueError, match="surrogate|Unicode"):
        enc.encode(["\ud800"])
    with pytest.raises(ValueError, match="max_length"):
        StaticEncoder(tiny_table(), max_length=0)
    with pytest.raises(ValueError, match="rows"):
        StaticEncoder(StaticTable(np.ones((3, 2)), np.ones(3), tiny_tokenizer_json()))
    with pytest.raises(ValueError, match="non-negative"):
        StaticTable(np.ones((13, 2)), -np.ones(13), tiny_tokenizer_json())


def test_table_file_round_trip_and_damage(tmp_path):
    table = tiny_table()
    path = tmp_path / "t.npz"
    table.save(path)
    back = StaticEncoder(path)
    enc = StaticEncoder(table)
    assert back.identity == enc.identity and back.model_sha256 == enc.model_sha256
    np.testing.assert_array_equal(back.encode(TEXTS), enc.encode(TEXTS))
    assert StaticEncoder(tiny_table(seed=8)).identity != enc.identity
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0xFF  # inside the first array's data
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum|readable"):
        StaticTable.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="readable"):
        StaticTable.load(tmp_path / "junk.npz")


def test_missing_default_table_without_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="static-table"):
        StaticEncoder(cache_dir=tmp_path, build=False)


def test_zipf_sif_weights_rank_words_after_the():
    w = zipf_sif_weights(Tokenizer.from_str(tiny_tokenizer_json().decode()))
    the = VOCAB["the"]
    assert w[the] < w[the + 1] < w[the + 2]          # rarer words weigh more
    assert np.all(w[:the] == w[0]) and 0 < w[the] < w[0] < 1


# ------------------------------------------------------------------------- TextRouter
POOL = [LLM("big", 10.0, 30.0), LLM("small", 0.2, 0.2)]


def _fit_router(enc) -> TextRouter:
    rng = np.random.default_rng(0)
    prompts = [" ".join(rng.choice(WORDS, size=5)) for _ in range(60)]
    E = enc.encode(prompts)
    q = np.stack([np.ones(60), (E[:, 0] > 0).astype(float)], axis=1)
    out = np.full((60, 2), 50.0)
    return TextRouter(POOL, PipelineConfig(tags=False, ridge=1.0), enc).fit(E, q, out, None), prompts


def test_text_router_route_and_reload_rebuilds_the_static_encoder(tmp_path):
    path = tmp_path / "table.npz"
    tiny_table().save(path)
    enc = StaticEncoder(path)
    tr, prompts = _fit_router(enc)
    for p in prompts[:5]:
        d = tr.route(p, lam=1e-3)
        assert d.llm in ("big", "small")
        # the one-tokenisation path gives the same decision as explicit counts
        d2 = tr.route(p, lam=1e-3, input_tokens=float(enc.count_tokens([p])[0]))
        np.testing.assert_array_equal(d.score, d2.score)
    tr.save(tmp_path / "state")
    manifest = json.loads((tmp_path / "state" / "manifest.json").read_text())
    assert manifest["encoder"]["kind"] == "static"
    back = TextRouter.load(tmp_path / "state")  # no encoder given: rebuilt from the manifest
    assert isinstance(back.encoder, StaticEncoder) and back.encoder.identity == enc.identity
    for p in prompts[:5]:
        np.testing.assert_array_equal(back.route(p, lam=1e-3).score, tr.route(p, lam=1e-3).score)


def test_cli_fit_and_route_with_the_static_encoder(tmp_path, monkeypatch, capsys):
    from mixllm.data import RoutingData, save_long

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    tiny_table().save(default_table_path())  # stands in for the distilled MiniLM table
    rng = np.random.default_rng(1)
    prompts = [" ".join(rng.choice(WORDS, size=4)) + f" {i}" for i in range(40)]
    q = np.stack([np.ones(40), rng.random(40) < 0.5], axis=1).astype(float)
    data = RoutingData([f"p{i}" for i in range(40)], prompts, ["big", "small"], q,
                       input_tokens=np.full(40, 5.0), output_tokens=np.full((40, 2), 30.0),
                       task=["t"] * 40, pool=POOL)
    save_long(data, tmp_path / "d.jsonl")
    from mixllm.data import save_pool

    save_pool(POOL, tmp_path / "pool.toml")
    assert main(["fit", "--train", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "st"),
                 "--pool", str(tmp_path / "pool.toml"), "--encoder", "static", "--quiet",
                 "--no-tags", "--ridge", "1"]) == 0
    capsys.readouterr()
    assert main(["route", "--state", str(tmp_path / "st"), "--json", "python function"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["llm"] in ("big", "small")


# ------------------------------------------------------------------------- the real model
def test_distilled_minilm_table_is_reproducible_and_counts_like_minilm():
    from mixllm.text.onnx import OnnxEncoder

    mini = OnnxEncoder(cache_size=0)
    texts = ["How do I bake bread?", "The stock market fell today.",
             "Write a Python function that reverses a list."]
    ids = np.unique(np.concatenate([mini._counter.encode(t, add_special_tokens=False).ids
                                    for t in texts]))
    a = build_table(mini, dim=4, token_ids=ids)
    b = build_table(mini, dim=4, token_ids=ids[::-1])
    np.testing.assert_array_equal(a.table, b.table)  # same build, same table (signs fixed)
    vocab = a.table.shape[0]
    others = np.setdiff1d(np.arange(vocab), ids)
    assert not a.table[others].any() and not a.weights[others].any()
    assert np.abs(a.table[ids]).sum(axis=1).min() > 0
    enc_a, enc_b = StaticEncoder(a), StaticEncoder(b)
    assert enc_a.identity == enc_b.identity and enc_a.dim == 4
    np.testing.assert_array_equal(enc_a.count_tokens(texts), mini.count_tokens(texts))
    E = enc_a.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-6)
