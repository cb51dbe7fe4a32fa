"""Named fault points, so tests can kill a run at an exact step and check what it leaves behind.

`fault_point("after-stage")` does nothing unless the environment variable ORTHOVEC_FAULT names
that point, in which case the process kills itself with SIGKILL there (no cleanup, no atexit: what
a power cut or the OOM killer does). It is the one place library code reads the environment,
because a fault must reach a subprocess started through the real command line.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ORTHOVEC_FAULT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
