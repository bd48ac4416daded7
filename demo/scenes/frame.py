"""The frame every scenario runs in: options, the stack, steps, evidence, checked expectations.

A scenario is a list of steps. Each step says what is about to happen and why, acts, shows
the evidence it observed, and checks expectations against what really happened. The
scenario exits 0 only if every expectation held. Every scenario is run the same way:
`python scenarios/NN_name.py [--no-pause] [--json-trace PATH] [--flower]`.

House style, so that a learner can read a scenario top to bottom: each step is
`with s.step(title, why):` then act, `s.show(...)` the evidence, `s.expect(claim, held,
detail)`; counts and timeouts are keyword arguments; a step reads what it needs from the
timeline (demo.trace.query) instead of carrying variables from an earlier step (a worker
by its name, `s.worker(name)`; a task by its task name, `s.task_id(name)`); the Redis client
a step needs is `s.redis`, which the frame closes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import redis
from rich.console import Console, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel

from demo import names
from demo.config import KitConfig
from demo.errors import KitError
from demo.live import registry as live
from demo.spy.monitor import Spy
from demo.stack.beat import Beat
from demo.stack.stack import Stack
from demo.stack.worker import Worker
from demo.trace.timeline import Timeline, write_jsonl

SHIPPED_S = 10.0  # how long a hop a process has already sent may take to reach the timeline


@dataclass
class Expectation:
    step: str
    claim: str
    held: bool
    detail: str = ""
    ts: float = field(default_factory=time.time)

    def as_event(self) -> dict[str, Any]:
        """In the trace too: the docs' claims table is checked against what a run checked."""
        return {
            "ts": self.ts,
            "event": names.EXPECTATION,
            "role": names.SCENARIO,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "host": socket.gethostname(),
            "step": self.step,
            "claim": self.claim,
            "held": self.held,
            "detail": self.detail,
        }


@dataclass
class Scenario:
    """What a scenario body receives: the running stack, the timeline, and narration tools."""

    title: str
    stack: Stack
    timeline: Timeline
    console: Console
    pause: bool
    expectations: list[Expectation] = field(default_factory=list)
    current_step: str = ""

    @contextlib.contextmanager
    def step(self, title: str, explain: str) -> Iterator[None]:
        """Announce a step (title, then what is about to happen and why), run it, then pause."""
        self.current_step = title
        self.console.rule(f"[bold]{title}")
        self.console.print(Markdown(explain))
        yield
        self.wait_for_reader()

    @cached_property
    def redis(self) -> redis.Redis:
        """A client of the stack's Redis (str replies), closed by the frame at the end.

        Unnamed on purpose: its reads show in the spy's tables like any client's would.
        """
        return redis.Redis.from_url(self.stack.broker_url, decode_responses=True)

    def close(self) -> None:
        if "redis" in self.__dict__:
            self.redis.close()
        self.timeline.close()

    def show(self, *renderables: RenderableType) -> None:
        for renderable in renderables:
            self.console.print(renderable)

    def expect(self, claim: str, held: bool, detail: str = "") -> bool:
        """Record and print one expectation about Celery, checked on what really happened."""
        self.expectations.append(Expectation(self.current_step, claim, bool(held), detail))
        mark = "[green]✔ held[/]" if held else "[red]✘ did NOT hold[/]"
        self.console.print(f"  {mark}  {claim}" + (f"  [dim]({detail})[/]" if detail else ""))
        return bool(held)

    def start_worker(
        self,
        name: str = "celery",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Worker:
        return self.stack.start_worker(name, extra=["-E", *(extra or [])], env=env)

    def start_beat(self, name: str = "beat", env: dict[str, str] | None = None) -> Beat:
        """`celery -A envoi_mails beat`, with a schedule file of its own, stopped by the frame."""
        return self.stack.start_beat(name, env=env)

    def beat(self, name: str = "beat") -> Beat:
        """The beat started as `name` by an earlier step."""
        return _named(self.stack.beats, name, "beat")

    def worker(self, name: str = "celery") -> Worker:
        """The worker started as `name` by an earlier step: steps find it again by its name."""
        return _named(self.stack.workers, name, "worker")

    def task_id(self, task: str, *, timeout: float = SHIPPED_S) -> str:
        """The id of the first task named `task` this scenario published."""
        return self.published(task, timeout=timeout)[0]

    def flower(self, path: str = "") -> str:
        """Where Flower shows the same thing (started with --flower or when run by hand)."""
        if self.stack.flower is None:
            return f"Flower: not started (run with --flower to see /{path.lstrip('/')})"
        return f"Flower: {self.stack.flower.url}/{path.lstrip('/')}"

    def published(
        self, task: str, *, count: int = 1, timeout: float = 10.0, **criteria: Any
    ) -> list[str]:
        """The ids of the first `count` `task` messages this scenario published (its own
        task.published hops, narrowed by `criteria`, e.g. routing_key=): how a step finds
        the tasks of an earlier step without carrying them over."""
        found = self.timeline.wait_until(
            event="task.published",
            task=task,
            role=names.CLIENT,
            count=count,
            timeout=timeout,
            what=f"{count} × {task} published by the scenario",
            **criteria,
        )
        return [e.get("task_id", "") for e in found]

    def wait_for_reader(self) -> None:
        if self.pause:
            with contextlib.suppress(EOFError):
                input("\n  ⏎ Enter for the next step … ")

    @property
    def all_held(self) -> bool:
        return all(e.held for e in self.expectations)


P = TypeVar("P", Worker, Beat)


def _named(started: list[P], name: str, kind: str) -> P:
    """The last of `started` called `name`: how a step finds a process an earlier one started."""
    found = [p for p in started if p.name == name]
    if not found:
        raise KitError(f"no {kind} named {name!r} was started")
    return found[-1]


def _options(argv: list[str] | None, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0] if doc else None)
    parser.add_argument("--no-pause", action="store_true", help="do not wait for Enter")
    parser.add_argument(
        "--json-trace",
        type=Path,
        metavar="PATH",
        help="write the merged trace, one JSON object a line",
    )
    parser.add_argument("--flower", action="store_true", help="start Flower beside the worker")
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="also watch Redis with MONITOR (costly): it adds what no process recorded",
    )
    return parser.parse_args(argv)


