"""The comparison against upstream dynamo-es 0.5.0 in docs/BENCHMARKS.md:
the side-by-side table, the goals of issue 15, the headline for the README
and the chart (docs/bench-upstream.svg), from the records benches/store.rs
writes (`dynamo-es/store.json`) and criterion's medians.

Used by scripts/bench_report.py; every figure comes from one run.
"""

import html

UPSTREAM = "upstream"

WORKLOADS = {
    "store_commit_1_event": "commit 1 event",
    "store_commit_10_events": "commit 10 events",
    "store_load_1000_events": "load 1,000 events",
    "store_load_snapshot_every_50": "load, snapshot every 50 (80 events)",
    "store_load_snapshot_always": "load, aggregate store (80 events)",
    "store_persist_snapshot_1_5mb": "persist 1.5 MB aggregate (+1 event)",
    "store_load_snapshot_1_5mb": "load 1.5 MB aggregate",
    "store_hot_command_1_aggregate": "hot command, 1 aggregate (per command)",
    "store_hot_command_100_aggregates": "hot command, 100 aggregates (per command)",
}

# Workloads timed as a loop of commands: their times are shown per command.
HOT = ("store_hot_command_1_aggregate", "store_hot_command_100_aggregates")

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"]


def units(x):
    """Capacity units as the emulator reported them: 2, 3.5."""
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def ratio(a, b, digits=2):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt_ratio(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}×"


def ours(d):
    """Our implementations (codecs) in the store records, in their order."""
    names = []
    for (workload, name) in d.store:
        if workload in WORKLOADS and name != UPSTREAM and name not in names:
            names.append(name)
    return names


def row(d, workload, name):
    return d.store.get((workload, name))


def against(d, workload, name):
    """The rows of `name` and of upstream for `workload` (either may be None)."""
    return row(d, workload, name), row(d, workload, UPSTREAM)


def per_run(d, workload, name):
    """What one timed run divides into: the commands of a hot loop, else 1."""
    r = row(d, workload, name) or {}
    return (r.get("detail") or {}).get("commands") or 1


def median(d, workload, name):
    """Criterion's median (per command for a hot loop)."""
    t = d.t(workload, name)
    return None if t is None else t / per_run(d, workload, name)


def interleaved(d, workload, name):
    """The median of the interleaved rounds, which ratios are taken from;
    criterion's median where a run has none (per command for a hot loop)."""
    r = row(d, workload, name) or {}
    t = r.get("interleaved_median_ns")
    return median(d, workload, name) if not t else t / per_run(d, workload, name)


def time_ratio(d, workload, name):
    return ratio(interleaved(d, workload, name), interleaved(d, workload, UPSTREAM))


def operations(record):
    ops = record.get("operations") or []
    return ", ".join(ops) if ops else ""


def comparison_table(d, fmt_ns, table):
    """Every workload × implementation: median, units, round trips, and the
    ratios against upstream."""
    rows = []
    for workload, label in WORKLOADS.items():
        base = row(d, workload, UPSTREAM)
        for name in [UPSTREAM] + ours(d):
            r = row(d, workload, name)
            if r is None:
                continue
            if r.get("refused"):
                rows.append([label, f"`{name}`", "refused", "", "", "", "", "", "", "",
                             f"`{r['refused']}`"])
                continue
            up = base is not None and not base.get("refused") and name != UPSTREAM
            rows.append([
                label,
                f"`{name}`",
                fmt_ns(median(d, workload, name)),
                fmt_ns(interleaved(d, workload, name)),
                fmt_ratio(time_ratio(d, workload, name)) if up else "",
                units(r["wcu"]),
                fmt_ratio(ratio(r["wcu"], base["wcu"])) if up and r["wcu"] else "",
                units(r["rcu"]),
                fmt_ratio(ratio(r["rcu"], base["rcu"])) if up and r["rcu"] else "",
                r["round_trips"],
                operations(r),
            ])
    return table(
        ["workload", "implementation", "median (criterion)", "median (interleaved)", "time vs upstream",
         "WCU", "vs upstream", "RCU", "vs upstream", "round trips", "requests"],
        rows, ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
    )


