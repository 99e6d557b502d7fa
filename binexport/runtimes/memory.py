"""What a worker measures of its own memory: the one place ``/proc/self/status`` is read.

Linux's ``/proc`` where it exists; elsewhere the ``resource`` module's figures.
"""

from __future__ import annotations

import resource


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which a child
    inherits from the parent that forked it), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
