"""The data layer: every reader on small generated files (quirks included), every error path,
round trips, splits, cost filling; and facts about the real data in ../shared/data (skipped
with a reason when it is absent)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixllm.data import (
    ROUTERBENCH_LATENCY_ASSUMPTIONS,
    DataError,
    RoutingData,
    cost_fit,
    load_data,
    load_long,
    load_pool,
    load_routerbench,
    load_routerdc,
    routerbench_pool,
    save_long,
    save_pool,
)
from mixllm import LLM
from mixllm.text.tokens import count_tokens

MODELS = ["m-a", "org/m-b"]
# As tests/conftest.py's shared_data_dir(), re-derived: "from conftest import" is ambiguous when
# pytest also collects benchmarks/conftest.py.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path:
    """../shared/data beside the repository, or a skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real routing data not present at {SHARED_DATA} (fresh clone without ../shared)")
    return SHARED_DATA


# ---------------------------------------------------------------------------------- builders
def wide_rows():
    """RouterBench-style rows: list-literal texts, a NaN score, a repeated sample_id whose second
    variant is a two-part (doubled) prompt observed by one model only."""
    return [
        dict(sample_id="t.1", prompt=["What is 2+2?"], eval_name="math", q=(1.0, 0.0),
             resp=(["4"], ["5, surely"]), cost=(0.001, 0.0002)),
        dict(sample_id="t.2", prompt=["Say 'hi'\nthen \"bye\""], eval_name="chat", q=(0.0, math.nan),
             resp=(["hi bye"], ["hi"]), cost=(0.002, 0.0003)),
        dict(sample_id="t.3", prompt=["Repeat me."], eval_name="math", q=(math.nan, 1.0),
             resp=(["Repeat me."], ["me"]), cost=(0.003, 0.0001)),
        dict(sample_id="t.3", prompt=["Repeat me.", "Repeat me."], eval_name="math",
             q=(1.0, math.nan), resp=(["Repeat me."], ["me"]), cost=(0.006, 0.0002)),
    ]


def wide_frame(rows=None, models=MODELS):
    rows = wide_rows() if rows is None else rows
    data = {"sample_id": [], "prompt": [], "eval_name": []}
    for m in models:
        data[m] = []
    for m in models:
        data[f"{m}|model_response"] = []
    for m in models:
        data[f"{m}|total_cost"] = []
    data["oracle_model_to_route_to"] = []
    for r in rows:
        data["sample_id"].append(r["sample_id"])
        data["prompt"].append(repr(r["prompt"]))
        data["eval_name"].append(r["eval_name"])
        for m in models:  # the rows' tuples are in MODELS (+ extra) order, whatever the column order
            j = (MODELS + ["m-c"]).index(m)
            data[m].append(r["q"][j])
            data[f"{m}|model_response"].append(repr(r["resp"][j]))
            data[f"{m}|total_cost"].append(r["cost"][j])
        data["oracle_model_to_route_to"].append(models[0])
    return pd.DataFrame(data)


def write_wide_csv(path, rows=None, models=MODELS):
    wide_frame(rows, models).to_csv(path)  # with the unnamed index column, as RouterBench
    return path


def write_models_json(folder, models=MODELS, prices=((1.0, 2.0), (0.5, 0.25))):
    doc = {"_about": "test prices"}
    for m, (pin, pout) in zip(models, prices):
        doc[m] = {"input_per_mtok": pin, "output_per_mtok": pout}
    (folder / "models.json").write_text(json.dumps(doc))
    return folder / "models.json"


def small_data(n=12, tasks=("a", "b", "c"), seed=0, responses=True):
    rng = np.random.default_rng(seed)
    k = 3
    quality = rng.random((n, k))
    quality[rng.random((n, k)) < 0.2] = np.nan
    quality[0, 0] = 0.5
    cost = rng.random((n, k)) / 100
    cost[1, :] = np.nan
    resp = None
    if responses:
        resp = np.array([[f"answer {i},{j}; \"q\"\n" if (i + j) % 4 else None for j in range(k)]
                         for i in range(n)], dtype=object)
    return RoutingData(
        prompt_ids=[f"p{i}" for i in range(n)],
        prompts=[f"prompt {i}, with \"quotes\";\nand a newline" for i in range(n)],
        models=["x", "y/z", "w"], quality=quality, cost_usd=cost,
        input_tokens=rng.integers(1, 50, n).astype(float),
        output_tokens=np.where(rng.random((n, k)) < 0.1, np.nan, rng.integers(0, 90, (n, k))),
        latency_s=np.where(rng.random((n, k)) < 0.5, np.nan, rng.random((n, k))),
        task=[tasks[i % len(tasks)] for i in range(n)],
        tags=[("t1", f"id:{i}") if i % 2 else () for i in range(n)], responses=resp)


# ---------------------------------------------------------------------------------- tokens
def test_count_tokens_wordpiece_without_specials_or_truncation():
    counts = count_tokens(["hello world", "", "Hello, World!"])
    assert counts.dtype == np.int64
    assert counts.tolist() == [2, 0, 4]  # uncased; no [CLS]/[SEP]
    long = " ".join(["word"] * 1000)
    assert count_tokens([long])[0] == 1000  # the file truncates at 128; counting must not
    assert count_tokens([]).shape == (0,)


def test_count_tokens_rejects_non_text():
    with pytest.raises(TypeError, match="not one string"):
        count_tokens("hello")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        count_tokens(["ok", None])


# ---------------------------------------------------------------------------------- RouterBench
def test_routerbench_csv_unwraps_lists_and_keeps_quirk_rows(tmp_path):
    data = load_routerbench(write_wide_csv(tmp_path / "bench.csv"))
    assert data.models == MODELS
    assert data.prompt_ids.tolist() == ["t.1", "t.2", "t.3", "t.3#1"]
    assert data.prompts[1] == "Say 'hi'\nthen \"bye\""
    assert data.prompts[3] == "Repeat me.\n\nRepeat me."
    assert data.tags == [(), (), (), ("prompt_parts:2",)]
    assert data.task.tolist() == ["math", "chat", "math", "math"]
    np.testing.assert_array_equal(data.quality, [[1, 0], [0, np.nan], [np.nan, 1], [1, np.nan]])
    np.testing.assert_array_equal(data.cost_usd[:, 1], [0.0002, 0.0003, 0.0001, 0.0002])
    assert data.responses[0].tolist() == ["4", "5, surely"]
    np.testing.assert_array_equal(data.input_tokens[:, 0], count_tokens(data.prompts))
    np.testing.assert_array_equal(data.input_tokens[:, 0], data.input_tokens[:, 1])
    np.testing.assert_array_equal(data.output_tokens[0], count_tokens(["4", "5, surely"]))
    assert data.pool == ()  # no models.json beside the file


