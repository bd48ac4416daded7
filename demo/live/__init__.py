"""The X-ray, live: what happens, as it happens, in the terminal of `demo up` and on a page.

One engine, two screens. `follow.Follower` reads the trace stream (XREAD BLOCK) and hands
each batch to a `model.LiveState`, which folds the events into the picture both screens
draw (processes, tasks, what happened to the processes), the way Celery's
`celery/events/state.py` folds its event stream. `terminal.TerminalFeed` prints from it,
`server` serves the page (tornado, Server-Sent Events). Rendering lives in demo.render.
"""