def published_check(d):
    """Where the emulator's units differ from DynamoDB's published rules
    applied to the items stored: [(workload, name, metered, published)]."""
    out = []
    for (workload, name), r in d.store.items():
        for kind in ("wcu", "rcu"):
            rule = r.get(f"published_{kind}")
            if rule is not None and r.get(kind) is not None and float(rule) != float(r[kind]):
                out.append((workload, name, kind.upper(), r[kind], rule))
    return out


SNAPSHOT_LOAD_WHY = (
    "on the emulator a round trip is a request over localhost, cheap beside the work on either side of "
    "it: both loads read about the same events (the tail query starts at the snapshot this process saw: "
    "31 events from the snapshot's own on, against upstream's 30 after it) and the client parses them, "
    "so the one round trip saved is a small share of the time. Against real DynamoDB, where each round "
    "trip costs milliseconds, the saved round trip is the larger term"
)

SNAPSHOT_RCU_WHY = (
    "by default this crate reads strongly consistent (a load never misses a committed event): a read of "
    "the same items costs twice upstream's eventually consistent query of the events after its snapshot; "
    "`json+eventual` (`ReadConsistency::Eventual`) reads them as upstream does"
)

LOAD_WHY = (
    "both sides send the same one query and the emulator does the same work for it; the difference is "
    "client work per event (see Profiling below)"
)


def goals(d):
    """(goal, implementation, measured, goal, verdict, why) rows for issue 15's goals."""
    rows = []

    def verdict(ok):
        return "not measured" if ok is None else ("met" if ok else "**missed**")

    def why(ok, text):
        return text if ok is False else ""

    for name in ours(d):
        c1, u1 = against(d, "store_commit_1_event", name)
        if c1 and u1:
            x = ratio(c1["wcu"], u1["wcu"])
            rows.append(("one-event commit: WCU / upstream's", name,
                         f"{units(c1['wcu'])} / {units(u1['wcu'])} = {fmt_ratio(x)}", "0.5×",
                         verdict(None if x is None else x <= 0.5), ""))
            x = time_ratio(d, "store_commit_1_event", name)
            rows.append(("one-event commit: time / upstream's", name, fmt_ratio(x), "≤ 1.0×",
                         verdict(None if x is None else x <= 1.0), ""))
        s, us = against(d, "store_load_snapshot_every_50", name)
        if s and us:
            rows.append(("snapshotted load (every 50): sequential round trips", name,
                         f"{s['round_trips']} (upstream {us['round_trips']})", "1 instead of 2",
                         verdict(s["round_trips"] == 1 and us["round_trips"] == 2), ""))
            x = time_ratio(d, "store_load_snapshot_every_50", name)
            ok = None if x is None else x <= 0.8
            rows.append(("snapshotted load (every 50): time / upstream's", name, fmt_ratio(x), "≤ 0.8×",
                         verdict(ok), why(ok, SNAPSHOT_LOAD_WHY)))
        a, ua = against(d, "store_load_snapshot_always", name)
        if a and ua:
            ok = a["operations"] == ["GetItem"] and a["rcu"] <= ua["rcu"]
            rows.append(("aggregate-store load: requests, RCU against upstream's", name,
                         f"{operations(a)}, {units(a['rcu'])} RCU (upstream {units(ua['rcu'])})",
                         "1 request, ≤ upstream's RCU", verdict(ok), ""))
            x = time_ratio(d, "store_load_snapshot_always", name)
            rows.append(("aggregate-store load: time / upstream's", name, fmt_ratio(x), "≤ 1.0×",
                         verdict(None if x is None else x <= 1.0), ""))
        if s and us:
            ok = s["rcu"] <= us["rcu"]
            rows.append(("snapshotted load (every 50): RCU against upstream's", name,
                         f"{units(s['rcu'])} (upstream {units(us['rcu'])})", "≤ upstream's",
                         verdict(ok), why(ok, SNAPSHOT_RCU_WHY)))
        for workload in HOT:
            h = row(d, workload, name)
            if h and name.endswith("+cache"):
                ok = h["round_trips"] == 1 and h["rcu"] == 0
                rows.append((f"{WORKLOADS[workload]}: round trips, RCU with the cache", name,
                             f"{h['round_trips']}, {units(h['rcu'])}", "1, 0", verdict(ok), ""))
        x = time_ratio(d, "store_load_1000_events", name)
        if row(d, "store_load_1000_events", name):
            ok = None if x is None else x <= 1.0
            rows.append(("load of 1,000 events: time / upstream's", name, fmt_ratio(x), "≤ 1.0×",
                         verdict(ok), why(ok, LOAD_WHY)))
    return rows