def test_routerbench_variant_ids_do_not_depend_on_row_order(tmp_path):
    rows = wide_rows()
    a = load_routerbench(write_wide_csv(tmp_path / "a.csv", rows))
    b = load_routerbench(write_wide_csv(tmp_path / "b.csv", rows[::-1]))
    by_id = dict(zip(b.prompt_ids.tolist(), b.prompts))
    assert dict(zip(a.prompt_ids.tolist(), a.prompts)) == by_id
    assert by_id["t.3#1"] == "Repeat me.\n\nRepeat me."


def test_routerbench_exact_repeats_dropped_conflicts_refused(tmp_path):
    rows = wide_rows()
    data = load_routerbench(write_wide_csv(tmp_path / "rep.csv", rows + [rows[0]]))
    assert data.n_prompts == 4
    bad = dict(rows[0], q=(0.0, 0.0))
    with pytest.raises(DataError, match="'t.1' appears twice with the same prompt"):
        load_routerbench(write_wide_csv(tmp_path / "conf.csv", rows + [bad]))


def test_routerbench_folder_with_models_json(tmp_path):
    rows = wide_rows()
    write_wide_csv(tmp_path / "b.csv", rows[2:])
    write_wide_csv(tmp_path / "a.csv", rows[:2], models=MODELS[::-1])  # column order may differ
    write_models_json(tmp_path)
    data = load_data(tmp_path)
    assert data.prompt_ids.tolist() == ["t.1", "t.2", "t.3", "t.3#1"]  # files in name order
    assert data.models == MODELS[::-1]
    np.testing.assert_array_equal(data.quality[:, 1], [1, 0, np.nan, 1])
    assert [llm.name for llm in data.pool] == data.models
    assert data.pool[1] == LLM("m-a", 1.0, 2.0, ttft_s=0.5, tokens_per_s=50.0, slots=8)
    assert load_routerbench(tmp_path / "a.csv").pool[0].name == "org/m-b"  # models.json beside


def test_routerbench_models_json_must_price_every_model(tmp_path):
    write_wide_csv(tmp_path / "a.csv")
    write_models_json(tmp_path, models=["m-a"], prices=((1.0, 2.0),))
    with pytest.raises(DataError, match=r"models.json: no price for models in the data: \['org/m-b'\]"):
        load_routerbench(tmp_path)


def test_routerbench_files_must_share_models(tmp_path):
    write_wide_csv(tmp_path / "a.csv")
    rows = [dict(r, q=r["q"] + (1.0,), resp=r["resp"] + (["x"],), cost=r["cost"] + (0.1,))
            for r in wide_rows()]
    write_wide_csv(tmp_path / "b.csv", rows, models=MODELS + ["m-c"])
    with pytest.raises(DataError, match=r"b.csv: its models differ.*only here \['m-c'\]"):
        load_routerbench(tmp_path)


def test_routerbench_parquet_and_pickle(tmp_path):
    reference = load_routerbench(write_wide_csv(tmp_path / "w.csv"))
    wide_frame().to_parquet(tmp_path / "w.parquet")
    assert load_data(tmp_path / "w.parquet").equals(reference)
    frame = wide_frame()
    frame["prompt"] = [r["prompt"] for r in wide_rows()]  # real lists, as a pickle can hold
    frame.to_pickle(tmp_path / "w.pkl")
    with pytest.raises(DataError, match="refusing to read a pickle: unpickling runs code"):
        load_routerbench(tmp_path / "w.pkl")
    with pytest.raises(DataError, match="allow_pickle=True"):
        load_data(tmp_path / "w.pkl")
    assert load_data(tmp_path / "w.pkl", allow_pickle=True).equals(reference)
    (tmp_path / "s.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="holds a list, not a DataFrame"):
        load_routerbench(tmp_path / "s.pkl", allow_pickle=True)


def test_routerbench_options(tmp_path):
    data = load_routerbench(write_wide_csv(tmp_path / "w.csv"), keep_responses=False, tokens=False)
    assert data.responses is None
    assert np.isnan(data.input_tokens).all() and np.isnan(data.output_tokens).all()


def test_routerbench_plain_text_cells(tmp_path):
    frame = wide_frame()
    frame["prompt"] = ["plain [1] text", "[x] brackets", "[a, b]", "two"]
    frame["sample_id"] = ["1", "2", "3", "4"]
    frame.to_csv(tmp_path / "p.csv", index=False)
    data = load_routerbench(tmp_path / "p.csv")
    assert data.prompts == ["plain [1] text", "[x] brackets", "[a, b]", "two"]


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["eval_name"]), r"missing RouterBench columns \['eval_name'\]"),
    (lambda f: f.drop(columns=MODELS + [f"{m}|total_cost" for m in MODELS]
                      + [f"{m}|model_response" for m in MODELS]), "no model columns"),
    (lambda f: f.drop(columns=["m-a"]), r"without a score column: \['m-a'\]"),
    (lambda f: f.insert(3, "m-a|tokens", 1), "'m-a|tokens' is neither"),
    (lambda f: f.loc.__setitem__((1, "prompt"), "['unclosed"), "row 2, column 'prompt': malformed list"),
    (lambda f: f.loc.__setitem__((0, "prompt"), "['a' 'b' +]"), "row 1, column 'prompt': malformed list"),
    (lambda f: f.loc.__setitem__((0, "prompt"), "[1, 2]"), "the list must hold only text"),
    (lambda f: f.loc.__setitem__((2, "m-a"), "yes"), "row 3, column 'm-a': not a number: 'yes'"),
    (lambda f: f.loc.__setitem__((0, "m-a"), "inf"), "row 1, column 'm-a': infinite value"),
    (lambda f: f.loc.__setitem__((0, "org/m-b|total_cost"), -1.0), "negative value"),
    (lambda f: f.loc.__setitem__((0, "sample_id"), ""), "row 1: empty sample_id"),
    (lambda f: f.loc.__setitem__((0, "prompt"), ""), "row 1: empty prompt"),
    (lambda f: f.loc.__setitem__((0, "eval_name"), ""), "row 1: empty eval_name"),
    (lambda f: f.__setitem__("m-a", np.nan), r"models with no quality score at all: \['m-a'\]"),
    (lambda f: f.__setitem__("m-a", np.nan) or f.__setitem__("org/m-b", np.nan), "NaN everywhere"),
])
def test_routerbench_bad_files(tmp_path, change, message):
    frame = wide_frame().astype(object)
    changed = change(frame)  # a new frame, or None after changing it in place
    frame = frame if changed is None else changed
    path = tmp_path / "bad.csv"
    frame.to_csv(path)
    with pytest.raises(DataError, match=message) as err:
        load_routerbench(path)
    assert "bad.csv" in str(err.value)


