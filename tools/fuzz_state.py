"""Fuzz the state loaders and the data loaders (atheris; a hypothesis driver uses the same
entry point when atheris is absent).

Targets: ``router`` (Router.load), ``transform`` (TagTransform.from_bytes), ``text``
(TextRouter.load of a folder), ``data`` (mixllm.data.load_data of JSONL / CSV / RouterDC JSON) and
``pool`` (load_pool, TOML / JSON). Each input is used three ways, chosen by its first byte:
the raw bytes as the file; a valid file whose JSON manifest is replaced by the bytes (the
arrays keep their checksums, so the manifest's own checks are what is tested); and a valid
manifest with one value, anywhere in it, replaced by a fuzzed one (huge, negative, wrong
type). A crash is any exception other than the documented ones (ValueError and its
subclasses StateError / DataError; FileNotFoundError for a file a folder's manifest names),
or a hang / out-of-memory (libFuzzer's -timeout and -rss_limit_mb).

    python tools/fuzz_state.py router -max_total_time=600
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

TARGETS = ("router", "transform", "text", "data", "pool")
_WORK = Path(tempfile.mkdtemp(prefix="mixllm-fuzz-"))
_SEEDS: dict[str, bytes] = {}


def _seed_files() -> None:
    from mixllm import LLM, Router
    from mixllm.text.pipeline import PipelineConfig, TextRouter
    from mixllm.text.tags import TagTransform

    rng = np.random.default_rng(0)
    pool = [LLM("a", 1.0, 2.0), LLM("b", 0.5, 0.5)]
    E = rng.normal(size=(30, 4))
    q = rng.random((30, 2))
    t = rng.integers(1, 100, size=(30, 2)).astype(float)
    r = Router(pool, 4, alpha=0.1, refactor_every=8).fit(E, q, t)
    for i in range(5):
        r.feedback(E[i], "a", 1.0, 10)
    r.save(_WORK / "seed.npz")
    _SEEDS["router"] = (_WORK / "seed.npz").read_bytes()
    doms = [f"d{i % 3}" for i in range(30)]
    _SEEDS["transform"] = TagTransform(rank=1).fit(E, doms, q).to_bytes()
    tr = TextRouter(pool, PipelineConfig(ridge=1.0, tag_rank=1), _text_encoder()).fit(E, q, t, doms)
    tr.save(_WORK / "text-seed")
    _SEEDS["text"] = (_WORK / "text-seed" / "manifest.json").read_bytes()
    _SEEDS["data"] = b"".join(json.dumps({"prompt_id": f"p{i}", "prompt": "q", "model": m,
                                          "quality": 0.5, "output_tokens": 10}).encode() + b"\n"
                              for i in range(3) for m in ("a", "b"))
    _SEEDS["pool"] = json.dumps({"version": 1, "llm": [
        {"name": "a", "input_price": 1.0, "output_price": 2.0, "slots": 4}]}).encode()


class BytesProvider:
    """The part of atheris.FuzzedDataProvider these targets use, for drivers without atheris
    (the hypothesis test): consumes the input bytes from the front."""

    def __init__(self, data: bytes) -> None:
        self._d = memoryview(bytes(data))

    def _take(self, n: int) -> bytes:
        out, self._d = bytes(self._d[:n]), self._d[n:]
        return out

    def ConsumeBytes(self, n: int) -> bytes:  # noqa: N802 - atheris' names
        return self._take(n)

    def ConsumeInt(self, n_bytes: int) -> int:  # noqa: N802
        return int.from_bytes(self._take(n_bytes).ljust(n_bytes, b"\0"), "little", signed=True)

    def ConsumeIntInRange(self, lo: int, hi: int) -> int:  # noqa: N802
        return lo + int.from_bytes(self._take(4).ljust(4, b"\0"), "little") % (hi - lo + 1)

    def ConsumeBool(self) -> bool:  # noqa: N802
        return bool(self.ConsumeIntInRange(0, 1))

    def ConsumeRegularFloat(self) -> float:  # noqa: N802
        v = float(np.frombuffer(self._take(8).ljust(8, b"\0"), np.float64)[0])
        return v if np.isfinite(v) else 0.0

    def ConsumeUnicodeNoSurrogates(self, n: int) -> str:  # noqa: N802
        return self._take(n).decode("latin-1")


def _fuzz_value(fdp):
    kind = fdp.ConsumeIntInRange(0, 9)
    return [None, fdp.ConsumeInt(8), -fdp.ConsumeIntInRange(0, 10**6), 10**30,
            fdp.ConsumeRegularFloat(), fdp.ConsumeUnicodeNoSurrogates(8), [], {},
            [fdp.ConsumeInt(2)], "inf"][kind]


def _mutate_json(obj, fdp):
    """Replace one value somewhere in obj (a walk chosen by the fuzzer)."""
    if isinstance(obj, dict) and obj and fdp.ConsumeBool():
        keys = sorted(obj)
        k = keys[fdp.ConsumeIntInRange(0, len(keys) - 1)]
        obj[k] = _mutate_json(obj[k], fdp)
        return obj
    if isinstance(obj, list) and obj and fdp.ConsumeBool():
        i = fdp.ConsumeIntInRange(0, len(obj) - 1)
        obj[i] = _mutate_json(obj[i], fdp)
        return obj
    return _fuzz_value(fdp)


def _npz_with_manifest(raw: bytes, manifest: bytes) -> bytes:
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["manifest"] = np.frombuffer(manifest, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _manifest_of(raw: bytes) -> dict:
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return json.loads(bytes(z["manifest"]).decode())


def one_input(target: str, data: bytes, fdp_cls) -> None:
    """Run one fuzz input against ``target``; raises only on a crash."""
    from mixllm import Router, StateError
    from mixllm import data as D
    from mixllm.text.pipeline import TextRouter
    from mixllm.text.tags import TagTransform

    if not _SEEDS:
        _seed_files()
    fdp = fdp_cls(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    seed = _SEEDS[target]
    if target in ("router", "transform"):
        if mode == 0:
            raw = fdp.ConsumeBytes(1 << 16)
        elif mode == 1:
            raw = _npz_with_manifest(seed, fdp.ConsumeBytes(1 << 12))
        else:
            raw = _npz_with_manifest(seed, json.dumps(_mutate_json(_manifest_of(seed), fdp)).encode())
    elif target == "text":
        raw = fdp.ConsumeBytes(1 << 12) if mode < 2 else json.dumps(
            _mutate_json(json.loads(seed), fdp)).encode()
    else:
        raw = fdp.ConsumeBytes(1 << 16) if mode < 2 else json.dumps(
            _mutate_json(json.loads(seed if target == "pool" else seed.splitlines()[0]), fdp)
        ).encode() + (b"\n" if target == "data" else b"")
    try:
        if target == "router":
            path = _WORK / "case.npz"
            path.write_bytes(raw)
            Router.load(path)
        elif target == "transform":
            TagTransform.from_bytes(raw)
        elif target == "text":
            (_WORK / "text-seed" / "manifest.json").write_bytes(raw)
            try:
                TextRouter.load(_WORK / "text-seed", encoder=_text_encoder())
            finally:
                (_WORK / "text-seed" / "manifest.json").write_bytes(seed)
        else:
            suffix = [".jsonl", ".csv", ".json"][fdp.ConsumeIntInRange(0, 2)] if target == "data" \
                else [".json", ".toml"][mode % 2]
            path = _WORK / f"case{suffix}"
            path.write_bytes(raw)
            (D.load_pool if target == "pool" else D.load_data)(path)
    except (ValueError, StateError, D.DataError):
        pass
    except FileNotFoundError:
        if target != "text":
            raise


def _text_encoder():
    # The tests' encoder double (the loaders never embed; a TextRouter needs an encoder).
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from fakes import HashEncoder

    return HashEncoder(4)


def main(argv: list[str]) -> None:
    import atheris

    target = argv[1] if len(argv) > 1 and argv[1] in TARGETS else "router"
    rest = [a for a in argv[1:] if a != target]
    with atheris.instrument_imports():
        import mixllm  # noqa: F401
        import mixllm.data  # noqa: F401
        import mixllm.text.pipeline  # noqa: F401
    _seed_files()

    def test_one(data: bytes) -> None:
        one_input(target, data, atheris.FuzzedDataProvider)

    atheris.Setup([argv[0], *rest], test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