def headline(d):
    """One or two lines of measured ratios against upstream, for the README."""
    name = "json"
    if row(d, "store_commit_1_event", name) is None:
        return ""
    c = ratio(row(d, "store_commit_1_event", name)["wcu"], row(d, "store_commit_1_event", UPSTREAM)["wcu"])
    tc = time_ratio(d, "store_commit_1_event", name)
    s, us = against(d, "store_load_snapshot_every_50", name)
    ts = time_ratio(d, "store_load_snapshot_every_50", name)
    tl = time_ratio(d, "store_load_1000_events", name)
    big = row(d, "store_persist_snapshot_1_5mb", UPSTREAM)
    line = (f"Against upstream `dynamo-es` 0.5.0, same emulator, same run (`json` codec): a one-event "
            f"commit costs {fmt_ratio(c, 1)} the write units in {fmt_ratio(tc)} the time; a snapshotted "
            f"load takes {s['round_trips']} round trip instead of {us['round_trips']} in {fmt_ratio(ts)} "
            f"the time; loading 1,000 events takes {fmt_ratio(tl)} the time.")
    if big and big.get("refused"):
        line += " A 1.5 MB aggregate, which upstream refuses to store, loads and persists here."
    return line


def esc(text):
    return html.escape(str(text), quote=True)