# ---------------------------------------------------------------------------------- RouterDC
def write_routerdc(folder):
    (folder / "quiz_train.json").write_text(json.dumps([
        {"question": "Q1?", "scores": {"a": 0.5, "b": 1}, "cluster_id": 3},
        {"question": "Q2?", "scores": {"a": 0, "b": 0.25}, "cluster_id": 0},
    ]))
    (folder / "quiz-test.json").write_text(json.dumps([
        {"question": "Q3?", "scores": {"b": 0.75, "c": 0.1}},
    ]))
    (folder / "mmlu.json").write_text(json.dumps([
        {"question": "Q4 \u00e9?", "scores": {"a": 0.9, "b": None, "c": 0.3}, "subject": "law"},
    ]), encoding="utf-8")
    write_models_json(folder)  # a models.json in the folder is not a data file


def test_routerdc_folder(tmp_path):
    write_routerdc(tmp_path)
    data = load_data(tmp_path)
    assert data.prompt_ids.tolist() == ["mmlu/0", "quiz-test/0", "quiz_train/0", "quiz_train/1"]
    assert data.models == ["a", "b", "c"]  # order of first appearance
    assert data.task.tolist() == ["mmlu", "quiz", "quiz", "quiz"]
    assert data.tags == [("subject:law",), ("split:test",), ("split:train", "cluster_id:3"),
                         ("split:train", "cluster_id:0")]
    np.testing.assert_array_equal(data.quality, [[0.9, np.nan, 0.3], [np.nan, 0.75, 0.1],
                                                 [0.5, 1, np.nan], [0, 0.25, np.nan]])
    np.testing.assert_array_equal(data.input_tokens[:, 2], count_tokens(data.prompts))
    assert np.isnan(data.cost_usd).all() and np.isnan(data.output_tokens).all()
    assert data.responses is None


def test_routerdc_costs_need_a_pool_and_an_assumed_length(tmp_path):
    write_routerdc(tmp_path)
    pool = [LLM("a", 1.0, 2.0), LLM("b", 3.0, 4.0), LLM("c", 0.0, 1.0), LLM("extra", 9.0, 9.0)]
    with pytest.raises(DataError, match="pass output_tokens="):
        load_routerdc(tmp_path, pool=pool)
    data = load_routerdc(tmp_path / "quiz_train.json", pool=pool, output_tokens=10)
    assert data.models == ["a", "b"]
    expected = (data.input_tokens * [1.0, 3.0] + 10 * np.array([2.0, 4.0])) / 1e6
    np.testing.assert_allclose(data.cost_usd, expected)
    assert "assumed" in data.meta["output_tokens"]
    with pytest.raises(DataError, match=r"no entry for models in the data: \['c'\]"):
        load_routerdc(tmp_path, pool=pool[:2], output_tokens=10)


# ---------------------------------------------------------------------- both readers, bad input
READERS = {"csv": load_routerbench, "json": load_routerdc}


@pytest.mark.parametrize("name, content, message", [
    ("bad.csv", b"", "empty file"),
    ("bad.csv", b"sample_id,prompt,eval_name,m\n", "no data rows"),
    ("bad.csv", b"sample_id,prompt,eval_name,m\n1,\"['x']\",t,1.0\n2,\"['y\n", "malformed CSV"),
    ("bad.csv", b"sample_id,prompt,eval_name,m\n1,\"['caf\xe9']\",t,1.0\n", "not UTF-8"),
    ("bad.csv", b"sample_id,prompt,eval_name,m\n1,x,t,1\n2,y,t,1,2\n", "malformed CSV"),
    ("x.txt", b"a", "unsupported RouterBench file type '.txt'"),
    ("bad.parquet", b"not parquet", "bad.parquet: not a readable Parquet file"),
    ("bad.json", b"", "malformed JSON"),
    ("bad.json", b"[{\"question\": \"q\", ", "malformed JSON"),
    ("bad.json", b"{\"question\": \"q\"}", "expected a JSON list of records, got dict"),
    ("bad.json", b"[]", "empty list"),
    ("bad.json", b"[1]", "record 0: expected an object"),
    ("bad.json", b"[{\"question\": \"q\"}]", "record 0: missing 'question' or 'scores'"),
    ("bad.json", b"[{\"question\": 3, \"scores\": {\"a\": 1}}]", "'question' must be text"),
    ("bad.json", b"[{\"question\": \"q\", \"scores\": {}}]", "'scores' must be a non-empty object"),
    ("bad.json", b"[{\"question\": \"q\", \"scores\": {\"a\": \"1\"}}]", "score of 'a' must be a finite number"),
    ("bad.json", b"[{\"question\": \"q\", \"scores\": {\"a\": true}}]", "score of 'a' must be a finite number"),
    ("bad.json", b"[{\"question\": \"q\", \"scores\": {\"a\": Infinity}}]", "score of 'a' must be a finite number"),
    ("bad.json", b"[{\"question\": \"q\", \"scores\": {\"a\": null}}]", "NaN everywhere"),
    ("bad.json", b"[{\"question\": \"caf\xe9\", \"scores\": {\"a\": 1}}]", "not UTF-8"),
])
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    reader = load_routerdc if name.endswith(".json") else load_routerbench
    with pytest.raises(DataError, match=message) as err:
        reader(path)
    assert name in str(err.value)


@pytest.mark.parametrize("ext", sorted(READERS))
def test_path_errors(tmp_path, ext):
    with pytest.raises(FileNotFoundError):
        READERS[ext](tmp_path / f"missing.{ext}")
    with pytest.raises(DataError, match=rf"no \*.{ext} files"):
        READERS[ext](tmp_path)


