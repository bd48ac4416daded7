"""A second host on this machine: a network namespace, a veth pair, an address and a hostname.

What runs inside shares nothing with the first host but the link: its own interfaces, its own
hostname (a UTS namespace), and it reaches the kit's Redis only over the veth pair. So what the
trace says about it (host, pids, commands) can only come from the process itself: psutil on
the first host could not place its sockets. Needs Linux, root, `ip` and `unshare`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from types import TracebackType

from demo.errors import KitError


def unavailable() -> str | None:
    """Why a second host cannot be made here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a network namespace needs root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian: iproute2, util-linux)"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KitError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class SecondHost:
    """`with SecondHost("h2") as h:` then start processes with `h.launcher`.

    The first host is `host_ip` on its end of the veth pair; the second is `ip`.
    """

    hostname: str
    subnet: int = field(default_factory=lambda: 16 + os.getpid() % 200)  # 10.213.<subnet>.0/30
    name: str = field(init=False)
    created: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.name = f"xray-{self.hostname}-{os.getpid()}"

    @property
    def host_ip(self) -> str:
        return f"10.213.{self.subnet}.1"

    @property
    def ip(self) -> str:
        return f"10.213.{self.subnet}.2"

    @property
    def launcher(self) -> list[str]:
        """Prefix for a command that runs on the second host, under its own hostname.

        `ip netns exec` and `unshare` exec what follows, so the pid returned by Popen is the
        program's own and signals reach it directly.
        """
        set_name = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.name, "unshare", "--uts", "--", "sh", "-c", set_name,
                self.hostname]  # fmt: skip

    def start(self) -> SecondHost:
        reason = unavailable()
        if reason is not None:
            raise KitError(f"cannot make a second host: {reason}")
        outside, inside = f"xv{os.getpid() % 100000}a", f"xv{os.getpid() % 100000}b"
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{self.ip}/30", "dev", inside)
        _ip("netns", "exec", self.name, "ip", "link", "set", inside, "up")
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        return self

    def stop(self) -> None:
        """Delete the namespace; its end of the veth pair goes with it, and so does ours."""
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
            self.created = False

    def __enter__(self) -> SecondHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