def svg_open(width, height, title, subtitle):
    """The opening parts of a chart: the root element, a white background,
    the title and the subtitle."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{esc(title)}</text>',
        f'<text x="10" y="40" fill="#555">{esc(subtitle)}</text>',
    ]


def chart(d, path):
    """Time and capacity units of each of our codecs as a multiple of
    upstream's, per workload: one row per workload, one bar per codec, a
    line at 1× (upstream)."""
    names = ours(d)
    cats = [w for w in WORKLOADS if row(d, w, UPSTREAM) and not row(d, w, UPSTREAM).get("refused")]
    if not names or not cats:
        return None
    panels = [
        ("median time ÷ upstream's (interleaved)", lambda w, n: time_ratio(d, w, n)),
        ("capacity units ÷ upstream's",
         lambda w, n: ratio((row(d, w, n) or {}).get("wcu", 0) + (row(d, w, n) or {}).get("rcu", 0),
                            row(d, w, UPSTREAM)["wcu"] + row(d, w, UPSTREAM)["rcu"])),
        ("round trips ÷ upstream's",
         lambda w, n: ratio((row(d, w, n) or {}).get("round_trips"), row(d, w, UPSTREAM)["round_trips"])),
    ]
    label_w, panel_w, gap, top, bar_h, pad = 230, 230, 50, 84, 11, 10
    row_h = bar_h * len(names) + pad
    height = top + row_h * len(cats) + 60
    width = label_w + len(panels) * (panel_w + gap) + 10
    parts = svg_open(width, height,
                     "dynamo-es against upstream dynamo-es 0.5.0, one run on the embedded emulator",
                     "Each bar is one of our codecs as a multiple of upstream's figure (the dashed line, "
                     "1×). Shorter is better.")
    lx = 10
    for j, name in enumerate(names):
        parts.append(f'<rect x="{lx}" y="50" width="9" height="9" fill="{PALETTE[j % len(PALETTE)]}"/>'
                     f'<text x="{lx + 12}" y="58" fill="#333">{esc(name)}</text>')
        lx += 24 + 7 * len(name)
    for i, w in enumerate(cats):
        y0 = top + i * row_h
        if i % 2 == 0:
            parts.append(f'<rect x="4" y="{y0}" width="{width - 8}" height="{row_h}" fill="#f4f6f8"/>')
        parts.append(f'<text x="{label_w - 8}" y="{y0 + row_h / 2 + 4:.1f}" text-anchor="end">'
                     f'{esc(WORKLOADS[w])}</text>')
    for k, (title, value) in enumerate(panels):
        x0 = label_w + k * (panel_w + gap)
        vals = [value(w, n) for w in cats for n in names]
        vmax = max([v for v in vals if v is not None] + [1.0]) * 1.15
        scale = panel_w / vmax
        parts.append(f'<text x="{x0}" y="{top - 8}" font-weight="bold">{esc(title)}</text>')
        parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + row_h * len(cats)}" stroke="#888"/>')
        for i, w in enumerate(cats):
            for j, n in enumerate(names):
                v = value(w, n)
                y = top + i * row_h + pad / 2 + j * bar_h
                if v is None:
                    continue
                bw = max(v * scale, 1)
                parts.append(f'<rect x="{x0}" y="{y:.1f}" width="{bw:.1f}" height="{bar_h - 2}" '
                             f'fill="{PALETTE[j % len(PALETTE)]}"><title>{esc(WORKLOADS[w])}, {esc(n)}: '
                             f'{v:.2f}×</title></rect>')
                parts.append(f'<text x="{x0 + bw + 3:.1f}" y="{y + 9:.1f}" fill="#333" font-size="9">'
                             f'{v:.2f}×</text>')
        one = x0 + scale
        parts.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{top + row_h * len(cats)}" '
                     f'stroke="#555" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="10" y="{height - 14}" fill="#777">Generated by scripts/bench_report.py from '
                 'criterion medians and the units and round trips benches/store.rs meters. The 1.5 MB '
                 'aggregate is left out: upstream refuses to store it.</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path.name


def section(d, fmt_ns, table, snapshot_every, after_snapshot):
    """The markdown section comparing against upstream."""
    out = []
    w = out.append
    w("## Against upstream dynamo-es 0.5.0")
    w("")
    line = headline(d)
    if line:
        w(f"**{line}**")
        w("")
    w("Upstream (`upstream`, the crates.io release this crate replaces) runs under cqrs-es's own "
      "`PersistedEventStore` (event, snapshot or aggregate store), as its users run it; this crate "
      "under `DynamoStore` with each codec. Both run in the same process, on the same embedded emulator "
      "build, each workload and implementation on a fresh emulator with fresh tables, with the same "
      "events and metadata.")
    w("")
    w("* **Capacity units** are what the emulator reports in `ConsumedCapacity`. Upstream never asks for "
      "it, so every request of both sides goes through the same SDK interceptor "
      "(`dynamo_es::testing::costs::Meter`), which sets `ReturnConsumedCapacity = TOTAL` and sums the "
      "responses. Each workload is metered once, apart from the timed iterations.")
    w("* **Times:** criterion measures each implementation in turn; then every workload runs in "
      "interleaved rounds, each timing every implementation once (starting from a different one each "
      "round), and the ratios against upstream are the ratios of those medians. On this shared machine "
      "the load drifts over the seconds criterion spends on each implementation; interleaving exposes "
      "both sides to the same drift.")
    w("* **Round trips** are sequential: requests sent together (this crate's snapshot `GetItem` and "
      "tail `Query`) count once. The meter's gate holds each round open for 200 ms so the count does not "
      "depend on the machine's speed; metered runs are never timed.")
    w(f"* **Workloads:** commits on a fresh aggregate of an event store (the load before each commit is "
      f"not timed); a load of 1,000 events from an event store; loads of an aggregate of "
      f"{snapshot_every + after_snapshot} events committed 10 per command, under a snapshot every "
      f"{snapshot_every} (so {after_snapshot} events follow the snapshot) and under an aggregate store "
      f"(a snapshot after every commit); and the fixtures' 1.5 MB ledger, booked by one command of six "
      f"`Imported` events in an aggregate store, then a commit of one more event (persist: the event and "
      f"the new snapshot) and loads; and hot command loops in an aggregate store (a load, then a "
      f"commit of one event, 1,000 times, on one aggregate and going round 100), for upstream and this "
      f"crate's `json` without and with a `HotCache` (`json+cache`): their times and counts are per "
      f"command.")
    w("")
    w(comparison_table(d, fmt_ns, table))
    w("")
    w("### Goals (issue 15)")
    w("")
    w("Ratios within this one run; goals, not test assertions. The deterministic ones (write units, "
      "round trips) are also asserted by `tests/bench_costs.rs`.")
    w("")
    w(table(["goal", "codec", "measured", "target", "verdict", "why, when missed"],
            [list(r) for r in goals(d)], ["l", "l", "r", "r", "l", "l"]))
    w("")
    w("### What the units show")
    w("")
    # What the units of a `json` load show against upstream's, where both ran.
    notes = [
        ("store_load_snapshot_every_50", lambda here, up: (
            f"* A snapshotted load here reads {units(here['rcu'])} RCU against upstream's "
            f"{units(up['rcu'])} with `json` under `Every({snapshot_every})`: once the process has seen "
            f"where the snapshot is (here, its own commits wrote it), the tail query starts at the "
            f"snapshot, so it reads the {after_snapshot} events after it and the snapshot's own event, "
            "strongly consistent. Upstream's query for the events after its snapshot is eventually "
            "consistent (half the units, and it may miss the newest events), and it reads its snapshot "
            "with a query of the snapshot table.")),
        ("store_load_snapshot_always", lambda here, up: (
            f"* In an aggregate store both sides read one item: upstream queries its snapshot "
            f"({units(up['rcu'])} RCU), this crate gets its head ({units(here['rcu'])} RCU with `json`), "
            "which claims to be current (`EventsThrough`): every commit of an aggregate store writes the "
            "claim, and every `DynamoStore` commit that stores events without replacing the head removes "
            "it first, so the events after the snapshot are queried only when there are some.")),
    ]
    for workload, note in notes:
        here, up = against(d, workload, "json")
        if here and up:
            w(note(here, up))
    diffs = published_check(d)
    if diffs:
        w("* The emulator's units differ from DynamoDB's published rules applied to the stored items in: "
          + "; ".join(f"{wl} `{n}` {k} {units(m)} against {units(p)}" for wl, n, k, m, p in diffs) + ".")
    else:
        checked = sum(1 for r in d.store.values() for k in ("published_wcu", "published_rcu")
                      if r.get(k) is not None)
        if checked:
            w(f"* Where the published rules can be applied to the stored items alone (commits, the load "
              f"of 1,000 events, the 1.5 MB persist; {checked} figures), the emulator's units equal them "
              "exactly: 1 WCU per started KB per item, doubled in a transaction; 1 RCU per started 4 KB "
              "of a query page's summed size, strongly consistent.")
    w("")
    w("### Profiling")
    w("")
    w("Timings on this shared machine are noisy; instruction counts are not. To count what one run of a "
      "workload costs (client and emulator together), run the store bench under callgrind twice, with a "
      "fixed number of runs per implementation (`STORE_BENCH_PROFILE_RUNS`, which skips the timing), and "
      "divide the difference:")
    w("")
    w("```sh")
    w("for n in 0 40; do for i in upstream json; do")
    w("  STORE_BENCH_PROFILE_RUNS=$n STORE_BENCH_WORKLOADS=store_load_1000_events STORE_BENCH_IMPLEMENTATIONS=$i \\")
    w("    valgrind --tool=callgrind --callgrind-out-file=$i-$n.%p.out target/release/deps/store-HASH --bench")
    w("done; done  # callgrind_annotate --inclusive=yes each: per function, (n=40 − n=0) / 40 is one load")
    w("```")
    w("")
    return "\n".join(out)