# ---------------------------------------------------------------------------------- long format
@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_long_round_trip(tmp_path, ext):
    data = small_data()
    path = tmp_path / f"d.{ext}"
    save_long(data, path)
    back = load_long(path, count_missing_tokens=False)
    if ext != "jsonl":  # CSV/Parquet cannot tell an empty response from none; there are none
        assert not any(r == "" for r in data.responses.ravel())
    assert back.equals(data)
    assert back.meta["format"] == "long"
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away
    # By default unknown output tokens are counted from the responses that are present.
    counted = load_long(path)
    fill = np.isnan(data.output_tokens) & (data.responses != None)  # noqa: E711
    assert fill.any()
    np.testing.assert_array_equal(counted.output_tokens[fill],
                                  count_tokens(data.responses[fill].tolist()))
    np.testing.assert_array_equal(counted.output_tokens[~fill], data.output_tokens[~fill])


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_long_round_trip_skip_unobserved(tmp_path, ext):
    data = RoutingData(prompt_ids=["a", "b", "c"], prompts=["A", "B", "C"], models=["x", "y"],
                       quality=[[1.0, np.nan], [np.nan, 0.0], [0.5, 0.5]])
    path = tmp_path / f"s.{ext}"
    save_long(data, path, skip_unobserved=True)
    back = load_long(path, count_missing_tokens=False)
    assert back.equals(data)
    n_rows = len(path.read_text().splitlines()) if ext == "jsonl" else None
    assert n_rows in (None, 4)
    save_long(data, path)
    assert load_long(path, count_missing_tokens=False).equals(data)


