"""An SMTP server that keeps every mail it receives as a .eml file, so nothing is lost.

Run on its own: `python -m demo.stack.smtp_sink --port 1025 --dir MAILDIR`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from demo.stack.procs import Part, port_accepts, stop_process, wait_until

STOP_GRACE_S = 3.0  # for the SMTP server's own stop, after a SIGTERM or Ctrl-C


@dataclass(frozen=True)
class Mail:
    path: Path
    message_id: str
    sender: str
    recipients: str
    subject: str
    received: float


class _KeepEveryMail:
    def __init__(self, folder: Path, latency_s: float = 0.0) -> None:
        self.folder = folder
        self.latency_s = latency_s
        self._count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.latency_s:  # a real server's checks; the mail is kept just before its 250
            await asyncio.sleep(self.latency_s)
        with self._lock:
            self._count += 1
            name = f"{time.time():.6f}-{self._count:05d}.eml"
        (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def serve(port: int, folder: Path, latency_s: float = 0.0) -> None:
    from aiosmtpd.controller import Controller

    folder.mkdir(parents=True, exist_ok=True)
    handler = _KeepEveryMail(folder, latency_s)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"SMTP sink on 127.0.0.1:{port}, mails in {folder}", flush=True)
    # SIGTERM stops it as Ctrl-C does: by an exception in the main thread, not a handler that
    # takes a lock (Event.set from a handler can wait on a lock its own thread holds).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()
    # Each mail is on disk before its 250 reply, so nothing is lost if the server's own stop
    # (it joins its event loop's thread) does not finish: it gets a bounded time. A sink
    # that outlived its kit once, in a loaded test run, after PDEATHSIG's SIGTERM.
    closer = threading.Thread(target=controller.stop, daemon=True)
    closer.start()
    closer.join(STOP_GRACE_S)
    if closer.is_alive():
        os._exit(0)


def read_mails(folder: Path) -> list[Mail]:
    """Every mail the sink kept, oldest first."""
    mails = []
    for path in sorted(folder.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        mails.append(
            Mail(
                path=path,
                message_id=str(parsed.get("Message-ID", "")),
                sender=str(parsed.get("From", "")),
                recipients=str(parsed.get("To", "")),
                subject=str(parsed.get("Subject", "")),
                received=float(path.name.split("-", 1)[0]),
            )
        )
    return mails


@dataclass
class SmtpSink(Part):
    """The sink as a child process: it can be stopped and started again on the same port."""

    title: ClassVar[str] = "SMTP sink"

    port: int
    folder: Path
    latency_s: float = 0.0  # before each mail's 250: 0 replies at once
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, deadline_s: float = 15.0) -> SmtpSink:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder.parent / f"smtp-sink-{self.port}.log"
        argv = [sys.executable, "-m", "demo.stack.smtp_sink", "--port", str(self.port)]
        argv += ["--dir", str(self.folder), "--latency-ms", str(round(self.latency_s * 1000))]
        self._spawn(argv, log=log)
        wait_until(
            lambda: port_accepts("127.0.0.1", self.port),
            deadline_s,
            f"SMTP sink on port {self.port}",
            self.proc,
            log,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=5)
            self.proc = None

    def mails(self) -> list[Mail]:
        return read_mails(self.folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--latency-ms", type=int, default=0, help="wait before each 250")
    args = parser.parse_args()
    serve(args.port, args.dir, args.latency_ms / 1000)


if __name__ == "__main__":
    main()
