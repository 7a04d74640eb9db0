"""CPU seconds a process and its children have spent (psutil, in the bench extra)."""

import contextlib


def seconds(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user and system) each named process and its children have spent."""
    import psutil

    spent = {}
    for name, pid in processes.items():
        total = 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            for each in (process, *process.children(recursive=True)):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = each.cpu_times()
                    total += times.user + times.system
        spent[name] = total
    return spent