def run(
    title: str, body: Callable[[Scenario], Any], doc: str = "", argv: list[str] | None = None
) -> int:
    """Start the stack and the timeline (and MONITOR with --monitor), run `body`, stop
    everything; return the exit code: 0 only if every expectation held."""
    options = _options(argv, doc)
    # A log file or a pipe gets 120 columns, not rich's 80: the tables stay readable.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    # Never wait for a key press when nobody can press one.
    pause = not options.no_pause and sys.stdin is not None and sys.stdin.isatty()
    console.print(Panel(f"[bold]{title}[/]\n{doc.strip()}" if doc else f"[bold]{title}"))
    started = time.monotonic()
    scenario: Scenario | None = None
    try:
        with Stack(KitConfig.from_env()) as stack:
            stack.apply_env()
            if options.flower or pause:
                stack.start_flower()
            spy = Spy(stack.broker_url) if options.monitor else None
            with spy if spy is not None else contextlib.nullcontext():
                scenario = Scenario(title, stack, Timeline(stack.broker_url, spy), console, pause)
                try:
                    with live.announced(stack.config.state_dir, title, stack.broker_url, console):
                        body(scenario)
                finally:
                    if options.json_trace:
                        scenario.timeline.settle()
                        expectations = [e.as_event() for e in scenario.expectations]
                        scenario.timeline.write_jsonl(options.json_trace, expectations)
                        console.print(f"trace written to {options.json_trace}")
                        if spy is not None:
                            # Every line MONITOR saw, as the spy attributed it: the
                            # independent record the capture is checked against.
                            seen = monitor_path(options.json_trace)
                            write_jsonl(seen, spy.events())
                            console.print(f"what MONITOR saw written to {seen}")
                    scenario.close()
    except KitError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: everything the scenario started is stopped.[/]")
        return 130
    return _summary(console, scenario, time.monotonic() - started)


def monitor_path(json_trace: Path) -> Path:
    """Where `--monitor --json-trace PATH` writes what MONITOR saw: PATH.monitor.jsonl."""
    return json_trace.with_name(f"{json_trace.name}.monitor.jsonl")


def _summary(console: Console, scenario: Scenario | None, elapsed: float) -> int:
    if scenario is None or not scenario.expectations:
        console.print("[red]no expectation was checked[/]")
        return 1
    failed = [e for e in scenario.expectations if not e.held]
    total = len(scenario.expectations)
    console.rule("[bold]Summary")
    if failed:
        for e in failed:
            console.print(f"[red]✘[/] {e.step}: {e.claim} {e.detail}")
        console.print(
            f"[red]{len(failed)} of {total} expectations did not hold[/] ({elapsed:.1f} s)"
        )
        return 1
    console.print(f"[green]all {total} expectations held[/] ({elapsed:.1f} s)")
    return 0
