"""The live terminal's lines: the worker's own log lines, one summary per task, what happened
to the processes, and a tally when too much happens to show it all. Coloured by process."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from rich.text import Text

from demo import names
from demo.live.happenings import Happening
from demo.live.model import Proc, TaskRow
from demo.trace.event import TraceEvent, command_name

ROLE_STYLES = {
    names.CLIENT: "bold cyan",
    names.WORKER_MAIN: "bold green",
    names.POOL_CHILD: "bold yellow",
    names.FLOWER: "bold magenta",
    names.BEAT: "bold blue",
    names.LUA: "blue",
    names.SPY: "dim",
    names.UNKNOWN: "bold red",
}
LEVEL_STYLES = {"warning": "yellow", "error": "bold red", "critical": "bold red"}
MARKS = {"SUCCESS": ("✔", "green"), "FAILURE": ("✘", "bold red"), "RETRY": ("↻", "yellow")}
# What a hop adds to a task's summary; a hop not named here stays out (its command says it).
HOP_WORDS = {
    "task.published": "published",
    "task.received": "received",
    "task.accepted": "ACK",
    "task.acked": "acked",
    "task.prerun": "runs",
    "result.stored": "stored",
    "task.success": "✔",
    "task.failure": "✘",
    "task.retry": "retry",
    "result.wait": "get()",
    "result.fetched": "got it",
}
_FRAMING = frozenset({"MULTI", "EXEC"})
Namer = Callable[[int | None, str], str]


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def namer(procs: dict[int, Proc]) -> Namer:
    """pid, role -> "ForkPoolWorker-2 4242" (the name its log lines gave), else "role pid"."""

    def name(pid: int | None, role: str) -> str:
        proc = procs.get(pid) if pid is not None else None
        return f"{proc.name if proc is not None and proc.name else role} {pid or '?'}"

    return name


def log_line(e: TraceEvent) -> Text:
    """A worker's log line, as the tutorial promises it: who printed it, then what."""
    role = e["role"]
    who = f"{e.get('process_name') or role} {e['pid'] or '?'}"
    line = Text(f"{clock(e['ts'])} ", style="dim")
    line.append(f"{who:<24}", style=ROLE_STYLES.get(role, "white"))
    line.append(" " + str(e.get("message", "")), style=LEVEL_STYLES.get(str(e.get("level")), ""))
    return line


def happening_line(h: Happening) -> Text:
    line = Text(f"{clock(h.ts)} ", style="dim")
    line.append(("⚠ " if h.alarming else "• ") + h.text, "bold red" if h.alarming else "cyan")
    return line


def _token(e: TraceEvent) -> str | None:
    if e["event"] == names.REDIS_COMMAND:
        name = command_name(e)
        # A BRPOP waits before the task exists: it is told when its reply delivers the task.
        return None if name in _FRAMING or name == "BRPOP" else name
    if e["event"] == names.REDIS_REPLY:
        return str(e.get("reply_to")) or None
    return HOP_WORDS.get(e["event"])


def segments(events: Iterable[TraceEvent]) -> list[tuple[TraceEvent, list[str]]]:
    """Consecutive events of one process grouped: (its first event, its words), in ts order;
    a word said twice in a row is said once, ×2."""
    found: list[tuple[TraceEvent, list[str]]] = []
    counts: list[list[int]] = []
    for e in sorted(events, key=lambda e: e["ts"]):
        word = _token(e)
        if word is None:
            continue
        if not found or found[-1][0]["pid"] != e["pid"]:
            found.append((e, []))
            counts.append([])
        words, times = found[-1][1], counts[-1]
        if words and words[-1] == word:
            times[-1] += 1
        else:
            words.append(word)
            times.append(1)
    return [
        (first, [w if n == 1 else f"{w}×{n}" for w, n in zip(words, times, strict=True)])
        for (first, words), times in zip(found, counts, strict=True)
    ]


def task_line(row: TaskRow, events: Sequence[TraceEvent], name: Namer) -> Text:
    """One task in a line: its outcome and time, then each process's part, in order."""
    mark, style = MARKS.get(row.state, ("…", "dim"))
    line = Text(f"{clock(row.done or row.last)} ", style="dim")
    line.append(f"{mark} ", style)
    short = row.name.rsplit(".", 1)[-1] or "task"
    line.append(f"{short}[{row.task_id[:8]}] ", "bold")
    took = f" in {(row.done - row.first) * 1000:.1f} ms" if row.done is not None else ""
    line.append(f"{row.state}{took} ", style)
    for i, (first, words) in enumerate(segments(events)):
        line.append(" › " if i else " ", "dim")
        line.append(name(first["pid"], first["role"]), ROLE_STYLES.get(first["role"], "white"))
        line.append(" " + " ".join(words))
    return line


def tally_line(
    now: float,
    window_s: float,
    done_by: Counter[tuple[int | None, str]],
    states: Counter[str],
    hidden: Counter[str],
    name: Namer,
) -> Text:
    """What a window held that was not printed line by line: tasks done, by whom, and what
    was left out."""
    line = Text(f"{clock(now)} ", style="dim")
    total = sum(states.values())
    outcome = " ".join(f"{MARKS.get(s, ('·', ''))[0]}{n}" for s, n in states.most_common())
    line.append(f"… {window_s:.1f} s: {total} tasks done ({outcome})", "bold")
    if done_by:
        by = ", ".join(f"{name(pid, role)} ×{n}" for (pid, role), n in done_by.most_common(4))
        line.append(f" by {by}")
    if hidden:
        left_out = ", ".join(f"{n} {what}" for what, n in hidden.items())
        line.append(f"; not shown: {left_out}", "dim")
    return line
