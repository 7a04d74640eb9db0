"""CPU seconds a process and its children have spent (psutil, in the bench extra)."""

import contextlib


def seconds(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds each named process and its children have spent."""
    return {name: of(pid) for name, pid in processes.items()}


def of(pid: int) -> float:
    """CPU seconds (user and system) a process and its children have spent; 0 if gone."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        for each in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = each.cpu_times()
                total += times.user + times.system
    return total
