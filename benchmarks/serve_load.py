"""Load on `text2sign serve`: N concurrent clients posting /api/generate for M seconds each.

    python benchmarks/serve_load.py [--model FOLDER | --url http://127.0.0.1:PORT]
        [--clients 1 4 16] [--seconds 30] [--steps 5] [--max-queue 8] [--texts A B C]

Without --url it starts `text2sign serve` on a free localhost port (the shipped model unless
--model) and stops it at the end; --url must be a localhost server. Each client posts, waits
for the answer, and posts again (after --backoff seconds if it was refused) until the time is
up; requests still running then are waited for. Prints one markdown row per client count:
answered requests/s, p50/p95 latency of the answered ones, errors by HTTP code, and the
server's resident memory before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running localhost server (default: start one)")
    p.add_argument("--model", help="model folder for the started server (default: shipped)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=30.0, help="per client count (max 600)")
    p.add_argument("--steps", type=int, default=5, help="sampler steps per request")
    p.add_argument("--texts", nargs="+", default=["A", "B", "L", "Y", "hello"])
    p.add_argument("--max-queue", type=int, default=8, help="the started server's --max-queue")
    p.add_argument("--backoff", type=float, default=0.5,
                   help="seconds a refused client waits before posting again")
    p.add_argument("--device", default="cpu", help="the started server's --device")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 600:
        p.error(f"--seconds {args.seconds}: must be in (0, 600]")
    if min(args.clients) < 1 or max(args.clients) > 256:
        p.error(f"--clients {args.clients}: each must be in [1, 256]")
    if args.url and urllib.parse.urlparse(args.url).hostname not in ("127.0.0.1", "localhost",
                                                                     "::1"):
        p.error(f"--url {args.url}: this benchmark only loads servers on localhost")
    return args


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "text2sign", "serve", "--port", "0", "--device", args.device,
           "--max-queue", str(args.max_queue)] + (["--model", args.model] if args.model else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("open http://"):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the log
            return proc, line.split()[1].rstrip("/")
    proc.wait()
    raise SystemExit("the server did not start:\n" + "".join(lines))


def info(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/info", timeout=30) as res:
        return json.loads(res.read())


def post(url: str, body: dict) -> tuple[int, float]:
    """(HTTP status, seconds the server spent in the model); status 0: no HTTP answer."""
    req = urllib.request.Request(url + "/api/generate", json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=600) as res:
            return res.status, json.loads(res.read())["timing"]["generate_s"]
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, 0.0
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, 0.0


def load(url: str, clients: int, seconds: float, args: argparse.Namespace) -> dict:
    """Run `clients` threads for `seconds`; every answer as (status, latency, model seconds)."""
    results: list[tuple[int, float, float]] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(k: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            body = {"text": args.texts[(k + n) % len(args.texts)], "steps": args.steps,
                    "seed": 1000 * k + n}
            start = time.perf_counter()
            status, model_seconds = post(url, body)
            with lock:
                results.append((status, time.perf_counter() - start, model_seconds))
            n += 1
            if status != 200:
                time.sleep(args.backoff)

    before = info(url)["memory_mb"]
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ok = np.array([(s, m) for code, s, m in results if code == 200]).reshape(-1, 2)
    nan = float("nan")
    return {"clients": clients, "seconds": elapsed, "ok": len(ok),
            "rate": len(ok) / elapsed,
            "p50": float(np.percentile(ok[:, 0], 50)) if len(ok) else nan,
            "p95": float(np.percentile(ok[:, 0], 95)) if len(ok) else nan,
            "model": float(np.median(ok[:, 1])) if len(ok) else nan,
            "errors": Counter(code for code, _, _ in results if code != 200),
            "mem_before": before, "mem_after": info(url)["memory_mb"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args)
    try:
        about = info(url)
        post(url, {"text": args.texts[0], "steps": args.steps})  # warm-up, not counted
        rows = []
        for clients in args.clients:
            print(f"{clients} clients for {args.seconds:g} s", file=sys.stderr)
            rows.append(load(url, clients, args.seconds, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)

    print("| clients | answered/s | p50 s | p95 s | model s (median) | answered | errors by code "
          "| server MiB before | after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        errors = ", ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(r["errors"].items()))
        print(f"| {r['clients']} | {r['rate']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} "
              f"| {r['model']:.2f} | {r['ok']} "
              f"| {errors or 'none'} | {r['mem_before']:.0f} | {r['mem_after']:.0f} |")
    m = about["model"]
    print(f"\nModel {m['name']} ({m['frames']} frames at {m['size']}x{m['size']}), "
          f"{m['sampler']} {args.steps} steps, guidance {m['guidance']:g}; server on "
          f"{m['device']}, --max-queue {about['limits']['max_queue']}, {args.seconds:g} s per "
          f"row, refused clients back off {args.backoff:g} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
