"""Named fault points, so tests can kill a run at an exact step and check what it leaves behind.

`fault_point("after-stage")` does nothing unless the environment variable ORTHOVEC_FAULT names
that point, in which case the process kills itself with SIGKILL there (no cleanup, no atexit: what
a power cut or the OOM killer does). `NAME:N` kills on the N-th time the point is reached. It is
the one place library code reads the environment, because a fault must reach a subprocess
started through the real command line.

Points: after-chunk (an embedding chunk is in the cache), store-shard-created (an Edge shard
exists, its indexes not yet), after-stage (a species' new tables are staged), after-store-load
(the store holds the new genes, the tables are not yet in place).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "ORTHOVEC_FAULT"
_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    wanted, _, nth = os.environ.get(FAULT_ENV, "").partition(":")
    if wanted != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
