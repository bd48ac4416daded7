"""Lines commands print before they start: what they use, and what they do not."""

from __future__ import annotations

import os
from collections.abc import Iterator

# A Redis the user may name, that a command starting its own redis-servers does not use.
IGNORED = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def private_redis(command: str) -> Iterator[str]:
    """One line per variable set in the environment that `command` leaves alone."""
    for variable in IGNORED:
        if os.environ.get(variable):
            yield (
                f"{command}: {variable}={os.environ[variable]} is not used: it runs on "
                "private redis-servers it starts and stops (nobody else's data is touched, "
                "nobody else's load is in its figures)"
            )
