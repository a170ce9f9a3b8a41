"""The rows, the ratios (to the best peer, to the floor), the tables and issue 15's targets."""

from __future__ import annotations

from typing import Any

from bench.peers import floor

CONVEYORS = ("conveyor-sqlite", "conveyor-pg")
STORE = {"conveyor-sqlite": "sqlite", "conveyor-pg": "pg"}
Medians = dict[str, dict[str, float]]

# (key, label, direction): "+" higher is better, "-" lower is better.
ROWS: list[tuple[str, str, str]] = [
    ("enqueue_single", "enqueue, one call per task (tasks/s)", "+"),
    ("enqueue_single_8c", "enqueue, one call per task, 8 concurrent clients (tasks/s)", "+"),
    ("enqueue_direct", "enqueue, direct producer (store, no HTTP), 1 caller (tasks/s)", "+"),
    ("enqueue_bulk", "enqueue, bulk API (tasks/s)", "+"),
    ("e2e_launch", "end to end from worker launch (tasks/s)", "+"),
    ("e2e_steady", "end to end, first to last completion (tasks/s)", "+"),
    ("pickup_p50", "pickup latency p50 (ms)", "-"),
    ("pickup_p95", "pickup latency p95 (ms)", "-"),
    ("pickup_p99", "pickup latency p99 (ms)", "-"),
    ("status_rate", "status look-ups of completed tasks (/s)", "+"),
    ("status_direct", "status look-ups, direct (store, no HTTP) (/s)", "+"),
    ("cancel_p50", "cancel latency p50 (ms)", "-"),
    ("cancel_p99", "cancel latency p99 (ms)", "-"),
]
#: Rows only conveyor runs, compared with the peers' figure of another row (issue 7's target:
#: single enqueues from 8 concurrent clients against the best peer's single enqueue; issue
#: 15's: the direct producer against the best peer's single enqueue).
COMPARE = {"enqueue_single_8c": "enqueue_single", "enqueue_direct": "enqueue_single",
           "status_direct": "status_rate"}
GROWTH_LEVELS = (1_000, 100_000, 1_000_000)
for level in GROWTH_LEVELS:
    ROWS.append((f"growth_enqueue_{level}", f"enqueue with {level:,} stored (tasks/s)", "+"))
    ROWS.append((f"growth_read_{level}", f"status read p50 with {level:,} stored (ms)", "-"))
DIRECTION = {key: direction for key, _, direction in ROWS}
#: Rows shown (as "—") even when no system has a figure: the API may not exist yet.
ALWAYS = ("enqueue_direct", "status_direct")


def floor_key(key: str, system: str) -> str | None:
    """The floor row a conveyor row is divided by (None: the row has no floor)."""
    store = STORE[system]
    return {
        "enqueue_single": "http_post_1c",
        "enqueue_single_8c": "http_post_8c",
        "status_rate": "http_get_1c",
        "enqueue_direct": f"{store}_insert",
        "status_direct": f"{store}_read",
    }.get(key)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def best_peer(medians: Medians, systems: list[str], key: str) -> float | None:
    against = COMPARE.get(key, key)
    got = [medians[p][against] for p in systems
           if p not in CONVEYORS and p != floor.NAME and against in medians.get(p, {})]
    if not got:
        return None
    return max(got) if DIRECTION[key] == "+" else min(got)