def test_long_minimal_columns_and_first_appearance_order(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("prompt_id,prompt,model,quality\n"
                    "7,\"Hi, you\",zed,1\n"
                    "3,Bye,alpha,\n"
                    "7,\"Hi, you\",alpha,0.25\n", encoding="utf-8")
    data = load_long(path)
    assert data.prompt_ids.tolist() == ["7", "3"]
    assert data.models == ["zed", "alpha"]
    np.testing.assert_array_equal(data.quality, [[1, 0.25], [np.nan, np.nan]])
    assert data.task.tolist() == ["", ""] and data.tags == [(), ()]
    np.testing.assert_array_equal(data.input_tokens[:, 0], count_tokens(["Hi, you", "Bye"]))
    assert np.isnan(data.cost_usd).all()


def test_long_jsonl_tags_tokens_and_responses(tmp_path):
    path = tmp_path / "r.jsonl"
    recs = [
        {"prompt_id": 1, "prompt": "p", "model": "m", "quality": 1, "tags": ["a;b", "c"],
         "response": "two words", "task": "t"},
        {"prompt_id": 1, "prompt": "p", "model": "n", "quality": None, "tags": ["a;b", "c"],
         "response": "", "output_tokens": 5, "input_tokens": 3, "task": "t"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    data = load_long(path)
    assert data.tags == [("a;b", "c")]
    assert data.responses.tolist() == [["two words", ""]]
    np.testing.assert_array_equal(data.output_tokens, [[2, 5]])  # counted where missing
    np.testing.assert_array_equal(data.input_tokens, [[1, 3]])
    with pytest.raises(DataError, match="tag 'a;b' contains ';'"):
        save_long(data, tmp_path / "r.csv")
    assert not (tmp_path / "r.csv").exists()


def test_long_jsonl_lines_are_split_on_newline_only(tmp_path):
    # U+2028, U+0085 and \x1c are line breaks to str.splitlines() but not to JSON Lines.
    text = "a\u2028b\x85c\x1cd\re"
    data = RoutingData(prompt_ids=["1"], prompts=[text], models=["m"], quality=[[1.0]],
                       tags=[(text,)])
    save_long(data, tmp_path / "u.jsonl")
    assert load_long(tmp_path / "u.jsonl", count_missing_tokens=False).equals(data)
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(b'{"prompt_id": "1", "prompt": "p", "model": "m", "quality": 1}\r\n'
                     b'{"prompt_id": "2", "prompt": "q", "model": "m", "quality": 0}\r\n')
    assert load_long(crlf).prompt_ids.tolist() == ["1", "2"]


def test_long_parquet_native_types(tmp_path):
    pd.DataFrame({"prompt_id": [10, 11], "prompt": ["a", "b"], "model": ["m", "m"],
                  "quality": [1.0, 0.0], "tags": [["x", "y"], []],
                  "cost_usd": [0.5, None]}).to_parquet(tmp_path / "n.parquet")
    data = load_long(tmp_path / "n.parquet")
    assert data.prompt_ids.tolist() == ["10", "11"]
    assert data.tags == [("x", "y"), ()]
    np.testing.assert_array_equal(data.cost_usd, [[0.5], [np.nan]])


LONG_HEADER = "prompt_id,prompt,model,quality"


@pytest.mark.parametrize("body, message", [
    ("prompt_id,prompt,quality\n1,a,1\n", r"missing required columns \['model'\]"),
    (LONG_HEADER + ",cost\n1,a,m,1,2\n", r"unknown columns \['cost'\]"),
    (LONG_HEADER + "\n1,a,m,1\n1,a,m,0\n", "row 2: prompt '1' and model 'm' appear in more than one row"),
    (LONG_HEADER + "\n1,a,m,1\n1,b,n,0\n", "row 2: prompt '1' has a different prompt than in row 1"),
    (LONG_HEADER + ",task\n1,a,m,1,x\n1,a,n,0,y\n", "row 2: prompt '1' has a different task"),
    (LONG_HEADER + ",tags\n1,a,m,1,x\n1,a,n,0,x;y\n", "row 2: prompt '1' has a different tags"),
    (LONG_HEADER + "\n1,a,m,good\n", "row 1, column 'quality': not a number: 'good'"),
    (LONG_HEADER + ",cost_usd\n1,a,m,1,-2\n", "column 'cost_usd': negative value"),
    (LONG_HEADER + ",latency_s\n1,a,m,1,inf\n", "column 'latency_s': infinite value"),
    (LONG_HEADER + "\n,a,m,1\n", "row 1: 'prompt_id' must be non-empty"),
    (LONG_HEADER + "\n1,a,,1\n", "row 1: 'model' must be non-empty"),
    (LONG_HEADER + "\n1,a,m,\n2,b,m,nan\n", "NaN everywhere"),
    (LONG_HEADER + "\n", "no data rows"),
    ("", "empty file"),
])
def test_long_bad_csv(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_long(path)
    assert "bad.csv" in str(err.value)


@pytest.mark.parametrize("lines, message", [
    (['{"prompt_id": "1", "prompt": "a", "model": "m", "quality": 1}', '{"prompt_id": '],
     "line 2: malformed JSON"),
    (['[1, 2]'], "line 1: expected a JSON object"),
    (['{"prompt_id": "1", "prompt": "a", "quality": 1}'], r"line 1: missing required fields \['model'\]"),
    (['{"prompt_id": "1", "prompt": "a", "model": "m", "quality": 1, "extra": 2}'],
     r"line 1: unknown fields \['extra'\]"),
    (['{"prompt_id": "1", "prompt": "a", "model": "m", "quality": 1, "tags": "x;y"}'],
     "line 1: 'tags' must be a list of text"),
    (['{"prompt_id": true, "prompt": "a", "model": "m", "quality": 1}'], "'prompt_id' must be"),
    (['{"prompt_id": "1", "prompt": 5, "model": "m", "quality": 1}'], "'prompt' must be text"),
    (['{"prompt_id": "1", "prompt": "a", "model": "m", "quality": [1]}'], "expected a number"),
    (['{"prompt_id": "1", "prompt": "a", "model": "m", "quality": 1, "response": 3}'],
     "column 'response': expected text"),
    (['', '  '], "empty file"),
])
def test_long_bad_jsonl(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=message) as err:
        load_long(path)
    assert "bad.jsonl" in str(err.value)


def test_long_non_utf8_and_format_errors(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"prompt_id": "1", "prompt": "caf\xe9", "model": "m", "quality": 1}\n')
    with pytest.raises(DataError, match="x.jsonl: not UTF-8"):
        load_long(path)
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="cannot tell the long format"):
        load_long(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="format must be"):
        load_long(path, format="xml")
    with pytest.raises(DataError, match="cannot tell the long format"):
        save_long(small_data(), tmp_path / "out.xlsx")
    with pytest.raises(TypeError, match="must be RoutingData"):
        save_long("data", tmp_path / "out.jsonl")


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_tag = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00;"),
               min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=st.lists(_text, min_size=1, max_size=5), tag=_tag, resp=_text,
       quality=st.floats(-1e6, 1e6, allow_nan=False), ext=st.sampled_from(["jsonl", "csv", "parquet"]))
def test_long_round_trip_any_text(tmp_path, prompts, tag, resp, quality, ext):
    n = len(prompts)
    data = RoutingData(prompt_ids=[f"{i}:{p[:3]}" for i, p in enumerate(prompts)], prompts=prompts,
                       models=["m"], quality=np.full((n, 1), quality), task=[tag] * n,
                       tags=[(tag,)] * n, responses=np.full((n, 1), resp + "!", dtype=object))
    path = tmp_path / f"h.{ext}"
    save_long(data, path)
    assert load_long(path, count_missing_tokens=False).equals(data)


# ---------------------------------------------------------------------------------- dispatch
def test_load_dispatch(tmp_path):
    data = small_data(responses=False)
    save_long(data, tmp_path / "l.csv")
    save_long(data, tmp_path / "l.parquet")
    assert load_data(tmp_path / "l.csv").equals(data)
    assert load_data(tmp_path / "l.parquet").equals(data)
    assert load_data(tmp_path / "l.csv", format="long").equals(data)
    write_wide_csv(tmp_path / "w.csv")
    assert load_data(tmp_path / "w.csv").prompt_ids[0] == "t.1"
    assert load_data(tmp_path / "w.csv", format="routerbench").n_prompts == 4
    (tmp_path / "q.json").write_text(json.dumps([{"question": "q", "scores": {"a": 1}}]))
    assert load_data(tmp_path / "q.json").models == ["a"]
    assert load_data(tmp_path / "q.json", format="routerdc").models == ["a"]
    with pytest.raises(DataError, match="holds both"):
        load_data(tmp_path)
    with pytest.raises(ValueError, match="format must be"):
        load_data(tmp_path, format="excel")
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "nope.csv")
    (tmp_path / "o.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="o.csv: neither long format"):
        load_data(tmp_path / "o.csv")
    (tmp_path / "o.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported extension '.xml'"):
        load_data(tmp_path / "o.xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no \\*.csv"):
        load_data(empty)


# ---------------------------------------------------------------------------------- pools
POOL = [LLM("gpt-x", 10.0, 30.0, ttft_s=1.25, tokens_per_s=30.0, slots=4),
        LLM('odd "name"\\ é\x7f', 0.2, 0.0), LLM("tiny", 0, 1)]


@pytest.mark.parametrize("ext", ["toml", "json"])
def test_pool_round_trip(tmp_path, ext):
    save_pool(POOL, tmp_path / f"pool.{ext}")
    assert load_pool(tmp_path / f"pool.{ext}") == POOL


def test_pool_toml_by_hand(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('version = 1\n[[llm]]\nname = "a"\ninput_price = 1\noutput_price = 2.5\n'
                    '[[llm]]\nname = "b"\ninput_price = 0.1\noutput_price = 0.2\nslots = 2\n')
    assert load_pool(path) == [LLM("a", 1.0, 2.5), LLM("b", 0.1, 0.2, slots=2)]


@pytest.mark.parametrize("ext, text, message", [
    ("toml", "[[llm]\nname = 1", "malformed TOML"),
    ("bad.json", '{"llm": [', "malformed JSON"),
    ("bad.json", "[1]", "expected a table/object"),
    ("toml", "version = 2\n[[llm]]\nname='a'\ninput_price=1\noutput_price=1", "version 2 is not supported"),
    ("toml", "pool = 1", r"unknown top-level keys \['pool'\]"),
    ("toml", "version = 1", "no LLMs"),
    ("bad.json", '{"llm": [3]}', "llm entry 0: expected a table/object"),
    ("toml", "[[llm]]\nname = 'a'\ninput_price = 1", r"llm entry 0 \('a'\): missing \['output_price'\]"),
    ("toml", "[[llm]]\nname='a'\ninput_price=1\noutput_price=1\nspeed=3", r"unknown keys \['speed'\]"),
    ("toml", "[[llm]]\nname='a'\ninput_price=-1\noutput_price=1", "input_price of 'a' must be"),
    ("bad.json", '{"llm": [{"name": "a", "input_price": 1, "output_price": 1, "slots": 2.0}]}',
     "slots of 'a' must be an integer"),
    ("bad.json", '{"llm": [{"name": "a", "input_price": "1", "output_price": 1}]}', "input_price of 'a'"),
    ("toml", "[[llm]]\nname='a'\ninput_price=1\noutput_price=1\n[[llm]]\nname='a'\ninput_price=1\n"
             "output_price=1", r"names must be unique; repeated: \['a'\]"),
])
def test_pool_bad_files(tmp_path, ext, text, message):
    path = tmp_path / f"bad.{ext}"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        load_pool(path)
    assert f"bad.{ext}" in str(err.value)


def test_pool_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pool(tmp_path / "none.toml")
    (tmp_path / "p.yaml").write_text("a: 1")
    with pytest.raises(DataError, match="must be .toml or .json"):
        load_pool(tmp_path / "p.yaml")
    (tmp_path / "p.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(DataError, match="p.toml: not UTF-8"):
        load_pool(tmp_path / "p.toml")
    with pytest.raises(DataError, match="at least one LLM"):
        save_pool([], tmp_path / "e.toml")
    with pytest.raises(DataError, match="unique"):
        save_pool([POOL[0], POOL[0]], tmp_path / "e.toml")
    with pytest.raises(TypeError, match="must be LLM"):
        save_pool(["gpt"], tmp_path / "e.toml")


def test_routerbench_pool(tmp_path):
    write_models_json(tmp_path, models=["gpt-4-1106-preview", "unknown-model"])
    pool = routerbench_pool(tmp_path)
    ttft, speed = ROUTERBENCH_LATENCY_ASSUMPTIONS["gpt-4-1106-preview"]
    assert pool[0] == LLM("gpt-4-1106-preview", 1.0, 2.0, ttft_s=ttft, tokens_per_s=speed)
    assert pool[1] == LLM("unknown-model", 0.5, 0.25)  # no assumption: LLM's defaults
    custom = routerbench_pool(tmp_path / "models.json", latency={"unknown-model": (2.0, 5.0)}, slots=3)
    assert custom[1] == LLM("unknown-model", 0.5, 0.25, ttft_s=2.0, tokens_per_s=5.0, slots=3)
    assert custom[0].ttft_s == LLM("a", 0, 0).ttft_s
    (tmp_path / "models.json").write_text(json.dumps({"a": {"input_per_mtok": 1}}))
    with pytest.raises(DataError, match="entry 'a' must be"):
        routerbench_pool(tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"a": {"input_per_mtok": -1, "output_per_mtok": 1}}))
    with pytest.raises(DataError, match="entry 'a': input_price"):
        routerbench_pool(tmp_path)
    (tmp_path / "models.json").write_text(json.dumps({"_about": "x"}))
    with pytest.raises(DataError, match="no model prices"):
        routerbench_pool(tmp_path)
    with pytest.raises(FileNotFoundError):
        routerbench_pool(tmp_path / "nothing")


# ---------------------------------------------------------------------------------- RoutingData
def test_routing_data_validation():
    base = dict(prompt_ids=["a", "b"], prompts=["A", "B"], models=["x"], quality=[[1.0], [0.0]])
    data = RoutingData(**base)
    assert data.quality.dtype == np.float64 and not data.quality.flags.writeable
    assert data.input_tokens.shape == (2, 1) and np.isnan(data.cost_usd).all()
    assert "n_prompts=2" in repr(data)
    for change, message in [
        (dict(prompt_ids=["a", "a"]), r"prompt_ids must be unique; repeated: \['a'\]"),
        (dict(prompt_ids=["a", ""]), r"prompt_ids\[1\] is empty"),
        (dict(prompt_ids=[], prompts=[], quality=np.zeros((0, 1))), "at least one prompt"),
        (dict(prompts=["A"]), "prompts must have 2 entries"),
        (dict(models=["x", "x"], quality=[[1, 1], [1, 1]]), "model names must be unique"),
        (dict(models=[]), "at least one model"),
        (dict(quality=[[1.0, 2.0], [0.0, 1.0]]), r"quality must have shape \(2, 1\)"),
        (dict(quality=[[np.inf], [0.0]]), "quality contains inf"),
        (dict(quality=[["a"], [0.0]]), "quality must be numeric"),
        (dict(cost_usd=[[-1.0], [0.0]]), "cost_usd must be >= 0"),
        (dict(input_tokens=[3.0, 4.0, 5.0]), r"input_tokens must have shape \(2, 1\) or \(2,\)"),
        (dict(task=["t"]), "task must have 2 entries"),
        (dict(task=["t", 3]), r"task\[1\] must be str"),
        (dict(tags=[("a",), ("",)]), r"tags\[1\]\[0\] is empty"),
        (dict(tags=[("a",)]), "tags must have 2 entries"),
        (dict(responses=[["r"], [3]]), r"responses\[1, 0\] must be str or None"),
        (dict(responses=[["r", "s"]]), "responses must have shape"),
        (dict(pool=("x",)), "pool entries must be LLM"),
        (dict(meta={"a": 1}), "meta must map str to str"),
        (dict(prompts="AB"), "not one string"),
    ]:
        with pytest.raises(DataError, match=message):
            RoutingData(**{**base, **change})
    assert RoutingData(**base, input_tokens=[3, 4]).input_tokens.tolist() == [[3.0], [4.0]]


def test_subset_select_complete():
    data = small_data(n=6)
    sub = data.subset([4, 1])
    assert sub.prompt_ids.tolist() == ["p4", "p1"]
    np.testing.assert_array_equal(sub.quality, data.quality[[4, 1]])
    assert sub.tags == [data.tags[4], data.tags[1]] and sub.responses.shape == (2, 3)
    mask = np.arange(6) % 2 == 0
    assert data.subset(mask).prompt_ids.tolist() == ["p0", "p2", "p4"]
    assert data.subset(slice(1, 3)).n_prompts == 2
    with pytest.raises(DataError, match="repeat a prompt"):
        data.subset([1, 1])
    with pytest.raises(DataError, match="selects no prompt"):
        data.subset(np.zeros(6, dtype=bool))
    with pytest.raises(IndexError):
        data.subset([17])
    pooled = data.fill_costs([LLM("x", 1, 1), LLM("y/z", 1, 1), LLM("w", 1, 1)])
    sel = pooled.select_models(["w", "x"])
    assert sel.models == ["w", "x"] and [llm.name for llm in sel.pool] == ["w", "x"]
    np.testing.assert_array_equal(sel.cost_usd, pooled.cost_usd[:, [2, 0]])
    np.testing.assert_array_equal(sel.responses, data.responses[:, [2, 0]])
    with pytest.raises(KeyError, match="models not in the data"):
        data.select_models(["x", "nope"])
    full = data.complete()
    assert not np.isnan(full.quality).any()
    assert full.n_prompts == int((~np.isnan(data.quality).any(axis=1)).sum())
    sparse = RoutingData(prompt_ids=["a"], prompts=["A"], models=["x", "y"], quality=[[1.0, np.nan]])
    with pytest.raises(DataError, match="no prompt has a quality observed for every model"):
        sparse.complete()
    assert data.equals(data) and not data.equals(sub) and not data.equals("x")


# ---------------------------------------------------------------------------------- splits
def _tasks_data(task_sizes, seed=0):
    task = [t for t, size in task_sizes.items() for _ in range(size)]
    order = np.random.default_rng(seed).permutation(len(task))
    task = [task[i] for i in order]
    n = len(task)
    return RoutingData(prompt_ids=[f"p{i}" for i in range(n)], prompts=[""] * n, models=["m"],
                       quality=np.ones((n, 1)), task=task)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       frac=st.floats(0.05, 0.95), seed=st.integers(0, 2**32))
def test_split_properties(sizes, frac, seed):
    data = _tasks_data({f"t{i}": s for i, s in enumerate(sizes)}, seed=seed % 7)
    n = data.n_prompts
    n_test = math.floor(frac * n + 0.5)
    if not 1 <= n_test <= n - 1:
        with pytest.raises(ValueError, match="empty train or test"):
            data.split_indices(frac, seed)
        return
    train, test = data.split_indices(frac, seed)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert test.size == n_test
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    for t in set(data.task.tolist()):
        size = int((data.task == t).sum())
        got = int((data.task[test] == t).sum())
        assert abs(got - frac * size) < 1.0 + 1e-9
    again = data.split_indices(frac, seed)
    assert np.array_equal(again[1], test)
    plain = data.split_indices(frac, seed, stratify_by_task=False)
    assert plain[1].size == n_test


def test_split_returns_datasets_and_depends_on_seed():
    data = _tasks_data({"a": 50, "b": 30, "c": 20})
    train, test = data.split(0.2, seed=1)
    assert (train.n_prompts, test.n_prompts) == (80, 20)
    assert sorted(test.task.tolist()) == ["a"] * 10 + ["b"] * 6 + ["c"] * 4
    assert set(train.prompt_ids.tolist()).isdisjoint(test.prompt_ids.tolist())
    other = data.split(0.2, seed=2)[1]
    assert other.prompt_ids.tolist() != test.prompt_ids.tolist()
    for bad in (0.0, 1.0, -0.1, True):
        with pytest.raises(ValueError, match="test_fraction"):
            data.split(bad, seed=1)
    for bad_seed in (-1, 1.5, None, True):
        with pytest.raises(ValueError, match="seed"):
            data.split(0.2, seed=bad_seed)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4), k=st.integers(2, 6),
       seed=st.integers(0, 1000), stratify=st.booleans())
