"""The report: a table on the terminal, every figure in JSON, latency over time in a PNG."""

import json
import platform
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.load import cores
from bench.scenarios import Run


def machine() -> dict[str, Any]:
    memory_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        memory_kb = int(first[1])
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else ""
    return {
        "cores": cores(),
        "cpu": model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def ratios(figures: list[dict[str, Any]]) -> dict[str, float]:
    """ours / baseline and ours / ceiling, per scenario, on throughput."""
    by = {(f["scenario"], f["system"]): f["throughput_per_s"] for f in figures if "system" in f}
    out: dict[str, float] = {}
    for (scenario, system), ours in by.items():
        if system != "ours":
            continue
        for other in ("baseline", "ceiling"):
            if (scenario, other) in by and by[(scenario, other)]:
                out[f"{scenario}: ours/{other}"] = round(ours / by[(scenario, other)], 2)
    return out


def floor_line(replay: dict[str, Any]) -> str:
    """What moving a decision's records through the log and storing its row cost with
    nothing else done, and the rate that caps on this machine's cores."""
    alone, stored = replay["log_alone"], replay["decisions_alone"]
    pairs = (replay["records_read_per_decision"] + replay["records_written_per_decision"]) / 2
    per_record = alone["reader_cpu_us_per_record"] + alone["broker_cpu_us_per_record"]
    per_decision = pairs * per_record + stored["postgres_cpu_us_per_row"]
    cap = cores() * 1e6 / per_decision if per_decision else 0
    return (
        f"replay floor: the log alone {per_record:,.1f} µs of CPU per record read and "
        f"written (reader {alone['reader_cpu_us_per_record']}, broker "
        f"{alone['broker_cpu_us_per_record']}), {pairs:.2f} records a decision; PostgreSQL "
        f"storing the decision's row alone {stored['postgres_cpu_us_per_row']} µs; together "
        f"{per_decision:,.0f} µs, at most {cap:,.0f} decisions/s on {cores()} cores with "
        "nothing decided and nothing else stored"
    )


def table(figures: list[dict[str, Any]], replay: dict[str, Any] | None) -> Table:
    grid = Table(title="coupons bench")
    for column in ("scenario", "system", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                   "outcomes", "checks", "gen CPU"):  # fmt: skip
        grid.add_column(column, justify="right" if column.endswith(("s", "ms", "CPU")) else "left")
    for f in figures:
        if "system" not in f:
            continue  # noon has a table of its own
        checks = f["checks"]
        verdict = "" if not checks else ("ok" if checks["ok"] else "FAILED")
        if checks:
            verdict += f" ({checks['grants']} grants)"
        grid.add_row(
            f["scenario"], f["system"], f"{f['throughput_per_s']:,.0f}", str(f["p50_ms"]),
            str(f["p95_ms"]), str(f["p99_ms"]), str(f["max_ms"]),
            " ".join(f"{k}:{v}" for k, v in f["outcomes"].items()), verdict,
            f"{f['generator_cpu_share']:.0%}",
        )  # fmt: skip
    if replay is not None:
        grid.add_row(
            "replay", "ours", f"{replay['decisions_per_s']:,.0f}", "", "", "", "",
            f"{replay['decided']} decided", "ok" if replay["checks"]["ok"] else "FAILED", "",
        )  # fmt: skip
    return grid


def hops_table(figures: list[dict[str, Any]]) -> Table:
    """One column a run of ours: each hop's mean, on the way of one durable claim."""
    runs = [f for f in figures if f.get("hops") and f["scenario"].startswith("sustained")]
    grid = Table(title="where a durable claim's time goes (ours; mean ms per hop)")
    grid.add_column("hop")
    for f in runs:
        grid.add_column(f["scenario"], justify="right")
    hop_names = list(dict.fromkeys(h for f in runs for h, _ in f["hops"]["way"]))
    for hop in hop_names:
        grid.add_row(hop, *(f"{dict(f['hops']['way']).get(hop, 0):.1f}" for f in runs))
    grid.add_row("sum of the way", *(f"{f['hops']['way_ms']:.1f}" for f in runs))
    grid.add_row("measured p50", *(str(f["p50_ms"]) for f in runs))
    return grid


def noon_table(noon: dict[str, Any]) -> Table:
    """Each step on ours, and under it the same arrivals on the ceiling."""
    grid = Table(title="noon, open loop (every claim keyed, daily rule as set; the ceiling: "
                 "the same arrivals answered with a constant)")  # fmt: skip
    columns = ("step", "system", "arrivals/s", "K", "answered", "≤ 1 s", "≤ 2 s", "p50 ms",
               "p99 ms", "winners p99", "last grant s", "checks", "sustained",
               "gen CPU")  # fmt: skip
    for column in columns:
        grid.add_column(column, justify="left" if column in ("step", "system") else "right")
    for f in [noon["noon"], *noon["steps"]]:
        for system, g in (("ours", f), ("ceiling", f.get("ceiling"))):
            if g is None:
                continue
            ours = system == "ours"
            grid.add_row(
                f["scenario"] if ours else "", system, f"{g['rate_per_s']:,.0f}",
                f"{g['count']:,}" if ours else "", f"{g['answered']:,}",
                f"{g['answered_within_1s']:.1%}", f"{g['answered_within_2s']:.1%}",
                str(g["p50_ms"]), str(g["p99_ms"]), str(g["winners_p99_ms"]) if ours else "",
                str(g["last_grant_answered_s"]) if ours else "",
                ("ok" if g["checks"]["ok"] else "FAILED") if ours else "",
                "yes" if g["sustained"] else "no", f"{g['generator_cpu_share']:.0%}",
            )  # fmt: skip
    return grid


def plot(runs: list[Run], path: Path, name: str) -> None:
    """Latency over time: each system's, or for one run its winners' and the others'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5))
    series = [(run.system, run.result.sent, run.result.latency, run.result.status) for run in runs]
    if len(runs) == 1:
        ((_, sent, latency, status),) = series
        series = []
        for label, won in (("winners (201)", True), ("the others", False)):
            mine = [i for i, s in enumerate(status) if (s == 201) == won]
            series.append((label, [sent[i] for i in mine], [latency[i] for i in mine], []))
    for label, sent, latency, _ in series:
        axes.scatter(sent, [x * 1000 for x in latency], s=1, alpha=0.4, label=label)
    axes.set_xlabel("seconds since the coupon went live (request due)")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.set_title(f"{name}: latency over time")
    axes.legend(markerscale=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(
    out: Path, stamp: str, settings: dict[str, Any], figures: list[dict[str, Any]],
    replay: dict[str, Any] | None, console: Console,
) -> Path:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    compared = ratios(figures)
    document = {
        "when": stamp,
        "machine": machine(),
        "settings": settings,
        "runs": figures,
        "replay": replay,
        "ratios": compared,
    }
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=2))
    console.print(table(figures, replay))
    if any(f.get("hops") for f in figures):
        console.print(hops_table(figures))
    for noon in (f for f in figures if f["scenario"] == "noon"):
        console.print(noon_table(noon))
        console.print(f"  highest sustained arrival rate: {noon['highest_sustained_rate_per_s']}/s")
    for name, value in compared.items():
        console.print(f"  {name} = {value}")
    if replay is not None and replay.get("cpu_us_per_decision"):
        spent = ", ".join(f"{k} {v:,.0f}" for k, v in replay["cpu_us_per_decision"].items())
        console.print(f"  replay: CPU µs per decision: {spent}")
    if replay is not None and replay.get("log_alone"):
        console.print(f"  {floor_line(replay)}")
    return path
