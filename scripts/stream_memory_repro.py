"""Issue 16, item 4, as a measurement: the service's resident memory before, during and after
20 connections that each send 60 MiB of a frame whose header claims 66 MB.

    .venv/bin/python scripts/stream_memory_repro.py [REPO] [pdm-edge run options...]

REPO (default: this checkout) is the pdm-edge tree to run; the options go to `pdm-edge run`
(e.g. --max-frame-bytes 67108864). Prints one line; docs/stream-protocol.md has the figures.
Runs for about 20 s on loopback; RSS is the sum over the service and its worker processes.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CONNECTIONS, MIB_EACH, CLAIMED = 20, 60, 66_000_000


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = sys.argv[1:]
    repo = Path(args.pop(0)) if args and not args[0].startswith("-") else Path(__file__).parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="pdm-rss-"))
    text = (repo / "pipelines" / "demo.toml").read_text()
    text = text.replace('path = "../models/demo-pump"', f'path = "{repo}/models/demo-pump"')
    if "[alarms]" not in text:
        text += '\n[alarms]\nrelay = "log:"\n'
    (tmp / "p.toml").write_text(text)
    port = _free()
    cmd = [sys.executable, "-m", "pdm.cli", "run", str(tmp / "p.toml"), "--listen",
           f"127.0.0.1:{port}", "--api", "off", "--data-dir", str(tmp / "data"),
           "--actions", "dry-run", *args]  # fmt: skip
    with open(tmp / "log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT)

    def rss_mb() -> float:
        pids, kb = [proc.pid], 0
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            pids += [
                int(p) for p in Path(f"/proc/{proc.pid}/task/{task}/children").read_text().split()
            ]
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    kb += int(line.split()[1])
        return kb / 1024

    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(3)
        before = rss_mb()
        names = [f"c{i}".encode() for i in range(8)]
        head = struct.pack("<4sBBHdqIH", b"PDMS", 1, 2, 8, 25600.0, time.time_ns(),
                           CLAIMED // 64, 9) + b"demo-pump"  # fmt: skip
        head += b"".join(struct.pack("<H", len(n)) + n for n in names)
        socks: list[socket.socket] = []

        def attack() -> None:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                socks.append(s)
                s.sendall(head)
                for _ in range(MIB_EACH):
                    s.sendall(bytes(1 << 20))
            except OSError:
                pass  # refused: what a bounded receiver does

        threads = [threading.Thread(target=attack) for _ in range(CONNECTIONS)]
        for t in threads:
            t.start()
        peak = before
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb())
            time.sleep(0.05)
        time.sleep(1)
        held = rss_mb()
        for s in socks:
            s.close()
        time.sleep(3)
        after = rss_mb()
        print(
            f"{' '.join(args) or 'defaults'}: RSS before {before:.0f} MB, peak {max(peak, held):.0f}"
            f" MB, 3 s after the connections closed {after:.0f} MB"
        )
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