def test_kfold_properties(sizes, k, seed, stratify):
    data = _tasks_data({f"t{i}": s for i, s in enumerate(sizes)})
    n = data.n_prompts
    if k > n:
        with pytest.raises(ValueError, match="folds need at least"):
            data.kfold_indices(k, seed)
        return
    folds = data.kfold_indices(k, seed, stratify_by_task=stratify)
    assert len(folds) == k
    tests = [te for _, te in folds]
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(n))  # a partition
    sizes_ = [te.size for te in tests]
    assert max(sizes_) - min(sizes_) <= 1
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == n
    if stratify:
        for t in set(data.task.tolist()):
            per_fold = [int((data.task[te] == t).sum()) for te in tests]
            assert max(per_fold) - min(per_fold) <= 1
    again = data.kfold_indices(k, seed, stratify_by_task=stratify)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_datasets_and_errors():
    data = _tasks_data({"a": 7, "b": 5})
    folds = data.kfold(3, seed=0)
    ids = sorted(i for _, te in folds for i in te.prompt_ids.tolist())
    assert ids == sorted(data.prompt_ids.tolist())
    for bad in (1, 2.0, True, 13):
        with pytest.raises(ValueError, match="k"):
            data.kfold(bad, seed=0)


# ---------------------------------------------------------------------------------- costs, latency
def test_fill_costs_formula_and_precedence(tmp_path):
    data = small_data()
    pool = [LLM("x", 1.0, 2.0), LLM("y/z", 10.0, 0.5), LLM("w", 0.0, 3.0), LLM("extra", 1, 1)]
    filled = data.fill_costs(pool)
    est = (data.input_tokens * [1.0, 10.0, 0.0] + data.output_tokens * [2.0, 0.5, 3.0]) / 1e6
    recorded = ~np.isnan(data.cost_usd)
    np.testing.assert_array_equal(filled.cost_usd[recorded], data.cost_usd[recorded])
    np.testing.assert_allclose(filled.cost_usd[~recorded], est[~recorded])
    assert np.isnan(filled.cost_usd[~recorded & np.isnan(est)]).all()  # unknown tokens stay unknown
    assert [llm.name for llm in filled.pool] == data.models
    np.testing.assert_allclose(data.fill_costs(pool, overwrite=True).cost_usd, est)
    save_pool(pool, tmp_path / "p.toml")
    assert data.fill_costs(tmp_path / "p.toml").equals(filled)
    assert filled.fill_costs().equals(filled)  # the data's own pool by default
    save_pool(pool[:2], tmp_path / "p2.toml")
    with pytest.raises(DataError, match=r"p2.toml has no entry for models in the data: \['w'\]"):
        data.fill_costs(tmp_path / "p2.toml")
    with pytest.raises(DataError, match="the data's pool has no entry"):
        data.fill_costs()
    with pytest.raises(DataError, match="pool entries must be LLM"):
        data.fill_costs(["x"])


