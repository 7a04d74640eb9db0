"""docs/benchmark.md's latest figures, written by a full `coupons bench` run: its report
(the JSON document `bench/results/bench-<time>.json` holds) as Markdown, with the machine
it ran on, in the block of its broker. The rest of the file is written by hand."""

from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmark.md"
BROKER_NAMES = {"tansu": "Tansu", "kafka": "Apache Kafka"}


def markers(broker: str) -> tuple[str, str]:
    return (f"<!-- coupons bench --broker {broker}: start -->",
            f"<!-- coupons bench --broker {broker}: end -->")  # fmt: skip


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _claims(document: dict[str, Any]) -> list[str]:
    rows = []
    for f in (f for f in document["runs"] if "system" in f):
        checks = f["checks"]
        verdict = "" if not checks else f"{checks['grants']:,} grants, "
        verdict += "" if not checks else ("ok" if checks["ok"] else "FAILED")
        rows.append([f["scenario"], f["system"], f"{f['throughput_per_s']:,.0f}",
                     str(f["p50_ms"]), str(f["p99_ms"]), verdict])  # fmt: skip
    replay = document.get("replay")
    if replay:
        verdict = "all decided" if replay["checks"]["ok"] else "FAILED"
        rows.append([f"replay ({replay['commands']:,} commands)", "ours",
                     f"{replay['decisions_per_s']:,.0f} decisions", "", "", verdict])  # fmt: skip
    return _table(["scenario", "system", "per s", "p50 ms", "p99 ms", "checks"], rows)


def _hops(document: dict[str, Any]) -> list[str]:
    runs = [f for f in document["runs"] if f.get("hops") and f["scenario"].startswith("sustained")]
    if not runs:
        return []
    names = list(dict.fromkeys(hop for f in runs for hop, _ in f["hops"]["way"]))
    rows = [[f"`{hop}`", *(f"{dict(f['hops']['way']).get(hop, 0):.1f}" for f in runs)]
            for hop in names]  # fmt: skip
    rows.append(["sum of the way", *(f"{f['hops']['way_ms']:.1f}" for f in runs)])
    rows.append(["measured p50", *(str(f["p50_ms"]) for f in runs)])
    head = ["hop", *(f["scenario"] for f in runs)]
    return ["", "Where one durable claim's time goes (ours, mean ms of each hop):", "",
            *_table(head, rows)]  # fmt: skip


def _noon(document: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for noon in (f for f in document["runs"] if f["scenario"] == "noon"):
        rows = []
        for f in [noon["noon"], *noon["steps"]]:
            for system, g in (("ours", f), ("ceiling", f.get("ceiling"))):
                if g is None:
                    continue
                ours = system == "ours"
                rows.append([
                    f["scenario"] if ours else "", system, f"{g['rate_per_s']:,}",
                    f"{g['count']:,}" if ours else "", f"{g['answered']:,}",
                    f"{g['answered_within_1s']:.1%}", f"{g['answered_within_2s']:.1%}",
                    str(g["p50_ms"]), str(g["p99_ms"]),
                    str(g["winners_p99_ms"]) if ours else "",
                    f"{g['last_grant_answered_s']} s" if ours else "",
                    "yes" if g["sustained"] else "no",
                ])  # fmt: skip
        head = ["step", "system", "arrivals/s", "K", "answered", "≤ 1 s", "≤ 2 s", "p50 ms",
                "p99 ms", "winners p99 ms", "last grant", "sustained"]  # fmt: skip
        highest = noon["highest_sustained_rate_per_s"]
        lines += ["", "Noon, open loop (every claim keyed; under each step, the ceiling given "
                  "the same arrivals):", "", *_table(head, rows), "",
                  f"Highest sustained arrival rate: {highest}/s."]  # fmt: skip
    return lines


def _replay(document: dict[str, Any]) -> list[str]:
    replay = document.get("replay") or {}
    if not replay.get("log_alone"):
        return []
    alone, stored = replay["log_alone"], replay["decisions_alone"]
    spent = ", ".join(f"{k} {v:,.0f}" for k, v in replay.get("cpu_us_per_decision", {}).items())
    return ["", f"The replay's floor (`bench/floor.py`): moving a record through the log with "
            f"nothing decided cost the reader {alone['reader_cpu_us_per_record']} µs of CPU and "
            f"the broker {alone['broker_cpu_us_per_record']}; a replayed decision reads "
            f"{replay['records_read_per_decision']:.2f} records and writes "
            f"{replay['records_written_per_decision']:.2f}; storing its row alone cost "
            f"PostgreSQL {stored['postgres_cpu_us_per_row']} µs. The replay itself spent, per "
            f"decision, µs of CPU: {spent}."]  # fmt: skip


def section(document: dict[str, Any]) -> str:
    """One run's figures, saying when, how and on what machine they were measured."""
    settings, machine = document["settings"], document["machine"]
    broker = settings.get("broker", "tansu")
    option = "" if broker == "tansu" else f" BENCH_ARGS='--broker {broker}'"
    lines = [
        f"### {BROKER_NAMES.get(broker, broker)}: `make bench{option}`, {document['when']}",
        "",
        f"On {machine['cores']} cores ({machine['cpu'] or 'CPU unknown'}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, {machine['system']}; "
        f"{settings['workers']} process per HTTP front, {settings['generators']} load "
        f"generators, daily rule {'on' if settings['daily_rule'] else 'off'}. Everything "
        "shares the machine: read ratios within a run, not across runs.",
        "",
        *_claims(document),
        *_hops(document),
        *_noon(document),
        *_replay(document),
    ]
    return "\n".join(lines)


def update(text: str, document: dict[str, Any]) -> str:
    """`text` with its broker's block replaced by this run's figures."""
    start, end = markers(document["settings"].get("broker", "tansu"))
    before, found, rest = text.partition(start)
    _, found_end, after = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f"no block {start} … {end} to write into")
    return f"{before}{start}\n{section(document)}\n{end}{after}"


def write(document: dict[str, Any], path: Path = DOC) -> Path:
    path.write_text(update(path.read_text(), document))
    return path


if __name__ == "__main__":  # a report already written: python -m bench.markdown bench-<time>.json
    import json
    import sys

    print(write(json.loads(Path(sys.argv[1]).read_text())))
