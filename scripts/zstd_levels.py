#!/usr/bin/env python3
"""The table behind the default zstd level: docs/tables/zstd_levels.md.

    python3 scripts/zstd_levels.py                # bench, callgrind, table
    python3 scripts/zstd_levels.py --report-only  # callgrind and table from the last bench

1. `cargo bench --all-features --bench zstd_levels` (criterion medians and
   the stored sizes, `$CARGO_TARGET_DIR/criterion/dynamo-es/zstd_levels.json`);
2. the same binary under `valgrind --tool=callgrind`, once per shape, with a
   dump on entering every measured call and on entering the marker called
   right after it: the instructions of each
   encode and decode, which do not depend on the machine's load;
3. the table, one section per shape, and which levels meet both rules:
   encoding within 3x plain JSON (in instructions) and storage at least 5x
   smaller.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "tables" / "zstd_levels.md"
SHAPES = {
    "ledger_snapshot": "ledger snapshot (`snapshot_1_5_mb()`), 1 item",
    "article_snapshot": "article snapshot (`article_snapshot(300_000, {seed})`), document-like, 1 item",
    "inventory_snapshot": "inventory snapshot (`inventory_snapshot(500_000, {seed})`), map-heavy, 1 item",
    "import_event_10_entries": "import event: `{\"Imported\": {\"entries\": [10 ledger entries]}}`, 1 item",
    "commit_10_small_events": "commit of 10 small events (`small_event(0..10)`), 10 items as stored (each under the 1 KB threshold)",
    "small_event_forced": "small event (`small_event(42)`) with compression forced (`with_min_compress_size(0)`)",
}
FIXTURES = ["ledger_snapshot", "inventory_snapshot", "article_snapshot"]
ENCODE_MAX = 3.0
RATIO_MIN = 5.0


def target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return pathlib.Path(os.environ["CARGO_TARGET_DIR"])
    meta = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"],
                          cwd=REPO, capture_output=True, check=True, text=True)
    return pathlib.Path(json.loads(meta.stdout)["target_directory"])


def criterion_home():
    if os.environ.get("CRITERION_HOME"):
        return pathlib.Path(os.environ["CRITERION_HOME"])
    return target_dir() / "criterion"


def bench_binary():
    out = subprocess.run(
        ["cargo", "bench", "--all-features", "--bench", "zstd_levels", "--no-run",
         "--message-format=json"], cwd=REPO, capture_output=True, check=True, text=True)
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "zstd_levels" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("no zstd_levels bench binary")


def instructions(binary, shape):
    """{(codec, op): instructions} of one call each, from callgrind dumps."""
    with tempfile.TemporaryDirectory() as tmp:
        out_file = pathlib.Path(tmp) / "cg.out"
        env = dict(os.environ, ZSTD_LEVELS_ONE=f"{shape},1")
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
             "--dump-before=*zstd_level_measured_call*",
             "--dump-before=*zstd_level_call_done*", binary],
            env=env, capture_output=True, check=True, text=True)
        calls = [tuple(line.split()) for line in run.stdout.splitlines() if line.strip()]
        parts = []
        for path in pathlib.Path(tmp).glob("cg.out.*"):
            text = path.read_text()
            trigger = re.search(r"^desc: Trigger: (.*)$", text, re.M).group(1)
            total = int(re.search(r"^totals: (\d+)", text, re.M).group(1))
            parts.append((int(path.suffix[1:]), trigger, total))
        after = [total for _, trigger, total in sorted(parts) if "zstd_level_call_done" in trigger]
        if len(after) != len(calls):
            sys.exit(f"{shape}: {len(after)} dumps for {len(calls)} calls")
        return dict(zip(calls, after))


def median_ns(root, op, shape, codec):
    path = root / f"zstd_levels_{op}_{shape}" / codec / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def duration(ns):
    for unit, scale in (("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:,.2f} {unit}"
    return f"{ns:,.0f} ns"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CARGO_TARGET_DIR", str(target_dir()))
    if not args.report_only:
        subprocess.run(["cargo", "bench", "--all-features", "--bench", "zstd_levels"],
                       cwd=REPO, check=True)
    root = criterion_home()
    record = json.loads((root / "dynamo-es" / "zstd_levels.json").read_text())
    binary = bench_binary()
    sizes = {}
    for row in record["sizes"]:
        sizes.setdefault(row["shape"], []).append(row)

    lines = [
        "<!-- Generated by scripts/zstd_levels.py; do not edit by hand. -->",
        "",
        "Stored bytes are exact (summed over the shape's items, each encoded on its own as a commit "
        "stores it). Times are criterion medians from one run of "
        "`cargo bench --all-features --bench zstd_levels` on a shared 2-core machine, relative to "
        "plain JSON in the same run; **instructions** are callgrind counts of one call each "
        "(`valgrind --tool=callgrind`), which the machine's load does not change. The encode rule "
        f"is judged on instructions: within {ENCODE_MAX:g}× plain JSON encoding, and storage at "
        f"least {RATIO_MIN:g}× smaller.",
        "",
    ]
    meets = {}
    for shape, title in SHAPES.items():
        counts = instructions(binary, shape)
        rows = sizes[shape]
        json_enc_ns = median_ns(root, "encode", shape, "json")
        json_dec_ns = median_ns(root, "decode", shape, "json")
        json_enc_ir = counts[("json", "encode")]
        json_dec_ir = counts[("json", "decode")]
        title = title.replace("{seed}", f"0x{record['seed']:X}")
        lines += [
            f"### {title}",
            "",
            f"JSON: {rows[0]['json_bytes']:,} B; encode {duration(json_enc_ns)} "
            f"({json_enc_ir:,} instructions), decode {duration(json_dec_ns)} "
            f"({json_dec_ir:,} instructions).",
            "",
            "| codec | stored B | JSON ÷ stored | encode | ÷ JSON (time) | ÷ JSON (instructions) "
            "| decode | ÷ JSON (time) | ÷ JSON (instructions) | ≤ 3× encode and ≥ 5× smaller |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            codec = row["codec"]
            ratio = row["json_bytes"] / row["stored_bytes"]
            enc_ns = median_ns(root, "encode", shape, codec)
            dec_ns = median_ns(root, "decode", shape, codec)
            enc_ir = counts[(codec, "encode")] / json_enc_ir
            dec_ir = counts[(codec, "decode")] / json_dec_ir
            ok = enc_ir <= ENCODE_MAX and ratio >= RATIO_MIN
            if row["level"] is not None:
                meets.setdefault(row["level"], {})[shape] = (ok, enc_ir, ratio, row["stored_bytes"])
            verdict = "—" if row["level"] is None else ("**yes**" if ok else "no")
            lines.append(
                f"| `{codec}` | {row['stored_bytes']:,} | {ratio:.2f}× | {duration(enc_ns)} | "
                f"{enc_ns / json_enc_ns:.2f}× | {enc_ir:.2f}× | {duration(dec_ns)} | "
                f"{dec_ns / json_dec_ns:.2f}× | {dec_ir:.2f}× | {verdict} |")
        lines.append("")

    lines += ["### Which levels meet both rules", "",
              "| level | " + " | ".join(FIXTURES) + " |",
              "|---|" + "---|" * len(FIXTURES)]
    for level in sorted(meets):
        cells = []
        for shape in FIXTURES:
            ok, enc_ir, ratio, stored = meets[level][shape]
            cells.append(f"{'yes' if ok else 'no'} ({enc_ir:.2f}× encode, {ratio:.2f}× smaller, {stored:,} B)")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    lines.append("")

    # The rules are about the fixtures: a level must meet both on every
    # fixture that some level meets them on; of those, the cheapest to
    # encode over the three fixtures (summed instruction ratios).
    reachable = [f for f in FIXTURES if any(meets[l][f][0] for l in meets)]
    unreachable = [f for f in FIXTURES if f not in reachable]
    candidates = [l for l in sorted(meets) if all(meets[l][f][0] for f in reachable)]
    cost = {l: sum(meets[l][f][1] for f in FIXTURES) for l in candidates}
    chosen = min(candidates, key=lambda l: (cost[l], l)) if candidates else None
    lines += [
        f"Levels meeting both rules on {', '.join(reachable)}: "
        f"{', '.join(str(l) for l in candidates) or 'none'}."
        + (f" No level meets both on {', '.join(unreachable)}." if unreachable else ""),
        "",
        f"**Chosen: level {chosen}**, the cheapest of them to encode over the three fixtures "
        "(summed encode instruction ratios: "
        + ", ".join(f"level {l} {cost[l]:.2f}" for l in candidates) + ").",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