def test_fill_latency_and_assumed_tokens():
    data = small_data()
    pool = [LLM("x", 1, 1, ttft_s=0.5, tokens_per_s=10.0), LLM("y/z", 1, 1, ttft_s=0.0, tokens_per_s=2.0),
            LLM("w", 1, 1)]
    sim = np.array([0.5, 0.0, 0.5]) + data.output_tokens / [10.0, 2.0, 50.0]
    out = data.fill_latency(pool)
    known = ~np.isnan(data.latency_s)
    np.testing.assert_array_equal(out.latency_s[known], data.latency_s[known])
    np.testing.assert_allclose(out.latency_s[~known], sim[~known])
    np.testing.assert_allclose(data.fill_latency(pool, overwrite=True).latency_s, sim)
    assumed = data.assume_output_tokens({"a": 10, "b": 20, "c": 0})
    unknown = np.isnan(data.output_tokens)
    want = np.where(unknown, np.array([{"a": 10, "b": 20, "c": 0}[t] for t in data.task])[:, None],
                    data.output_tokens)
    np.testing.assert_array_equal(assumed.output_tokens, want)
    assert assumed.meta["output_tokens"].startswith("assumed per task")
    np.testing.assert_array_equal(data.assume_output_tokens(7).output_tokens[unknown], 7)
    with pytest.raises(DataError, match=r"missing for tasks \['c'\]"):
        data.assume_output_tokens({"a": 1, "b": 2})
    with pytest.raises(DataError, match="finite number >= 0"):
        data.assume_output_tokens(-1)


