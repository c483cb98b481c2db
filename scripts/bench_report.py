#!/usr/bin/env python3
"""Builds docs/BENCHMARKS.md and its charts (docs/bench-*.svg) from a run of
`cargo bench --all-features --bench codecs` and `--bench store`.

Inputs, all under the criterion directory ($CRITERION_HOME, else
$CARGO_TARGET_DIR/criterion, else target/criterion, as criterion itself):

* `**/new/benchmark.json` + `estimates.json`: criterion's results (medians);
* `dynamo-es/codecs.json`: encoded sizes, written by benches/codecs.rs;
* `dynamo-es/store.json`: stored item sizes and capacity units, written by
  benches/store.rs;
* `dynamo-es/run.json` (optional): when and how scripts/bench.sh ran. Its
  `started` time filters out criterion results older than the run.

Standard library only; the SVG charts are written by hand.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import bench_upstream  # noqa: E402  (the comparison against upstream)

# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def criterion_home():
    if os.environ.get("CRITERION_HOME"):
        return pathlib.Path(os.environ["CRITERION_HOME"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "criterion"
    return REPO / "target" / "criterion"


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def load_criterion(root, since):
    """{(group, function, value): estimates} for every fresh result."""
    results = {}
    for meta_path in root.glob("**/new/benchmark.json"):
        est_path = meta_path.parent / "estimates.json"
        if not est_path.exists():
            continue
        if since is not None and est_path.stat().st_mtime < since:
            continue
        meta = load_json(meta_path)
        est = load_json(est_path)
        median = est["median"]
        key = (meta["group_id"], meta.get("function_id"), meta.get("value_str"))
        results[key] = {
            "median": median["point_estimate"],
            "lo": median["confidence_interval"]["lower_bound"],
            "hi": median["confidence_interval"]["upper_bound"],
            "throughput": meta.get("throughput"),
        }
    return results


def machine():
    model, cores = "unknown", 0
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("processor"):
                    cores += 1
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    kb = int(line.split()[1])
                    mem = f"{kb / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": cores or os.cpu_count(),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
    }


def command_output(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


units = bench_upstream.units


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_bytes(n):
    if n is None:
        return "n/a"
    return f"{n:,}"


def fmt_ratio(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}×"


def fmt_rate(bytes_, ns):
    if bytes_ is None or not ns:
        return "n/a"
    mbs = bytes_ / (ns / 1e9) / 1e6
    return f"{mbs:,.0f} MB/s"


def div(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def table(headers, rows, align=None):
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# SVG charts, by hand
# ---------------------------------------------------------------------------

PALETTE = bench_upstream.PALETTE
esc = bench_upstream.esc


def hbar_chart(title, subtitle, categories, panels, path):
    """Horizontal bars: one row per category, one panel per metric; each
    panel has one or more series (bars stacked vertically inside a row)."""
    label_w, panel_w, gap, top, row_pad, bar_h = 150, 260, 40, 78, 10, 13
    max_series = max(len(p["series"]) for p in panels)
    row_h = max_series * bar_h + row_pad
    height = top + row_h * len(categories) + 56
    width = label_w + len(panels) * (panel_w + gap) + 10
    parts = bench_upstream.svg_open(width, height, title, subtitle)
    for i, category in enumerate(categories):
        y = top + i * row_h + row_h / 2 + 4
        parts.append(f'<text x="{label_w - 8}" y="{y:.1f}" text-anchor="end">{esc(category)}</text>')
        if i % 2 == 0:
            parts.append(
                f'<rect x="4" y="{top + i * row_h:.1f}" width="{width - 8}" height="{row_h}" '
                f'fill="#f4f6f8"/>'
            )
    # Stripes first, so they sit under the bars: re-order.
    stripes = [p for p in parts if p.startswith("<rect x=\"4\"")]
    parts = [p for p in parts if not p.startswith("<rect x=\"4\"")]
    parts[2:2] = stripes
    for k, panel in enumerate(panels):
        x0 = label_w + k * (panel_w + gap)
        values = [v for s in panel["series"] for v in s[2] if v is not None]
        vmax = max(values) if values else 1
        vmax = vmax * 1.25 if vmax > 0 else 1
        parts.append(
            f'<text x="{x0}" y="{top - 22}" font-weight="bold">{esc(panel["title"])}</text>'
        )
        legend_x = x0
        for j, (label, color, _) in enumerate(panel["series"]):
            if len(panel["series"]) > 1:
                parts.append(
                    f'<rect x="{legend_x}" y="{top - 14}" width="9" height="9" fill="{color}"/>'
                    f'<text x="{legend_x + 12}" y="{top - 6}" fill="#333">{esc(label)}</text>'
                )
                legend_x += 14 + 7 * len(label) + 10
        parts.append(
            f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + row_h * len(categories)}" '
            f'stroke="#888"/>'
        )
        for i in range(len(categories)):
            for j, (label, color, vals) in enumerate(panel["series"]):
                v = vals[i]
                y = top + i * row_h + row_pad / 2 + j * bar_h
                if v is None:
                    parts.append(f'<text x="{x0 + 4}" y="{y + 10}" fill="#999">n/a</text>')
                    continue
                w = max(panel_w * v / vmax, 1)
                parts.append(
                    f'<rect x="{x0}" y="{y:.1f}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}">'
                    f"<title>{esc(categories[i])} {esc(label)}: {esc(panel['fmt'](v))}</title></rect>"
                )
                parts.append(
                    f'<text x="{x0 + w + 4:.1f}" y="{y + 10:.1f}" fill="#333">{esc(panel["fmt"](v))}</text>'
                )
    parts.append(
        f'<text x="10" y="{height - 14}" fill="#777">Generated by scripts/bench_report.py '
        f"from criterion medians and the sizes the benches record.</text>"
    )
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


class Data:
    def __init__(self, crit, codecs_json, store_json):
        self.crit = crit
        self.sizes = {}
        self.codecs = []
        for row in (codecs_json or {}).get("sizes", []):
            self.sizes[(row["payload"], row["codec"])] = row
            if row["codec"] not in self.codecs:
                self.codecs.append(row["codec"])
        self.store = {}
        for row in (store_json or {}).get("workloads", []):
            self.store[(row["workload"], row["codec"])] = row
            if row["codec"] not in self.codecs:
                self.codecs.append(row["codec"])

    def t(self, group, value, function=None):
        r = self.crit.get((group, function, value))
        return r["median"] if r else None

    def stored(self, payload, codec):
        r = self.sizes.get((payload, codec))
        return r["stored_bytes"] if r else None

    def json_bytes(self, payload):
        r = self.sizes.get((payload, "json"))
        return r["json_bytes"] if r else None

    def has(self, codec):
        return codec in self.codecs


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def same_path_peers(d, group, codec, plain):
    """Other codecs whose `group` benchmark runs the same code as `codec`
    (e.g. every `+zstd` codec on a payload below the compression threshold),
    as 'codec 0.97×' strings relative to `plain`."""
    fmt = codec.split("+")[0]
    base = d.t(group, plain)
    out = []
    for other in d.codecs:
        if other != codec and other.startswith(fmt + "+zstd"):
            r = div(d.t(group, other), base)
            if r is not None:
                out.append(f"`{other}` {r:.2f}×")
    return ", ".join(out)


def targets(d):
    """(target, codec, measured, goal, verdict, why-if-missed) rows."""
    rows = []
    snap, small = "snapshot_1_5mb", "small_event"
    stage = "zstd_stage_snapshot_1_5mb"

    for codec in ("json+zstd-3", "msgpack+zstd-3"):
        if not d.has(codec):
            continue
        x = div(d.json_bytes(snap), d.stored(snap, codec))
        why = ""
        if x is not None and x < 5:
            why = (f"the ledger compresses only {x:.1f}× at level 3: its ids, amounts and timestamps "
                   "are random by design, which bounds the ratio")
        rows.append(("1.5 MB snapshot: JSON bytes / stored bytes", codec, fmt_ratio(x, 1), "≥ 5×",
                     verdict(None if x is None else x >= 5), why))

    for fmt in ("json", "msgpack"):
        codec = f"{fmt}+zstd-3"
        if not d.has(codec):
            continue
        dec = d.t(stage, codec, "decompress")
        cpy = d.t(stage, fmt, "memcpy")
        x = div(dec, cpy)
        why = ""
        if x is not None and x > 15:
            raw = d.stored(snap, fmt)
            why = (
                f"memcpy copies the {raw / 1e6:.1f} MB at {fmt_rate(raw, cpy)}, a copy that stays in the "
                f"CPU cache (source and destination are reused every iteration); zstd produces the same "
                f"bytes at {fmt_rate(raw, dec)}, bounded by its decoding work (entropy decoding, match "
                f"copies) on one core. Meeting the goal "
                f"would take {fmt_rate(raw, cpy * 15)} of zstd output. Decompression is "
                f"{fmt_ns(dec)} per 1.5 MB snapshot, {100 * div(dec, d.t(f'decode_{snap}', fmt)):.0f}% "
                f"of decoding the same {fmt}"
            )
        rows.append(("zstd decompress / memcpy of the same bytes (1.5 MB)", codec, fmt_ratio(x, 1),
                     "≤ 15×", verdict(None if x is None else x <= 15), why))

    for fmt in ("json", "msgpack"):
        codec = f"{fmt}+zstd-3"
        if not d.has(codec):
            continue
        full = d.t(f"decode_{snap}", codec)
        plain = d.t(f"decode_{snap}", fmt)
        x = div(full, plain)
        dec = d.t(stage, codec, "decompress")
        model = div((plain or 0) + (dec or 0), plain) if dec is not None else None
        measured = fmt_ratio(x) + (f" (stages: {fmt_ratio(model)})" if model else "")
        why = ""
        if x is not None and x > 1.10:
            if model is not None and model <= 1.10:
                why = (
                    f"most likely noise: the zstd stage alone takes {fmt_ns(dec)}, "
                    f"{100 * (model - 1):.0f}% of the {fmt_ns(plain)} plain decode, so plain decode + "
                    f"decompress is {fmt_ratio(model)}; the rest is run-to-run variance on the shared "
                    f"machine (same path at other levels: {same_path_peers(d, f'decode_{snap}', codec, fmt)})"
                )
            else:
                why = (f"decompression alone costs {fmt_ns(dec)}, more than 10% of the "
                       f"{fmt_ns(plain)} plain {fmt} decode")
        rows.append((f"1.5 MB snapshot: decode with zstd / decode of plain {fmt}", codec,
                     measured, "≤ 1.10×", verdict(None if x is None else x <= 1.10), why))

    if d.has("json+zstd-3"):
        full = d.t(f"encode_{snap}", "json+zstd-3")
        plain = d.t(f"encode_{snap}", "json")
        x = div(full, plain)
        why = ""
        if x is not None and x > 3:
            comp = d.t(stage, "json+zstd-3", "compress")
            why = (f"compressing 1.5 MB at level 3 takes {fmt_ns(comp)} against {fmt_ns(plain)} "
                   "of JSON encoding")
        rows.append(("1.5 MB snapshot: JSON+zstd encode / JSON encode", "json+zstd-3", fmt_ratio(x),
                     "≤ 3×", verdict(None if x is None else x <= 3), why))

    for codec in ("json+zstd-3", "msgpack+zstd-3"):
        if not d.has(codec):
            continue
        group = f"encode_{small}"
        x = div(d.t(group, codec), d.t(group, "json"))
        why = ""
        if x is not None and x > 1.1:
            fmt = codec.split("+")[0]
            why = (
                f"noise, not cost: the event is under the 1 KB compression threshold, so this codec runs "
                f"plain {fmt} encoding plus one length check"
                + (", the very code `json` runs" if fmt == "json" else "")
                + f"; the same path at other levels measured {same_path_peers(d, group, codec, 'json')}"
            )
        rows.append(("small event: encode / plain JSON encode", codec, fmt_ratio(x), "≤ 1.10×",
                     verdict(None if x is None else x <= 1.1), why))
        extra = None
        stored, js = d.stored(small, codec), d.json_bytes(small)
        if stored is not None and js is not None:
            extra = stored - js
        rows.append(("small event: stored bytes − JSON bytes", codec,
                     "n/a" if extra is None else f"{extra:+d} B", "≤ +8 B",
                     verdict(None if extra is None else extra <= 8), ""))
    return rows


def noise_gauge(d):
    """The spread of codecs that run identical code: every `+zstd` codec on
    the small event (below the compression threshold) against its plain
    format. Returns (lowest, highest) ratio, or None."""
    ratios = []
    for op in ("encode", "decode"):
        group = f"{op}_small_event"
        for codec in d.codecs:
            if "+zstd" in codec:
                r = div(d.t(group, codec), d.t(group, codec.split("+")[0]))
                if r is not None:
                    ratios.append(r)
    return (min(ratios), max(ratios)) if ratios else None


def summary(d):
    """Headline bullets, computed from this run."""
    out = []
    snap = "snapshot_1_5mb"
    js, z3 = d.json_bytes(snap), d.stored(snap, "json+zstd-3")
    # The store bench runs zstd at the default level only.
    zj = next((c for c in d.codecs if c.startswith("json+zstd")
               and ("store_persist_snapshot_1_5mb", c) in d.store), "json+zstd-3")
    z3 = d.stored(snap, zj)
    pj = d.store.get(("store_persist_snapshot_1_5mb", "json"))
    pz = d.store.get(("store_persist_snapshot_1_5mb", zj))
    lj = d.store.get(("store_load_snapshot_1_5mb", "json"))
    lz = d.store.get(("store_load_snapshot_1_5mb", zj))
    if js and z3:
        line = (f"* **Bytes:** `{zj}` stores the 1.5 MB snapshot in {z3 / 1000:,.0f} KB instead of "
                f"{js / 1000:,.0f} KB ({js / z3:.1f}× fewer bytes)")
        if pj and pz:
            line += (f"; one item instead of {pj['detail']['snapshot_items']} (a head and "
                     f"{pj['detail']['chunks']} chunks), so a persist costs {units(pz['wcu'])} WCU instead "
                     f"of {units(pj['wcu'])} ({pj['wcu'] / pz['wcu']:.1f}× less)")
        if lj and lz:
            line += f" and a load {units(lz['rcu'])} RCU instead of {units(lj['rcu'])}"
        out.append(line + ".")
    dec = d.t("zstd_stage_snapshot_1_5mb", "json+zstd-3", "decompress")
    plain_dec = d.t(f"decode_{snap}", "json")
    if dec and plain_dec:
        out.append(f"* **Read cost:** decompressing it takes {fmt_ns(dec)}, {100 * dec / plain_dec:.0f}% of "
                   f"the {fmt_ns(plain_dec)} it takes to parse the JSON.")
    enc, plain_enc = d.t(f"encode_{snap}", "json+zstd-3"), d.t(f"encode_{snap}", "json")
    comp = d.t("zstd_stage_snapshot_1_5mb", "json+zstd-3", "compress")
    if enc and plain_enc:
        out.append(f"* **Write cost:** encoding it with `json+zstd-3` takes {fmt_ns(enc)} against "
                   f"{fmt_ns(plain_enc)} for plain JSON ({enc / plain_enc:.2f}×"
                   + (f"; the level-3 compression stage alone is {fmt_ns(comp)}" if comp else "") + ").")
    c1 = d.store.get(("store_commit_1_event", "json"))
    c1m = d.store.get(("store_commit_1_event", "msgpack"))
    sj, sz = d.stored("small_event", "json"), d.stored("small_event", "json+zstd-3")
    cu = d.store.get(("store_commit_1_event", "upstream"))
    if c1 and sj is not None:
        line = (f"* **Small events are unchanged:** under the 1 KB threshold they are never compressed "
                f"({sj} B stored with or without zstd); a one-event commit is one conditional `PutItem` of a "
                f"{c1['item_bytes']} B item for {units(c1['wcu'])} WCU"
                + (f" (upstream's one-item transaction: {units(cu['wcu'])} WCU)" if cu else ""))
        if c1m:
            line += (f"; MessagePack shrinks the item to {c1m['item_bytes']} B, which does not change "
                     "the WCU")
        out.append(line + ".")
    l1 = d.store.get(("store_load_1000_events", "json"))
    l1m = d.store.get(("store_load_1000_events", "msgpack"))
    if l1:
        line = (f"* **Replays:** loading 1,000 events reads {l1['item_bytes'] / 1000:,.0f} KB in one query "
                f"page for {units(l1['rcu'])} RCU")
        if l1m:
            line += f" ({units(l1m['rcu'])} RCU with MessagePack)"
        out.append(line + ".")
    return "\n".join(out)


def codec_table(d, payload):
    js = d.json_bytes(payload)
    enc_json = d.t(f"encode_{payload}", "json")
    dec_json = d.t(f"decode_{payload}", "json")
    rows = []
    for codec in d.codecs:
        stored = d.stored(payload, codec)
        if stored is None:
            continue
        enc = d.t(f"encode_{payload}", codec)
        dec = d.t(f"decode_{payload}", codec)
        rows.append([
            f"`{codec}`",
            fmt_bytes(stored),
            f"{div(stored, js):.3f}" if js else "n/a",
            fmt_ratio(div(js, stored)),
            fmt_ns(enc),
            fmt_ratio(div(enc, enc_json)),
            fmt_rate(js, enc),
            fmt_ns(dec),
            fmt_ratio(div(dec, dec_json)),
            fmt_rate(js, dec),
        ])
    return table(
        ["codec", "stored bytes", "size / JSON", "JSON / size", "encode (median)", "vs JSON",
         "JSON MB/s", "decode (median)", "vs JSON", "JSON MB/s"],
        rows,
    )


def zstd_table(d):
    rows = []
    group = "zstd_stage_snapshot_1_5mb"
    for fmt in ("json", "msgpack"):
        raw = d.stored("snapshot_1_5mb", fmt)
        cpy = d.t(group, fmt, "memcpy")
        if raw is None or cpy is None:
            continue
        rows.append([f"`{fmt}` (memcpy)", fmt_bytes(raw), "—", "—", "—", fmt_ns(cpy), fmt_rate(raw, cpy), "1.0×"])
        for level in (1, 3, 9):
            codec = f"{fmt}+zstd-{level}"
            comp = d.t(group, codec, "compress")
            dec = d.t(group, codec, "decompress")
            rows.append([
                f"`{codec}`",
                fmt_bytes(d.stored("snapshot_1_5mb", codec)),
                fmt_ratio(div(raw, d.stored("snapshot_1_5mb", codec))),
                fmt_ns(comp),
                fmt_rate(raw, comp),
                fmt_ns(dec),
                fmt_rate(raw, dec),
                fmt_ratio(div(dec, cpy), 1),
            ])
    return table(
        ["input → frame", "bytes", "raw / frame", "compress", "MB/s in", "decompress (or copy)",
         "MB/s out", "vs memcpy"],
        rows,
    )


STORE_LABELS = {
    "store_commit_1_event": "commit 1 event",
    "store_commit_10_events": "commit 10 events",
    "store_load_1000_events": "load 1,000 events",
    "store_persist_snapshot_1_5mb": "persist 1.5 MB snapshot (+1 event)",
    "store_load_snapshot_1_5mb": "load 1.5 MB snapshot",
}


def store_tables(d):
    out = []
    rows = []
    for codec in d.codecs:
        c1 = d.store.get(("store_commit_1_event", codec))
        c10 = d.store.get(("store_commit_10_events", codec))
        l1k = d.store.get(("store_load_1000_events", codec))
        if not (c1 or c10 or l1k):
            continue
        rows.append([
            f"`{codec}`",
            fmt_ns(d.t("store_commit_1_event", codec)),
            fmt_bytes(c1 and c1["item_bytes"]),
            units(c1 and c1["wcu"]),
            fmt_ns(d.t("store_commit_10_events", codec)),
            fmt_bytes(c10 and c10["item_bytes"]),
            units(c10 and c10["wcu"]),
            fmt_ns(d.t("store_load_1000_events", codec)),
            fmt_bytes(l1k and l1k["item_bytes"]),
            units(l1k and l1k["rcu"]),
        ])
    out.append("**Events** (item bytes are the DynamoDB item sizes of the events written or read):\n")
    out.append(table(
        ["codec", "commit 1 (median)", "item bytes", "WCU", "commit 10 (median)", "item bytes", "WCU",
         "load 1,000 (median)", "item bytes", "RCU"],
        rows,
    ))
    rows = []
    for codec in d.codecs:
        p = d.store.get(("store_persist_snapshot_1_5mb", codec))
        l = d.store.get(("store_load_snapshot_1_5mb", codec))
        if not (p or l) or (p or l).get("refused"):
            continue
        det = (p or l)["detail"]
        rows.append([
            f"`{codec}`",
            fmt_bytes(det["stored_payload_bytes"]),
            f"{det['snapshot_items']} ({det['chunks']} chunks)" if det["chunks"] else "1",
            fmt_bytes(det["snapshot_item_bytes"]),
            fmt_ns(d.t("store_persist_snapshot_1_5mb", codec)),
            units(p and p["wcu"]),
            fmt_ns(d.t("store_load_snapshot_1_5mb", codec)),
            units(l and l["rcu"]),
        ])
    out.append("\n**The 1.5 MB aggregate** (aggregate store; a persist is one transaction holding one "
               "event and the snapshot's items; upstream refuses to store it, see above):\n")
    out.append(table(
        ["codec", "stored payload", "snapshot items", "item bytes", "persist (median)", "WCU",
         "load (median)", "RCU"],
        rows,
    ))
    return "\n".join(out)


def charts(d, docs):
    made = []
    snap = "snapshot_1_5mb"
    cats = [c for c in d.codecs if d.stored(snap, c) is not None]
    if cats:
        kb = [d.stored(snap, c) / 1000 for c in cats]
        enc = [div(d.t(f"encode_{snap}", c), 1e6) for c in cats]
        dec = [div(d.t(f"decode_{snap}", c), 1e6) for c in cats]
        panels = [
            {"title": "Bytes stored (KB)", "fmt": lambda v: f"{v:,.0f} KB",
             "series": [("stored", PALETTE[0], kb)]},
            {"title": "Encode / decode (ms, median)", "fmt": lambda v: f"{v:.1f} ms",
             "series": [("encode", PALETTE[1], enc), ("decode", PALETTE[2], dec)]},
        ]
        wcu = [d.store.get(("store_persist_snapshot_1_5mb", c), {}).get("wcu") for c in cats]
        rcu = [d.store.get(("store_load_snapshot_1_5mb", c), {}).get("rcu") for c in cats]
        if any(v is not None for v in wcu + rcu):
            panels.append({"title": "Capacity units per persist / load", "fmt": lambda v: f"{v:.0f}",
                           "series": [("WCU persist", PALETTE[3], wcu), ("RCU load", PALETTE[4], rcu)]})
        path = docs / "bench-snapshot.svg"
        hbar_chart("The 1.5 MB ledger snapshot: bytes stored vs. time, per codec",
                   "Fewer bytes (left) cost time (middle) and save capacity units (right). "
                   "Shorter is better everywhere.", cats, panels, path)
        made.append(path.name)

    cats = [c for c in d.codecs if any((w, c) in d.store for w in STORE_LABELS)]
    if cats:
        panels = []
        for i, workload in enumerate(STORE_LABELS):
            vals = [div(d.t(workload, c), 1e6) for c in cats]
            panels.append({"title": STORE_LABELS[workload] + " (ms)", "fmt": lambda v: f"{v:.1f}",
                           "series": [("median", PALETTE[i % len(PALETTE)], vals)]})
        path = docs / "bench-store.svg"
        hbar_chart("Store operations on the embedded emulator (median ms)",
                   "These timings mostly measure dynoxide (SQLite behind HTTP), not DynamoDB.",
                   cats, panels[:3], path)
        made.append(path.name)
        path = docs / "bench-store-snapshot.svg"
        hbar_chart("Snapshot persist and load on the embedded emulator (median ms)",
                   "These timings mostly measure dynoxide (SQLite behind HTTP), not DynamoDB.",
                   cats, panels[3:], path)
        made.append(path.name)
    return made


LAST_SECTION = "Reading the numbers"


def sections(text):
    """The page's `## ` sections, in order, as (title, text) pairs; the text
    before the first one is left out."""
    parts = re.split(r"(?m)^(?=## )", text)
    return [(p.split("\n", 1)[0][3:].strip(), p) for p in parts if p.startswith("## ")]


def keep_foreign_sections(page, old):
    """`page` with every `## ` section of the `old` page that this script
    does not write (other benchmarks' sections, written by their own
    scripts or by hand): those that stood before "Reading the numbers" go
    before it again, the others after it, in their order."""
    ours = {title for title, _ in sections(page)}
    before, after, seen_last = [], [], False
    for title, text in sections(old):
        if title == LAST_SECTION:
            seen_last = True
        elif title not in ours:
            (after if seen_last else before).append(text.rstrip("\n") + "\n")
    marker = f"## {LAST_SECTION}\n"
    if before and marker in page:
        head, tail = page.split(marker, 1)
        page = head + "\n".join(before) + "\n" + marker + tail
    if after:
        page = page.rstrip("\n") + "\n\n" + "\n".join(after)
    return page


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", type=pathlib.Path, default=None, help="criterion directory")
    ap.add_argument("--docs", type=pathlib.Path, default=REPO / "docs", help="output directory")
    ap.add_argument("--all-results", action="store_true",
                    help="use every criterion result, not only those newer than run.json's start")
    args = ap.parse_args()

    root = args.criterion or criterion_home()
    ours = root / "dynamo-es"
    run = load_json(ours / "run.json") or {}
    since = None if args.all_results else run.get("started")
    crit = load_criterion(root, since)
    codecs_json = load_json(ours / "codecs.json")
    store_json = load_json(ours / "store.json")
    if not crit or codecs_json is None:
        sys.exit(f"no benchmark results under {root}: run scripts/bench.sh first")
    d = Data(crit, codecs_json, store_json)
    docs = args.docs
    docs.mkdir(parents=True, exist_ok=True)
    made = charts(d, docs)
    upstream_chart = bench_upstream.chart(d, docs / "bench-upstream.svg") if store_json else None

    m = machine()
    started = run.get("started")
    when = (datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if started else "unknown")
    commands = run.get("commands") or [
        "cargo bench --all-features --bench codecs",
        "cargo bench --all-features --bench store",
        "python3 scripts/bench_report.py",
    ]
    rustc = run.get("rustc") or command_output(["rustc", "-V"])
    rev = run.get("git") or command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])

    small_json = d.json_bytes("small_event")
    snap_json = d.json_bytes("snapshot_1_5mb")
    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w("<!-- Generated by scripts/bench_report.py; run scripts/bench.sh to regenerate. Do not edit by hand. -->")
    w("")
    note = run.get("note")
    if note:
        w(f"> **Status.** {note}")
        w("")
    w(f"Run on {when}, commit `{rev or 'unknown'}`, {rustc or 'rustc unknown'}. "
      "Everything on this page is regenerated from one run by one command:")
    w("")
    w("```sh")
    w("scripts/bench.sh   # runs:")
    for c in commands:
        w(f"#   {c}")
    w("```")
    w("")
    machine_line = f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, {m['os']}."
    if run.get("load_before") or run.get("load_after"):
        machine_line += (f" Load average (1/5/15 min) before the run: {run.get('load_before', '?')}; "
                         f"after: {run.get('load_after', '?')}.")
    w(machine_line)
    w("")
    w("Data: the crate's own fixtures (`dynamo_es::testing::fixtures`): the small event is "
      f"`small_event({codecs_json.get('small_event_seed', '?')})`, {fmt_bytes(small_json)} bytes of compact JSON; "
      f"the snapshot is `snapshot_1_5_mb()`, a ledger account of {fmt_bytes(snap_json)} bytes of compact JSON "
      "with realistic, deliberately unflattering data (random ids, amounts and timestamps). "
      "Times are criterion medians (`new/estimates.json`). Throughput (MB/s) is always counted in bytes of "
      "the payload as compact JSON, so it compares across codecs.")
    w("")
    summ = summary(d)
    if summ:
        w("## Summary")
        w("")
        w(summ)
        w("")
    if store_json:
        w(bench_upstream.section(d, fmt_ns, table, store_json.get("snapshot_every", 50),
                                 store_json.get("after_snapshot", 30)))
        if upstream_chart:
            w(f"![{upstream_chart}]({upstream_chart})")
            w("")
    w("## Targets")
    w("")
    w("Measured as ratios within this one run; goals, not test assertions. \"stages\" is the same ratio "
      "estimated from two separately measured medians, (plain decode + zstd decompress stage) / plain "
      "decode, which one noisy measurement cannot skew.")
    w("")
    w(table(["target", "codec", "measured", "goal", "verdict", "why, when missed"],
            [list(r) for r in targets(d)], ["l", "l", "r", "r", "l", "l"]))
    w("")
    if made:
        w("## The trade-off")
        w("")
        for name in made:
            w(f"![{name}]({name})")
            w("")
    w("## Codecs")
    w("")
    w(f"### Small event ({fmt_bytes(small_json)} bytes of JSON)")
    w("")
    w("Payloads under 1 KB are never compressed (`Codec::with_min_compress_size`), so the `+zstd` "
      "codecs store and cost the same as their plain format here, by design.")
    w("")
    w(codec_table(d, "small_event"))
    w("")
    w(f"### 1.5 MB snapshot ({fmt_bytes(snap_json)} bytes of JSON)")
    w("")
    w(codec_table(d, "snapshot_1_5mb"))
    w("")
    w("Encode is `Codec::encode` of a `serde_json::Value`; decode is `Codec::decode` back to a "
      "`serde_json::Value` (format detection, decompression with the size cap, deserialization).")
    w("")
    zt = zstd_table(d)
    if len(zt.splitlines()) > 2:
        w("### The zstd stage alone")
        w("")
        w("Compress and decompress of the serialized snapshot with the same reused zstd contexts the codec "
          "uses. The baseline is `to_vec` of the uncompressed bytes (allocation + memcpy): the physical floor "
          "of producing them.")
        w("")
        w(zt)
        w("")
    if d.store:
        w("## Store operations and capacity units")
        w("")
        w("On the embedded emulator (`dynamo_es::testing::EmbeddedDynamo`, dynoxide on SQLite, over HTTP on "
          "localhost), through `DynamoStore` (`EventStore::load_aggregate` and `EventStore::commit`). "
          "**The timings mostly measure dynoxide, SQLite and the HTTP round trips, not DynamoDB**; they show "
          "the client-side cost of each codec only where it dominates (the 1.5 MB snapshot). The capacity "
          "units are the cost signal that transfers to real DynamoDB: the emulator's `ConsumedCapacity`, "
          "metered as described above and checked against DynamoDB's published rules applied to the items "
          "as stored (`dynamo_es::size`).")
        w("")
        w("* A one-event commit is one conditional `PutItem` (1 WCU per started KB); larger commits are one "
          "`TransactWriteItems` call (1 WCU per started KB of each item, doubled in a transaction). Each "
          "commit is timed alone, on a fresh aggregate (the empty load before it is not timed).")
        w("* Loading events is one strongly consistent `Query`: 1 RCU per started 4 KB of the *page's summed* "
          "item sizes (not per item).")
        w("* A snapshot load is a `GetItem` of the head and, concurrently, a `Query` of the newest events "
          "(up to 4 in an aggregate store), then a `BatchGetItem` of the head's chunks, if any (each item "
          "rounded up to 4 KB on its own).")
        w("* Item sizes are measured by scanning the tables after the metered run.")
        w("")
        w(store_tables(d))
        w("")
    w("## Reading the numbers")
    w("")
    w("* MessagePack writes the data model (tag `0xC1 0x02`) since the one-data-model fix; "
      "[BENCHMARKS-data-model.md](BENCHMARKS-data-model.md) measures that change A/B against the "
      "release before it.")
    gauge = noise_gauge(d)
    w("* One run: any other work on the same cores shows up as noise in absolute times and in the ratios "
      "between them."
      + (f" A gauge of this run's noise: the `+zstd` codecs run exactly their plain format's code on the small "
         f"event (it is under the compression threshold), yet measured {gauge[0]:.2f}× to {gauge[1]:.2f}× "
         "of it." if gauge else ""))
    w("* Capacity units and byte counts are exact and deterministic; they do not depend on the machine.")
    w("")
    out = docs / "BENCHMARKS.md"
    page = "\n".join(lines) + "\n"
    if out.exists():
        page = keep_foreign_sections(page, out.read_text(encoding="utf-8"))
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out} and {', '.join(made + [upstream_chart] if upstream_chart else made) or 'no charts'}")
    if store_json:
        print("headline:", bench_upstream.headline(d))


if __name__ == "__main__":
    main()