def ratios(medians: Medians, systems: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per conveyor system and row: its figure, the best peer's and the floor's, and the two
    ratios (conveyor / best peer, conveyor / floor); None where there is nothing to divide."""
    floors = medians.get(floor.NAME, {})
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for system in (s for s in systems if s in CONVEYORS):
        rows: dict[str, dict[str, Any]] = {}
        for key, _, _ in ROWS:
            mine = medians.get(system, {}).get(key)
            best = best_peer(medians, systems, key)
            fkey = floor_key(key, system)
            base = floors.get(fkey) if fkey else None
            rows[key] = {
                "value": mine, "best_peer": best,
                "to_best_peer": mine / best if mine is not None and best else None,
                "floor_row": fkey, "floor": base,
                "to_floor": mine / base if mine is not None and base else None,
            }
        found[system] = rows
    return found


def table(medians: Medians, systems: list[str]) -> str:
    shown = [s for s in systems if s != floor.NAME]
    ours = [s for s in shown if s in CONVEYORS]
    found = ratios(medians, systems)
    head = ["workload", "better", *shown, *(f"{s} / best peer" for s in ours),
            *(f"{s} / floor" for s in ours)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, direction in ROWS:
        cells = [medians.get(s, {}).get(key) for s in shown]
        if all(c is None for c in cells) and not (ours and key in ALWAYS):
            continue
        to_peer = [found[s][key]["to_best_peer"] for s in ours]
        to_floor = [found[s][key]["to_floor"] for s in ours]
        ratio_cells = [f"{r:.2f}" if r is not None else "—" for r in (*to_peer, *to_floor)]
        arrow = "higher" if direction == "+" else "lower"
        lines.append("| " + " | ".join([label, arrow, *map(fmt, cells), *ratio_cells]) + " |")
    return "\n".join(lines)


def floor_table(medians: Medians) -> str:
    floors = medians.get(floor.NAME, {})
    lines = ["| floor (this machine, this run) | figure |", "|---|---:|"]
    lines += [f"| {label} | {fmt(floors.get(key))} |" for key, label in floor.ROWS]
    return "\n".join(lines)


# -- issue 15's targets -------------------------------------------------------------------
# (what, system, row, kind, threshold): kind "floor" = figure / floor ≥ threshold, "peer" =
# figure / best peer ≥ threshold, "max" = figure (ms) ≤ threshold.
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("HTTP single enqueue, 1 client, SQLite", "conveyor-sqlite", "enqueue_single", "floor", 0.70),
    ("HTTP single enqueue, 1 client, PostgreSQL", "conveyor-pg", "enqueue_single", "floor", 0.70),
    ("HTTP status read, 1 client, SQLite", "conveyor-sqlite", "status_rate", "floor", 0.75),
    ("HTTP status read, 1 client, PostgreSQL", "conveyor-pg", "status_rate", "floor", 0.60),
    ("HTTP single enqueue, 8 clients, SQLite", "conveyor-sqlite", "enqueue_single_8c", "floor",
     0.60),
    ("direct producer, 1 caller, SQLite", "conveyor-sqlite", "enqueue_direct", "peer", 1.5),
    ("direct producer, 1 caller, PostgreSQL", "conveyor-pg", "enqueue_direct", "peer", 1.0),
    ("pickup p50, SQLite", "conveyor-sqlite", "pickup_p50", "max", 0.5),
    ("pickup p99, SQLite", "conveyor-sqlite", "pickup_p99", "max", 2.0),
    ("pickup p50, PostgreSQL", "conveyor-pg", "pickup_p50", "max", 1.0),
    ("pickup p99, PostgreSQL", "conveyor-pg", "pickup_p99", "max", 4.0),
    ("end to end, first to last, SQLite", "conveyor-sqlite", "e2e_steady", "peer", 1.5),
    ("end to end, first to last, PostgreSQL", "conveyor-pg", "e2e_steady", "peer", 1.0),
]


def targets(medians: Medians, systems: list[str],
            row_errors: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Each target of issue 15 with this run's figure: met, not met, or not measured."""
    found = ratios(medians, systems)
    results = []
    for what, system, key, kind, threshold in TARGETS:
        row = found.get(system, {}).get(key)
        value = row["value"] if row else None
        entry: dict[str, Any] = {"target": what, "system": system, "row": key, "kind": kind,
                                 "threshold": threshold, "value": value}
        if row is None or value is None:
            error = row_errors.get(system, {}).get(key)
            why = (error.strip().splitlines()[-1] if error
                   else "the row failed" if system in systems else f"{system} not run")
            entry.update(met=None, text=f"not measured ({why})")
        elif kind == "max":
            entry.update(met=value <= threshold,
                         text=f"{fmt(value)} ms; target ≤ {threshold:g} ms")
        else:
            ratio, base = ((row["to_floor"], row["floor"]) if kind == "floor"
                           else (row["to_best_peer"], row["best_peer"]))
            if ratio is None:
                entry.update(met=None, text=f"{fmt(value)}/s; no {kind} figure in this run")
            else:
                entry.update(ratio=ratio, met=ratio >= threshold,
                             text=f"{fmt(value)}/s = {ratio:.2f} × {kind} ({fmt(base)}/s); "
                                  f"target ≥ {threshold:g} ×")
                if kind == "peer" and row["to_floor"] is not None:
                    entry["text"] += (f"; {row['to_floor']:.2f} × its floor "
                                      f"({fmt(row['floor'])}/s)")
        results.append(entry)
    return results


#: "Nothing else regresses": rows compared with an earlier run's JSON (``--baseline``).
STEADY = ("enqueue_bulk", "cancel_p50", "cancel_p99",
          *(f"growth_{kind}_{level}" for level in GROWTH_LEVELS for kind in ("enqueue", "read")))


def regressions(medians: Medians, baseline: Medians | None) -> list[dict[str, Any]]:
    """Bulk enqueue, cancel and growth of each conveyor system within 10 % of the baseline."""
    if baseline is None:
        return []
    results = []
    for system in CONVEYORS:
        for key in STEADY:
            now, then = medians.get(system, {}).get(key), baseline.get(system, {}).get(key)
            if now is None or then is None or not then:
                continue
            change = now / then
            worse = change < 0.9 if DIRECTION[key] == "+" else change > 1.1
            results.append({"system": system, "row": key, "value": now, "baseline": then,
                            "ratio": change, "met": not worse})
    return results


def targets_block(results: list[dict[str, Any]], steady: list[dict[str, Any]],
                  has_baseline: bool) -> str:
    word = {True: "met    ", False: "NOT met", None: "—      "}
    lines = ["targets (issue 15):"]
    lines += [f"  {word[r['met']]}  {r['target']}: {r['text']}" for r in results]
    if not has_baseline:
        lines.append("  —        nothing else regresses (bulk enqueue, cancel, growth within "
                     "10 %): not evaluated; pass --baseline bench/results/peers-<earlier>.json")
    elif not steady:
        lines.append("  —        nothing else regresses: no row in both runs")
    else:
        bad = [r for r in steady if not r["met"]]
        lines.append(f"  {word[not bad]}  nothing else regresses (bulk enqueue, cancel, growth "
                     f"within 10 % of the baseline): {len(steady) - len(bad)}/{len(steady)} "
                     "rows within")
        lines += [f"             {r['system']} {r['row']}: {fmt(r['value'])} against "
                  f"{fmt(r['baseline'])} ({r['ratio']:.2f} ×)" for r in bad]
    return "\n".join(lines)