def test_cost_fit_recovers_token_scale():
    n = 50
    rng = np.random.default_rng(3)
    nin = rng.integers(10, 500, (n, 2)).astype(float)
    nout = rng.integers(1, 300, (n, 2)).astype(float)
    price_in, price_out = np.array([1.0, 4.0]), np.array([2.0, 8.0])
    real = (1.1 * nin * price_in + 0.9 * nout * price_out) / 1e6
    data = RoutingData(prompt_ids=[str(i) for i in range(n)], prompts=[""] * n, models=["a", "b"],
                       quality=np.ones((n, 2)), cost_usd=real, input_tokens=nin, output_tokens=nout,
                       pool=(LLM("a", 1.0, 2.0), LLM("b", 4.0, 8.0)))
    fit = cost_fit(data)
    for name in ("a", "b", "(all)"):
        assert fit[name]["input_factor"] == pytest.approx(1.1)
        assert fit[name]["output_factor"] == pytest.approx(0.9)
        assert fit[name]["calibrated_median_abs_rel_error"] < 1e-9
        assert 0.9 < fit[name]["median_ratio"] < 1.1
    assert fit["(all)"]["n"] == 2 * n
    assert cost_fit(data.fill_costs(overwrite=True))["a"]["median_ratio"] == pytest.approx(1.0)
    empty = RoutingData(prompt_ids=["a"], prompts=[""], models=["a"], quality=[[1.0]])
    assert cost_fit(empty, [LLM("a", 1, 1)])["a"] == {"n": 0.0}


# ---------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def routerbench():
    return load_routerbench(shared_data_dir() / "routerbench_subset")


@pytest.fixture(scope="module")
def routerdc():
    return load_routerdc(shared_data_dir() / "routerdc_7llm")


@pytest.mark.realdata
def test_real_routerbench_facts(routerbench):
    data = routerbench
    assert data.n_prompts == 2549  # as the data README states (1,193 + 1,014 + 342)
    counts = {t: int((data.task == t).sum()) for t in set(data.task.tolist())}
    assert counts == {"arc-challenge": 1193, "winogrande": 1014, "mbpp": 342}
    assert data.n_models == 11
    assert [llm.name for llm in data.pool] == data.models
    assert not any(p.startswith(("['", '["')) for p in data.prompts)
    assert not any(r.startswith(("['", '["')) for r in data.responses.ravel() if r is not None)
    # The quirk: 14 ARC sample_ids twice, the second variant a doubled prompt.
    variants = [p for p in data.prompt_ids.tolist() if "#" in p]
    assert len(variants) == 14 and all(v.endswith("#1") for v in variants)
    assert sum(t == ("prompt_parts:2",) for t in data.tags) == 14
    assert int(np.isnan(data.quality).any(axis=1).sum()) == 28
    assert data.complete().n_prompts == 2521
    assert not np.isnan(data.cost_usd).any() and not np.isnan(data.output_tokens).any()
    assert set(np.unique(data.quality[~np.isnan(data.quality)])) == {0.0, 1.0}


@pytest.mark.realdata
def test_real_routerbench_cost_model_fit(routerbench):
    """The numbers docs/DATA.md reports: the MiniLM token cost model is within ~5% of
    RouterBench's recorded costs, and two model-independent token scales make it exact."""
    fit = cost_fit(routerbench)
    for name, f in fit.items():
        assert f["n"] == (28039 if name == "(all)" else 2549)
        assert 1.045 < f["median_ratio"] < 1.06, name
        assert 1.05 < f["input_factor"] < 1.056, name
        assert 0.88 < f["output_factor"] < 0.93, name
        assert f["calibrated_median_abs_rel_error"] < 0.005, name


@pytest.mark.realdata
def test_real_routerbench_files_load_one_by_one():
    folder = shared_data_dir() / "routerbench_subset"
    sizes = {f.name: load_routerbench(f, tokens=False).n_prompts for f in sorted(folder.glob("*.csv"))}
    assert sizes == {"arc_challenge.csv": 1193, "mbpp.csv": 342, "winogrande.csv": 1014}
    pool = routerbench_pool(folder)
    assert len(pool) == 11 and pool[0] == LLM("gpt-4-1106-preview", 10.0, 30.0, ttft_s=1.0,
                                              tokens_per_s=30.0)


@pytest.mark.realdata
def test_real_routerdc_facts(routerdc):
    data = routerdc
    assert data.n_prompts == 20600 and data.n_models == 7
    assert not np.isnan(data.quality).any()
    assert ((data.quality >= 0) & (data.quality <= 1)).all()
    assert set(data.task.tolist()) == {"MATH_prealgebra", "arc_challenge", "arc_easy", "ceval", "cmmlu",
                                       "gsm8k", "humaneval", "javascript", "mbpp", "mmlu"}
    assert sum("cluster_id:" in " ".join(t) for t in data.tags) == 4820
    assert not any(t.startswith("subject:") for ts in data.tags for t in ts)  # none recorded
    assert (data.input_tokens > 0).all()
