"""What ``mixllm serve`` adds to a request, beside bare forwarding hops, in one run.

Starts on 127.0.0.1 only, each in its own process:

* ``direct``: a fake OpenAI-compatible server (a plain ASGI app under uvicorn) answering
  every ``POST .../chat/completions`` at once with a fixed completion and its token usage;
* ``hop``: a bare forwarding hop, FastAPI + uvicorn + one pooled ``httpx.AsyncClient``, that
  passes the request body on to the upstream and its answer back (no parsing, no routing);
* ``hop (aiohttp)``: the same hop forwarding with aiohttp, the client the proxy uses;
* ``proxy``: ``mixllm serve --pool POOL --port P`` with its default settings (plus
  ``--serve-args``), over a pool of three LLMs served by the upstream;

then drives them from this process with a minimal HTTP/1.1 keep-alive client (asyncio streams,
so that the client's own cost is small and the same for every target):

* latency at 1 concurrent: p50 / p99 per target, the targets taking turns request by request
  (``--n1`` requests each), so that a noisy neighbour on the machine hits all of them alike;
* throughput at ``--conc`` concurrent connections (default 50): requests per second
  (``--nc`` requests per target, in ``--rounds`` interleaved rounds; the median round);

for ``proxy passthrough`` (``model`` = a pool LLM: no embedding, no routing) and ``proxy
routed`` (``model="mixllm"``, a new prompt every request, so no cache helps). For the proxy it
also reports the router's own time per routed request (``x-mixllm-router-ms``: featurise +
route) at 1 concurrent. Every response is checked (HTTP 200 and the upstream's answer) and
errors are counted. Every loop is bounded; the servers are stopped at the end, also on error.
``--compare PYTHONPATH`` adds ``compare passthrough/routed`` targets: ``mixllm serve`` of
another checkout (e.g. an older commit), in the same run.

Run: ``python benchmarks/proxy_overhead.py [--state ROUTER] [--json OUT]`` with mixllm installed
(``pip install '.[serve,test]'``: the serve extra and httpx, the hop's client).
"""

