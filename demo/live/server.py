"""The live page's server: tornado, on 127.0.0.1, on a free port, in a thread of its own.

Why tornado: Flower's own dependency, so already installed, and made for long-lived
connections such as Server-Sent Events. Why SSE rather than WebSockets: the page only
listens; EventSource reconnects by itself and sends back the last `id` it got (here the
stream entry id, demo.live.hub), and it needs no script library.

Routes: `/` the page (`?source=` one of demo.live.sources), `/events` its event stream,
`/task?id=&width=` one task's detail and diagram, `/open` a trace file (`?path=`, or an
upload), `/follow?pid=` a running scenario (demo.live.registry), `/static/live.js`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.iostream
import tornado.netutil
import tornado.web

from demo.errors import KitError
from demo.live import registry
from demo.live.hub import TICK_S
from demo.live.sources import LIVE, Source, Sources
from demo.render.live_page import PageLinks, page

STATIC = Path(__file__).parent / "static"
REDIS_POLL_S = 1.0
KEEPALIVE_S = 15.0
QUEUED_MAX = 100  # messages waiting for one slow browser: past it, it is dropped (it reconnects)


class _Base(tornado.web.RequestHandler):
    @property
    def live(self) -> LiveServer:
        server: LiveServer = self.settings["live"]
        return server

    def source(self) -> Source:
        opened = self.live.sources.all()
        default = LIVE if self.live.sources.get(LIVE) or not opened else opened[0].key
        found = self.live.sources.get(self.get_argument("source", default))
        if found is None:
            raise tornado.web.HTTPError(404, reason="no such source: open it again")
        return found

    def opened(self, source: Source) -> None:
        self.redirect(f"/?source={source.key}")


class PageHandler(_Base):
    def get(self) -> None:
        source = self.source()
        links = PageLinks(
            source.key,
            source.title,
            [(s.key, s.title) for s in self.live.sources.all()],
            [(r.pid, r.title) for r in registry.running(self.live.state_dir)]
            if self.live.state_dir
            else [],
            self.live.sources.flower,
        )
        self.write(page(links, source.hub.snapshot(None).data["panels"]))


class EventsHandler(_Base):
    """Server-Sent Events: a snapshot first, then each tick of the source's hub."""

    _queue: asyncio.Queue[str | None] | None = None

    async def get(self) -> None:
        source = self.source()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self._queue = queue = self.live.listen(source.key)
        try:
            self.write(source.hub.snapshot(self.request.headers.get("Last-Event-ID")).sse())
            await self.flush()
            while (text := await queue.get()) is not None:
                self.write(text)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            self.live.unlisten(source.key, queue)

    def on_connection_close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)


class TaskHandler(_Base):
    def get(self) -> None:
        width = self.get_argument("width", "")
        size = float(width) if width.replace(".", "", 1).isdigit() else None
        self.write(self.source().hub.task(self.get_argument("id"), size))


class OpenHandler(_Base):
    def get(self) -> None:
        try:
            self.opened(self.live.sources.open_file(Path(self.get_argument("path"))))
        except KitError as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)[:200]) from None

    def post(self) -> None:
        uploads = self.request.files.get("trace") or []
        if not uploads:
            raise tornado.web.HTTPError(400, reason="no file: choose a --json-trace file")
        try:
            self.opened(self.live.sources.open_upload(uploads[0].filename, uploads[0].body))
        except KitError as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)[:200]) from None

    def check_xsrf_cookie(self) -> None:  # a form of this page, on 127.0.0.1
        return None


class FollowHandler(_Base):
    def get(self) -> None:
        pid = int(self.get_argument("pid"))
        found = registry.find(self.live.state_dir, pid) if self.live.state_dir else None
        if found is None:
            raise tornado.web.HTTPError(404, reason=f"no scenario running with pid {pid}")
        self.opened(self.live.sources.follow(found.broker_url, f"{found.title} (pid {pid})"))


class NoIcon(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_status(204)


def _no_log(handler: tornado.web.RequestHandler) -> None:
    return None


class LiveServer:
    def __init__(
        self,
        sources: Sources,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.sources, self.host, self.port, self.state_dir = sources, host, port, state_dir
        self._listeners: dict[str, set[asyncio.Queue[str | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._polling: set[str] = set()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> tornado.web.Application:
        routes: list[Any] = [
            (r"/", PageHandler),
            (r"/events", EventsHandler),
            (r"/task", TaskHandler),
            (r"/open", OpenHandler),
            (r"/follow", FollowHandler),
            (r"/favicon.ico", NoIcon),
            (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
        ]
        # No access log: the terminal is for what the app's processes do.
        return tornado.web.Application(routes, live=self, log_function=_no_log)

    def start(self) -> LiveServer:
        """Bind now (the port is known when this returns), serve from a daemon thread."""
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            server = tornado.httpserver.HTTPServer(self.app())
            server.add_sockets(sockets)
            callbacks = [
                tornado.ioloop.PeriodicCallback(self._tick, TICK_S * 1000),
                tornado.ioloop.PeriodicCallback(self._poll, REDIS_POLL_S * 1000),
                tornado.ioloop.PeriodicCallback(self._keepalive, KEEPALIVE_S * 1000),
            ]
            for callback in callbacks:
                callback.start()
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                for callback in callbacks:
                    callback.stop()
                server.stop()
                loop.close()

        self._thread = threading.Thread(target=serve, name="xray-page", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)
        return self

    def listen(self, key: str) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._listeners.setdefault(key, set()).add(queue)
        return queue

    def unlisten(self, key: str, queue: asyncio.Queue[str | None]) -> None:
        self._listeners.get(key, set()).discard(queue)

    def _send(self, key: str, text: str | None) -> None:
        for queue in list(self._listeners.get(key, ())):
            if queue.qsize() >= QUEUED_MAX:
                self.unlisten(key, queue)
                queue.put_nowait(None)  # too slow: closed; its EventSource reconnects
            else:
                queue.put_nowait(text)

    def _tick(self) -> None:
        for source in self.sources.all():
            if not self._listeners.get(source.key):
                source.hub.drain()
                continue
            message = source.hub.tick()
            if message is not None:
                self._send(source.key, message.sse())

    def _keepalive(self) -> None:
        for key in list(self._listeners):
            self._send(key, ": keepalive\n\n")

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        for source in self.sources.all():
            if source.key in self._polling or not self._listeners.get(source.key):
                continue
            self._polling.add(source.key)
            try:
                await loop.run_in_executor(None, source.hub.poll_redis)
            finally:
                self._polling.discard(source.key)

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        def shut() -> None:
            for key in list(self._listeners):
                self._send(key, None)
            loop.call_later(0.1, loop.stop)

        loop.call_soon_threadsafe(shut)
        self._thread.join(timeout=5)
        self.sources.close()
