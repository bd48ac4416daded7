"""The text `demo up` prints: where everything is, and what to type next."""

from __future__ import annotations

from demo.stack.flower import USER
from demo.stack.redis_server import TUTORIAL_PORT
from demo.stack.stack import Stack


def banner(stack: Stack, live_url: str | None = None) -> str:
    worker = stack.workers[0]
    lines = [
        "celery-xray: the tutorial's stack is up (Ctrl-C stops all of it)",
        "",
        f"  Redis         {stack.broker_url}"
        + ("" if stack.redis else "  (yours: nothing flushed)"),
        f"  worker        MainProcess pid {worker.pid}, pool children {worker.children()}",
        f"                log: {worker.log}",
        f"  SMTP          {stack.smtp_host}:{stack.smtp_port}"
        + (f"  mails kept in {stack.smtp.folder}  (python -m demo mails)" if stack.smtp else ""),
    ]
    if stack.flower:
        lines.append(f"  Flower        {stack.flower.url}")
        if stack.flower.password:
            lines.append(
                f"                user {USER}, password {stack.flower.password} "
                "(new each run; also in the state file, readable by you only)"
            )
    if live_url:
        lines.append(f"  X-ray, live   {live_url}  (every process, every Redis command)")
    lines += ["", "In another terminal, the tutorial's client:"]
    tutorial_ports = stack.redis is None or stack.redis.port == TUTORIAL_PORT
    if not tutorial_ports or stack.smtp_port != 1025:
        lines.append(
            "  export "
            + " ".join(
                f"{key}={value}" for key, value in stack.env.items() if key != "PYTHONUNBUFFERED"
            )
        )
        if stack.redis and stack.redis.port != TUTORIAL_PORT:
            lines.append(
                f"  (port {TUTORIAL_PORT} was taken: the kit's Redis is on {stack.redis.port})"
            )
    lines += [
        '  python -c "from envoi_mails import envoi_mail; '
        "r = envoi_mail.apply_async(args=['destinataire@example.com']); print(r.get(timeout=30))\"",
        "  or: python -m demo send destinataire@example.com",
    ]
    return "\n".join(lines)
