"""What a worker measures and caps of its own memory: the one place ``/proc/self/status`` is read.

Linux's ``/proc`` where it exists; elsewhere the ``resource`` module's figures,
and no address-space cap.
"""

from __future__ import annotations

import os
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


#: What a worker running an ONNX graph may reserve beyond the bound its graph passed with (``OnnxBounds.peak_bound``)
#: and its address space before loading: runtime code, thread stacks, malloc arenas. Measured on WRN-20-10
#: (2 CPUs): ORT reserves 1.0-1.1 GiB of address space beyond its resident peak, OpenVINO 0.45-0.5 GiB.
ADDRESS_SLACK_BYTES = 2 << 30
#: ... plus this per intra-op thread (a stack and a malloc arena each).
ADDRESS_PER_THREAD_BYTES = 256 << 20


def address_space() -> int:
    """This process's virtual size now (``VmSize``), or 0 where /proc can't say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_address_space(bounds: dict[str, int] | None, batch: int, threads: int, device: str, base: int) -> None:
    """Cap this worker's address space (``RLIMIT_AS``, soft) at what its graph's bound allows for ``batch`` images.

    The static bounds size every tensor a graph declares; this is the backstop for anything they miss: an
    allocation past it fails inside the runtime (an error the worker reports, or its death, which bench reports
    in one line) instead of taking the machine's memory. Not on CUDA (its driver reserves far more address
    space than it uses), not where /proc can't say, and only for ONNX graphs (``bounds`` given).
    """
    if bounds is None or device != "cpu" or not base:
        return
    peak = bounds["const_total_bytes"] + bounds["workspace_bytes"] + batch * bounds["image_total_bytes"]
    cap = base + peak + ADDRESS_SLACK_BYTES + ADDRESS_PER_THREAD_BYTES * (threads or os.cpu_count() or 1)
    try:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (max(cap, address_space()), hard))
    except (OSError, ValueError):
        pass  # a platform without RLIMIT_AS: the static bounds still hold
