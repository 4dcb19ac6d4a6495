#!/usr/bin/env python
"""The browser demo under load: start ``tools/serve.py`` on a loopback port, send a burst of
large uploads at once, and print how it held up::

    python projects/ChairSegments/serve_load.py                    # 20 uploads of 6000x6000
    python projects/ChairSegments/serve_load.py --uploads 5 --size 3000 --queue-size 2

Figures printed: ``/healthz`` latency (max and median, polled every 0.1 s during the burst),
the server's resident memory (idle after one warm-up request, peak during the burst, and
after it, once the queue is empty), the count of 200 and 503 ("busy, retry") answers, and
the burst's wall time. A client answered 503 waits ``Retry-After`` and sends again (unless
``--no-retry``), so every upload is processed in the end. Bounded: ``--uploads`` clients, and
everything stops at ``--timeout`` seconds. Loopback only; the server is the script's own
subprocess and is stopped at the end. Linux (memory read from ``/proc``).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uploads", type=int, default=20, help="concurrent clients, one upload each")
    p.add_argument("--size", type=int, default=6000, help="the uploaded JPEG is SIZE x SIZE pixels")
    p.add_argument("--queue-size", type=int, help="the server's --queue-size (default: its own)")
    p.add_argument("--no-retry", action="store_true", help="count a 503 as final instead of retrying")
    p.add_argument("--timeout", type=float, default=600, help="stop everything after this many seconds")
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "ChairSegments", "unet.yaml"))
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[],
        help="served model's KEY VALUE opts (default: an untrained U-Net at width 0.25; add "
        "MODEL.WEIGHTS output/main_job/model_final.pth for a trained one)",
    )  # fmt: skip
    return p


def photo_jpeg(size: int) -> bytes:
    """A photo-like JPEG (smooth shading, shapes, sensor noise): a few MB at 6000x6000."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([120 + 80 * x, 100 + 60 * y, 140 - 50 * x * y], axis=-1)
    for _ in range(30):
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 40, size / 8)]
        inside = (x * size - cx) ** 2 + (y * size - cy) ** 2 < r * r
        img[inside] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def post_image(port: int, data: bytes, name: str, timeout: float) -> tuple[int, float]:
    """(status, Retry-After seconds or 0) of one POST /predict."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = conn.getresponse()
        r.read()
        return r.status, float(r.getheader("Retry-After") or 0)
    finally:
        conn.close()


def healthz(port: int, timeout: float) -> tuple[float, dict]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        reply = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return time.perf_counter() - t0, reply


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    start = time.monotonic()
    deadline = start + args.timeout
    left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
    data = photo_jpeg(args.size)
    print(f"upload: {args.size}x{args.size} JPEG, {len(data) / 2**20:.1f} MB, x{args.uploads} clients")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = args.opts or ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.25"]
    cmd = [sys.executable, os.path.join(REPO, "tools", "serve.py"), "--config-file", args.config_file]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--samples", "0"]
    cmd += ["--queue-size", str(args.queue_size)] if args.queue_size else []
    server = subprocess.Popen([*cmd, *opts], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(server.stdout), daemon=True).start()
    try:
        while True:
            try:
                healthz(port, 5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("".join(log[-40:]), file=sys.stderr)
                    raise SystemExit("error: tools/serve.py did not start") from None
                time.sleep(0.3)
        warm = io.BytesIO()
        Image.new("RGB", (256, 256), (90, 120, 60)).save(warm, format="PNG")
        post_image(port, warm.getvalue(), "warmup.png", left())  # the model's first call
        time.sleep(1.0)
        idle = rss_mb(server.pid)

        # memory sampler and /healthz poller, both until the burst ends
        done = threading.Event()
        peak = [idle]
        latencies: list[float] = []

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(server.pid))
                time.sleep(0.05)

        def poll() -> None:
            while not done.is_set():
                latencies.append(healthz(port, left())[0])
                time.sleep(0.1)

        answers: list[int] = []

        def client(i: int) -> None:
            while time.monotonic() < deadline:
                status, retry_after = post_image(port, data, f"big_{i}.jpg", left())
                answers.append(status)
                if status != 503 or args.no_retry:
                    return
                time.sleep(retry_after)

        watchers = [threading.Thread(target=f, daemon=True) for f in (sample, poll)]
        clients = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.uploads)]
        t0 = time.perf_counter()
        for t in watchers + clients:
            t.start()
        for t in clients:
            t.join(timeout=left())
        burst = time.perf_counter() - t0
        done.set()
        for t in watchers:
            t.join(timeout=10)
        while healthz(port, left())[1].get("queued") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # let the allocator settle
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    ok, busy = answers.count(200), answers.count(503)
    other = sorted({s for s in answers if s not in (200, 503)})
    slow = sum(t >= 1.0 for t in latencies)
    print(
        f"healthz during the burst: max {max(latencies) * 1000:.0f} ms, "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {statistics.quantiles(latencies, n=100)[98] * 1000:.0f} ms; {slow} of {len(latencies)} "
        "polls took 1 s or more"
    )
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"server RSS: idle {idle:.0f} MB, peak {peak[0]:.0f} MB, after {after:.0f} MB")
    print(
        f"answers: {ok} x 200, {busy} x 503 (busy, retried{' not' if args.no_retry else ''})"
        + (f", other statuses {other}" if other else "")
        + f"; {ok} of {args.uploads} uploads segmented"
    )
    print(f"burst: {burst:.1f} s; whole run {time.monotonic() - start:.1f} s")
    return 0 if ok + (busy if args.no_retry else 0) == args.uploads and not other else 1


if __name__ == "__main__":
    sys.exit(main())