# No "from __future__ import annotations": FastAPI reads the hop handler's annotations.

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
POOL = (("cheap", 0.1, 0.2), ("mid", 1.0, 2.0), ("big", 10.0, 30.0))
_COMPLETION = json.dumps({
    "id": "upstream-1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "The answer is four."}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}}).encode()

# Prompts: distinct, about 50 WordPiece tokens, a question after a blank line (the default
# view embeds the last block).
_SUBJECTS = ("the integral of x squared", "a binary search tree", "the French revolution",
             "photosynthesis in C4 plants", "a Python decorator", "the Riemann hypothesis",
             "supply and demand curves", "the causes of inflation", "TCP congestion control",
             "a sonnet about autumn", "the Krebs cycle", "quicksort's worst case")


def prompt(i: int) -> str:
    s = _SUBJECTS[i % len(_SUBJECTS)]
    return (f"You are a careful assistant. Answer briefly and precisely.\n\n"
            f"Question {i}: explain {s} to a student in two or three sentences, give one "
            f"worked example with numbers where it helps, and say which common mistake "
            f"people make about it (case {i * 7919 % 100003}).")


# ------------------------------------------------------------------ the servers
def _upstream_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:  # drain the body
            msg = await receive()
            more = msg.get("more_body", False)
        ok = scope["method"] == "POST" and scope["path"].endswith("/chat/completions")
        body = _COMPLETION if ok else b'{"ok":true}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


def _hop_app(upstream: str, client: str):
    """The bare hop: FastAPI passing the body on with one pooled ``client`` (httpx or
    aiohttp) and the upstream's answer back."""
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    url = upstream + "/v1/chat/completions"
    headers = {"content-type": "application/json"}
    if client == "httpx":
        import httpx

        def open_client():
            return httpx.AsyncClient(limits=httpx.Limits(max_connections=1000))

        async def forward(http, body: bytes):
            r = await http.post(url, content=body, headers=headers)
            return r.content, r.status_code, r.headers.get("content-type")

        async def close(http):
            await http.aclose()
    else:
        import aiohttp

        def open_client():
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

        async def forward(http, body: bytes):
            async with http.post(url, data=body, headers=headers) as r:
                return await r.read(), r.status, r.headers.get("content-type")

        async def close(http):
            await http.close()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.http = open_client()
        yield
        await close(app.state.http)

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        data, status, media = await forward(request.app.state.http, await request.body())
        return Response(data, status_code=status, media_type=media)
    return app


#: Hop variants: name -> (forwarding client, uvicorn loop and HTTP parser).
HOPS = {"hop": ("httpx", "auto"), "hop (aiohttp)": ("aiohttp", "auto"),
        "hop (httpx; asyncio+h11)": ("httpx", "h11"),
        "hop (aiohttp; asyncio+h11)": ("aiohttp", "h11")}


def _serve_child(kind: str, port: int, upstream: str) -> None:
    import uvicorn

    kw: dict = {}
    if kind == "upstream":
        app = _upstream_app()
    else:
        client, stack = HOPS[kind]
        app = _hop_app(upstream, client)
        if stack == "h11":
            kw = {"loop": "asyncio", "http": "h11"}
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the client
class Conn:
    """One HTTP/1.1 keep-alive connection: POST a body, read status, headers and body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json"
                          b"\r\ncontent-length: %d\r\n\r\n%s"
                          % (path.encode(), HOST.encode(), self.port, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        else:
            raise RuntimeError("response without a length")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.reader = self.writer = None


class Target:
    def __init__(self, name: str, port: int, model: str | None, offset: int) -> None:
        self.name, self.port, self.model = name, port, model
        self.offset = offset
        self.lat: list[float] = []
        self.router_ms: list[float] = []
        self.errors = 0
        self.rps: list[float] = []
        self.seq = 0
        self.record_router = True

    def body(self) -> bytes:
        self.seq += 1
        return json.dumps({"model": self.model or "m", "messages": [
            {"role": "user", "content": prompt(self.offset + self.seq)}]}
        ).encode()

    async def one(self, conn: Conn) -> float:
        body = self.body()
        t0 = time.perf_counter()
        try:
            status, headers, data = await asyncio.wait_for(
                conn.post("/v1/chat/completions", body), 30)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, RuntimeError):
            self.errors += 1
            await conn.close()
            return float("nan")
        dt = time.perf_counter() - t0
        if status != 200 or b"The answer is four." not in data:
            self.errors += 1
        if "x-mixllm-router-ms" in headers and self.record_router:
            self.router_ms.append(float(headers["x-mixllm-router-ms"]))
        return dt


async def sequential(t: Target, n: int) -> None:
    conn = Conn(t.port)
    try:
        for _ in range(n):
            dt = await t.one(conn)
            if dt == dt:
                t.lat.append(dt)
    finally:
        await conn.close()


async def concurrent(t: Target, n: int, conc: int) -> None:
    conns = [Conn(t.port) for _ in range(conc)]
    left = [n]

    async def worker(c: Conn) -> None:
        while left[0] > 0:
            left[0] -= 1
            await t.one(c)

    try:
        for c in conns:  # connect first: throughput excludes the connection set-up
            await c.post("/v1/chat/completions", t.body())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        t.rps.append(n / (time.perf_counter() - t0))
    finally:
        for c in conns:
            await c.close()


async def wait_up(port: int, proc: subprocess.Popen, log: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            r, w = await asyncio.open_connection(HOST, port)
            w.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            w.close()
            if b" 200 " in head.split(b"\r\n")[0]:
                return
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.2)


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_start": os.getloadavg()[0]}
    try:
        import mixllm
        info["mixllm_kernels"] = mixllm.simd_backend()
    except Exception:  # noqa: BLE001 - reported, not needed
        info["mixllm_kernels"] = "unavailable"
    return info


async def measure(args, work: Path) -> dict:
    hops = [h.strip() for h in args.hops.split(",") if h.strip()]
    for h in hops:
        if h not in HOPS:
            raise SystemExit(f"unknown hop {h!r}: choose from {list(HOPS)}")
    ports = {k: _free_port() for k in ("upstream", "proxy", *hops)}
    upstream = f"http://{HOST}:{ports['upstream']}"
    pool = work / "pool.toml"
    pool.write_text("".join(
        f'[[llm]]\nname = "{n}"\ninput_price = {i}\noutput_price = {o}\n'
        f'base_url = "{upstream}/{n}/v1"\n\n' for n, i, o in POOL))
    env = dict(os.environ)
    procs, logs = {}, {}
    cmds = {
        "upstream": [sys.executable, __file__, "_child", "upstream", str(ports["upstream"]), ""],
        "proxy": [sys.executable, "-m", "mixllm.cli", "serve", "--pool", str(pool),
                  "--port", str(ports["proxy"]), *args.serve_args.split()],
    }
    for h in hops:
        cmds[h] = [sys.executable, __file__, "_child", h, str(ports[h]), upstream]
    if args.state:
        # The fitted router served as a user serves it (`mixllm serve --state`), every LLM of
        # it on the upstream; from a copy, so the benchmark never writes the user's folder.
        from mixllm.text.pipeline import TextRouter

        fitted = work / "fitted-state"
        shutil.copytree(args.state, fitted)
        llms = TextRouter.load(fitted).router.llms
        fitted_pool = work / "fitted-pool.toml"
        fitted_pool.write_text("".join(
            f'[[llm]]\nname = {json.dumps(m.name)}\ninput_price = {m.input_price!r}\n'
            f'output_price = {m.output_price!r}\nbase_url = "{upstream}/m{k}/v1"\n\n'
            for k, m in enumerate(llms)))
        ports["fitted"] = _free_port()
        cmds["fitted"] = [sys.executable, "-m", "mixllm.cli", "serve", "--pool",
                          str(fitted_pool), "--state", str(fitted), "--port",
                          str(ports["fitted"]), *args.serve_args.split()]
    if args.compare:
        ports["compare"] = _free_port()
        cmds["compare"] = ["env", f"PYTHONPATH={args.compare}", sys.executable, "-m",
                           "mixllm.cli", "serve", "--pool", str(pool), "--port",
                           str(ports["compare"]), *args.compare_args.split()]
    try:
        for k, cmd in cmds.items():
            logs[k] = work / f"{k}.log"
            with open(logs[k], "wb") as out:
                procs[k] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=work)
        for k in cmds:
            await wait_up(ports[k], procs[k], logs[k], args.start_timeout)
        targets = [Target("direct", ports["upstream"], None, 0)]
        targets += [Target(h, ports[h], "m", 10_000_000 * (i + 1)) for i, h in enumerate(hops)]
        targets += [Target("proxy passthrough", ports["proxy"], "cheap", 100_000_000),
                    Target("proxy routed", ports["proxy"], "mixllm", 110_000_000)]
        if args.state:
            targets.append(Target("proxy routed (fitted)", ports["fitted"], "mixllm",
                                  140_000_000))
        if args.compare:
            targets += [Target("compare passthrough", ports["compare"], "cheap", 120_000_000),
                        Target("compare routed", ports["compare"], "mixllm", 130_000_000)]
        for t in targets:  # warm up (imports, first-call paths, connection pools)
            await sequential(t, args.warmup)
            t.lat.clear(); t.router_ms.clear(); t.errors = 0
        rounds = args.rounds
        for _ in range(rounds):
            # Fresh connections each round (a server closes a connection idle for 5 s, as
            # these are during the other targets' throughput runs), opened before timing.
            conns = [Conn(t.port) for t in targets]
            for t, c in zip(targets, conns):
                await c.post("/v1/chat/completions", t.body())
            # One request per target in turn: a noisy neighbour hits every target alike.
            for _ in range(max(1, args.n1 // rounds)):
                for t, c in zip(targets, conns):
                    dt = await t.one(c)
                    if dt == dt:
                        t.lat.append(dt)
            for c in conns:
                await c.close()
            for t in targets:
                t.record_router = False
                await concurrent(t, max(args.conc, args.nc // rounds), args.conc)
                t.record_router = True
        res = {}
        for t in targets:
            lat = np.array(t.lat) * 1e3
            res[t.name] = {
                "n1": len(lat), "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
                "rps_conc": float(np.median(t.rps)), "rps_rounds": [round(x, 1) for x in t.rps],
                "errors": t.errors,
                "router_ms_p50": float(np.percentile(t.router_ms, 50)) if t.router_ms else None,
                "router_ms_p99": float(np.percentile(t.router_ms, 99)) if t.router_ms else None,
            }
        res["_logs"] = {k: logs[k].read_text()[-3000:] for k in ("proxy", "fitted") if k in logs}
        return res
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_child"]:
        _serve_child(argv[1], int(argv[2]), argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n1", type=int, default=400, help="sequential requests per target "
                                                        "(default 400)")
    ap.add_argument("--nc", type=int, default=2000, help="requests per target at --conc "
                                                         "(default 2000)")
    ap.add_argument("--conc", type=int, default=50, help="concurrent connections (default 50)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds the targets alternate over "
                                                          "(default 4)")
    ap.add_argument("--warmup", type=int, default=30, help="requests per target before "
                                                           "measuring (default 30)")
    ap.add_argument("--serve-args", default="", help="extra arguments of 'mixllm serve' "
                                                     "(default none: its defaults)")
    ap.add_argument("--start-timeout", type=float, default=120.0,
                    help="seconds a server may take to start (default 120)")
    ap.add_argument("--hops", default="hop,hop (aiohttp)",
                    help=f"comma-separated hops to run beside the proxy, of {list(HOPS)}")
    ap.add_argument("--state", type=Path, help="a fitted router folder ('mixllm fit --out'): "
                                               "adds 'proxy routed (fitted)', mixllm serve "
                                               "--state over a copy of it (default: none)")
    ap.add_argument("--compare", default="", help="PYTHONPATH of another mixllm checkout whose "
                                                  "'mixllm serve' runs beside (default: none)")
    ap.add_argument("--compare-args", default="", help="extra 'mixllm serve' arguments of "
                                                       "--compare (default none)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    args = ap.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    info = machine()
    with tempfile.TemporaryDirectory(prefix="mixllm-overhead-") as tmp:
        res = asyncio.run(measure(args, Path(tmp)))
    info["load_avg_end"] = os.getloadavg()[0]
    tail = res.pop("_logs")
    print(f"machine: {info}")
    print(f"{'target':26s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s@' + str(args.conc):>10s} "
          f"{'errors':>6s} {'router p50':>10s} {'router p99':>10s}")
    for name, r in res.items():
        rm = "" if r["router_ms_p50"] is None else f"{r['router_ms_p50']:10.3f} {r['router_ms_p99']:10.3f}"
        print(f"{name:26s} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['rps_conc']:10.1f} "
              f"{r['errors']:6d} {rm}")
    for ref in [h for h in ("hop", "hop (aiohttp)") if h in res]:
        hop = res[ref]
        for name in [n for n in res if n.startswith("proxy ")]:
            r = res[name]
            print(f"{name} vs {ref}: p50 {r['p50_ms'] - hop['p50_ms']:+.2f} ms; throughput "
                  f"{r['rps_conc'] / hop['rps_conc']:.2f} x")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": vars(args) | {"json": str(args.json)},
                                         "results": res, "proxy_logs": tail}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
