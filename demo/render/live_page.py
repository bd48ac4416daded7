"""The live page's shell: the panels' places, the style, the one small script.

Everything in it is served by the kit itself: no CDN, no web font, no build step. The
panels' content comes from the server (demo.render.live_html), first inside this page,
then in each Server-Sent Event; demo/live/static/live.js only puts it in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from demo.render.sequence_html import esc

STYLE = """
* { box-sizing: border-box; }
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: baseline; padding: 8px 14px;
  background: #1f2933; color: #eee; }
header h1 { font-size: 16px; margin: 0; }
header a { color: #9fd3ff; }
header form { display: inline; margin: 0; }
#conn.live { color: #7ee787; } #conn.down { color: #ff9b9b; }
main { display: grid; grid-template-columns: minmax(280px, 30%) minmax(0, 1fr); gap: 12px;
  padding: 12px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 8px 10px;
  margin-bottom: 12px; min-width: 0; overflow-wrap: anywhere; }
section h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; color: #52606d; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 14px; }
ul.tree { padding-left: 0; }
.proc { margin: 2px 0; }
.proc.main > b:first-of-type { color: #00855F; }
.proc.child { color: #8a5300; } .proc.client { color: #0072B2; } .proc.flower { color: #A8478A; }
.proc.gone { color: #999; }
.badge { border-radius: 8px; padding: 0 6px; font-size: 11px; }
.badge.busy { background: #ffe2b3; } .badge.idle { background: #e6f4ea; }
.badge.alarm, .alarm { background: #ffd7d7; color: #a00; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eef0f2; }
table.tasks td { white-space: nowrap; }
table.kv td, table.kv th { overflow-wrap: normal; }
ul.traces { margin: 0 0 6px; padding-left: 16px; }
table.tasks tbody tr { cursor: pointer; } table.tasks tbody tr:hover { background: #eef6ff; }
tr.selected { background: #dcecff !important; }
.s-SUCCESS { color: #00855F; } .s-FAILURE { color: #c00; } .s-RETRY { color: #b86e00; }
#tasks-wrap { max-height: 320px; overflow-y: auto; }
#diagram svg { max-width: 100%; height: auto; display: block; }
#diagram h3 { font-size: 13px; margin: 0 0 6px; font-weight: normal; }
ol#feed { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow-y: auto;
  font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
#feed li { white-space: pre-wrap; border-bottom: 1px solid #f2f2f2; }
#feed time { color: #888; } #feed .main b { color: #00855F; } #feed .child b { color: #b86e00; }
#feed .happening.note { color: #0a5c8a; } #feed .l-error, #feed .l-warning { color: #a00; }
.empty { color: #888; }
"""


@dataclass(frozen=True)
class PageLinks:
    """Where the page sits among its sources: the one shown, the others, Flower."""

    source: str
    title: str
    sources: Sequence[tuple[str, str]]  # (key, title) of every source open
    scenarios: Sequence[tuple[int, str]]  # (pid, title) of the scenarios running
    flower: str | None


def _header(links: PageLinks) -> str:
    flower = f'<a href="{esc(links.flower)}" target="_blank">Flower ↗</a>' if links.flower else ""
    return (
        f"<header><h1>celery-xray · live</h1><span>{esc(links.title)}</span>"
        f'<span id="conn">connecting …</span><span id="status"></span>{flower}</header>'
    )


def _traces(links: PageLinks) -> str:
    """The other sources open, the scenarios running, and a trace file to open."""
    items = [
        f'<li><a href="/?source={esc(key)}">{esc(title)}</a></li>'
        for key, title in links.sources
        if key != links.source
    ]
    items += [
        f'<li><a href="/follow?pid={pid}">follow {esc(title)}</a> (running)</li>'
        for pid, title in links.scenarios
    ]
    return (
        f'<section><h2>Traces and scenarios</h2><ul class="traces">{"".join(items)}</ul>'
        '<form action="/open" method="post" enctype="multipart/form-data">'
        "open a <code>--json-trace</code> file: "
        '<input type="file" name="trace" accept=".jsonl,.json" onchange="this.form.submit()">'
        '</form><form action="/open" method="get"><input name="path" '
        'placeholder="or its path on this machine" size="30"></form></section>'
    )


def page(links: PageLinks, panels: dict[str, str]) -> str:
    """The whole page, with the panels as they are now (the events keep them current)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>celery-xray live · {esc(links.title)}</title><style>{STYLE}</style></head>"
        f'<body data-source="{esc(links.source)}">{_header(links)}<main><div>'
        f'<section><h2>Processes</h2><div id="procs">{panels.get("procs", "")}</div></section>'
        f'<section><h2>Redis</h2><div id="redis">{panels.get("redis", "")}</div></section>'
        f"{_traces(links)}</div><div>"
        '<section><h2>Recent tasks <small class="empty">(select one)</small></h2>'
        f'<div id="tasks-wrap"><div id="tasks">{panels.get("tasks", "")}</div></div></section>'
        '<section><h2>Sequence</h2><div id="diagram"><p class="empty">select a task above'
        "</p></div></section>"
        '<section><h2>Log lines and what happens to the processes</h2><ol id="feed"></ol>'
        '</section></div></main><script src="/static/live.js"></script></body></html>\n'
    )
