#!/usr/bin/env python3
"""Rewrites the results table of docs/PERFORMANCE.md from chatbench JSON.

usage: report.py WORKDIR PERFORMANCE.md MACHINE COMMIT

Replaces everything between the `<!-- bench:results:begin -->` and
`<!-- bench:results:end -->` markers; the rest of the page is left alone.
"""
import datetime
import json
import os
import sys

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


# A scenario run several times (BENCH_REPEAT in scripts/bench.sh) is shown
# by its median run, ranked by the number its target is about; the row also
# gives that number's range over the runs.
MEDIAN_BY = {
    "relay-88k": "delivered_per_s", "relay-80k": "delivered_per_s",
    "relay-50k": "p99_us", "relay-cmp": "p99_us",
    "fanout": "p99_us", "connect": "delivered_per_s", "connect-ref": "node_cpu_us_per_op",
    "idle": "rss_per_conn_bytes", "drain": "drain_per_s", "floor-50k": "cpu_us_per_msg",
    "peer-mqtt-cmp": "p99_us", "peer-mqtt-50k": "p99_us", "peer-mqtt-80k": "delivered_per_s",
}


def load(work, name):
    """The median run of NAME.json (one JSON object per line, one per run)."""
    try:
        with open(os.path.join(work, name + ".json")) as f:
            runs = [json.loads(line) for line in f if line.startswith("{")]
    except (OSError, ValueError):
        return None
    if not runs:
        return None
    key = MEDIAN_BY.get(name)
    if key:
        runs.sort(key=lambda r: r.get(key, 0))
    r = dict(runs[len(runs) // 2])
    r["_runs"] = [x.get(key, 0) for x in runs] if key else []
    r["_key"] = key
    # Messages lost or left unanswered in any run, not only the median's.
    r["_lost_any"] = sum(x.get("lost", 0) + x.get("unanswered", 0) for x in runs)
    return r


def spread(r):
    """' (median of N runs: low–high)' for a scenario run more than once."""
    vals = r.get("_runs", [])
    if len(vals) < 2:
        return ""
    key = r["_key"]
    if key.endswith("_us") and key.startswith("p"):
        lo, hi = num(vals[0] / 1000), num(vals[-1] / 1000, " ms")
    elif key in ("node_cpu_us_per_op", "cpu_us_per_msg"):
        lo, hi = num(vals[0]), num(vals[-1], " µs")
    elif key == "rss_per_conn_bytes":
        lo, hi = num(vals[0] / 1024), num(vals[-1] / 1024, " KiB")
    else:
        lo, hi = num(vals[0]), num(vals[-1], "/s")
    return f" (median of {len(vals)} runs; {lo}–{hi})"


def num(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.1f}{unit}"


def cpu(r, unit=" µs"):
    """Node CPU per op, with its split by thread when chatbench read it."""
    text = num(r["node_cpu_us_per_op"], unit)
    if "node_cpu_loop_us_per_op" in r:
        text += (f' (loop {num(r["node_cpu_loop_us_per_op"])}, store {num(r["node_cpu_store_us_per_op"])}, '
                 f'RocksDB {num(r["node_cpu_rocksdb_us_per_op"])})')
    return text


def verdict(ok):
    return "met" if ok else "**missed**"


def rows(work):
    out = []
    # Throughput is judged with 10 % more offered than the target (Method).
    r = load(work, "relay-88k")
    if r:
        ok = r["delivered_per_s"] >= 80000 and r["_lost_any"] == 0
        out.append((f'relay, offered {num(r["rate"])}/s', "≥ 80,000 msg/s delivered, none lost",
                    f'{num(r["delivered_per_s"])} msg/s delivered; lost {r["lost"]}, '
                    f'unanswered at the end {r["unanswered"]}; lost or unanswered over all runs '
                    f'{r["_lost_any"]}; p99 {num(r["p99_us"] / 1000)} ms{spread(r)}',
                    cpu(r), verdict(ok)))
    r = load(work, "relay-80k")
    if r:
        out.append(("relay, offered 80,000/s", "(reference point: the target's rate)",
                    f'{num(r["delivered_per_s"])} msg/s delivered; lost {r["lost"]}, '
                    f'unanswered at the end {r["unanswered"]}; p50 {num(r["p50_us"] / 1000)} ms, '
                    f'p99 {num(r["p99_us"] / 1000)} ms{spread(r)}',
                    cpu(r), "-"))
    r = load(work, "relay-50k")
    if r:
        ok = r["p99_us"] <= 5000 and r["delivered_per_s"] >= 49000
        out.append(("relay, offered 50,000/s", "p99 send→deliver ≤ 5 ms",
                    f'p50 {num(r["p50_us"] / 1000)} ms, p99 {num(r["p99_us"] / 1000)} ms, '
                    f'p99.9 {num(r["p999_us"] / 1000)} ms; {num(r["delivered_per_s"])} msg/s{spread(r)}',
                    cpu(r), verdict(ok)))
    r = load(work, "floor-50k")
    if r:
        out.append(("relay floor, 50,000/s: reads and writes only (relayfloor: no TLS, no store)",
                    "(this machine's floor under the row above)",
                    f'{num(r["cpu_us_per_msg"])} µs of CPU per message, '
                    f'{num(r["core_share"] * 100)} % of core 0 ({r["reads_per_msg"]:.2f} reads and '
                    f'{r["writes_per_msg"]:.2f} writes per message); p50 {num(r["p50_us"] / 1000)} ms, '
                    f'p99 {num(r["p99_us"] / 1000)} ms{spread(r)}',
                    "-", "-"))
    r = load(work, "relay-cmp")
    if r:
        out.append((f'relay, offered {num(r["rate"])}/s', "(reference point)",
                    f'{num(r["delivered_per_s"])} msg/s; p50 {num(r["p50_us"] / 1000)} ms, '
                    f'p99 {num(r["p99_us"] / 1000)} ms; Send→OK p99 {num(r.get("h2_p99_us", 0) / 1000)} ms'
                    f'{spread(r)}',
                    cpu(r), "-"))
    r = load(work, "fanout")
    if r:
        g = int(r.get("members_max", 0))
        pairwise = r.get("pairwise_max", 0) >= 1
        ok = r["p99_us"] <= 20000 and g >= 1000 and r["_lost_any"] == 0 and not pairwise
        what = (f"{g - 1} one-to-one Sends per round" if pairwise
                else f"one group Send per round to {g - 1} devices")
        sendok = "" if pairwise else f'; Send→OK p99 {num(r.get("send_ok_p99_ms", 0))} ms'
        out.append((f"fanout, {g}-device group ({what})", "p99 send→last delivery ≤ 20 ms",
                    f'p50 {num(r["p50_us"] / 1000)} ms, p99 {num(r["p99_us"] / 1000)} ms '
                    f'({int(r.get("complete_rounds", 0))} rounds); every delivery p50 '
                    f'{num(r.get("h2_p50_us", 0) / 1000)} ms, p99 {num(r.get("h2_p99_us", 0) / 1000)} ms'
                    f'{sendok}; lost {r["lost"]}{spread(r)}',
                    cpu(r, " µs per delivery"), verdict(ok)))
    r = load(work, "connect")
    if r:
        ok = r["delivered_per_s"] >= 3000 and r["errors"] == 0
        late = r.get("late_ticks", 0) / r["sent"] * 100 if r.get("sent") else 0
        behind = f'; chatbench started {late:.0f} % of them late' if late >= 1 else ""
        out.append((f'connect, offered {num(r["rate"])}/s', "≥ 3,000 handshakes/s",
                    f'{num(r["delivered_per_s"])} handshakes/s (to the last completion); '
                    f'p99 {num(r["p99_us"] / 1000)} ms; errors {r["errors"]}{behind}{spread(r)}',
                    cpu(r), verdict(ok)))
    r = load(work, "connect-ref")
    if r:
        cap = 1e6 / r["node_cpu_us_per_op"] if r["node_cpu_us_per_op"] else None
        out.append((f'connect, offered {num(r["rate"])}/s', "(reference point)",
                    f'{num(r["delivered_per_s"])} handshakes/s; p99 {num(r["p99_us"] / 1000)} ms; '
                    f'errors {r["errors"]}; one core at this cost: ≈ {num(cap)} handshakes/s'
                    f'{spread(r)}',
                    cpu(r), "-"))
    r = load(work, "idle")
    if r:
        per = r.get("rss_per_conn_bytes", 0)
        n = int(r.get("connections", 0))
        ok = per <= 16384 and n >= 15000
        stretch = "; stretch (8 KiB) met" if ok and per <= 8192 else ""
        out.append((f"idle, {n:,} connections", "≤ 16 KiB RSS per connection (stretch 8 KiB)",
                    f'{num(per / 1024)} KiB per connection (VmRSS {num(r.get("rss_before_kib", 0) / 1024)}'
                    f' → {num(r.get("rss_after_kib", 0) / 1024)} MiB){stretch}',
                    cpu(r), verdict(ok)))
    r = load(work, "drain")
    if r:
        ok = r.get("drain_per_s", 0) >= 200000 and r["_lost_any"] == 0
        out.append((f'drain, {r["sent_ok"]:,} queued', "≥ 200,000 msg/s on reconnect",
                    f'{num(r.get("drain_per_s"))} msg/s (enqueue {num(r.get("enqueue_per_s"))} msg/s); '
                    f'lost {r["lost"]}{spread(r)}',
                    cpu(r), verdict(ok)))
    return out


def peer_rows(work):
    out = []
    for rate in ("cmp", "50k", "80k"):
        c = load(work, "relay-" + rate)
        p = load(work, "peer-mqtt-" + rate)
        if not c or not p:
            continue
        ratio = c["delivered_per_s"] / p["delivered_per_s"] if p["delivered_per_s"] else 0
        cpu_ratio = (p["node_cpu_us_per_op"] / c["node_cpu_us_per_op"]) if c["node_cpu_us_per_op"] else 0
        out.append((num(c["rate"]), f'{num(c["delivered_per_s"])} / {num(p["delivered_per_s"])}',
                    f'{ratio:.2f}', f'{num(c["p99_us"] / 1000)} / {num(p["p99_us"] / 1000)} ms',
                    f'{num(c["node_cpu_us_per_op"])} / {num(p["node_cpu_us_per_op"])} µs',
                    f'{cpu_ratio:.2f}'))
    return out


def render(work, machine, commit):
    loads = [load(work, n) for n in ("relay-88k", "relay-80k", "relay-50k", "relay-cmp", "fanout",
                                     "connect", "connect-ref", "idle", "drain", "peer-mqtt-cmp",
                                     "peer-mqtt-50k", "peer-mqtt-80k")]
    la = [x["loadavg"] for x in loads if x and x.get("loadavg")]
    lines = [BEGIN,
             f"Generated by `make bench` on {datetime.date.today().isoformat()}, "
             f"commit {commit}; {machine}. "
             f"1-minute load average at the start of the runs: "
             f"{', '.join(f'{v:.1f}' for v in la) or 'n/a'}.",
             "",
             "| scenario | target | measured | node CPU per op (by thread: I/O loop, store writer, RocksDB flush and compaction) | verdict |",
             "|---|---|---|---|---|"]
    for row in rows(work):
        lines.append("| " + " | ".join(row) + " |")
    pr = peer_rows(work)
    if pr:
        lines += ["",
                  "Side by side, same pairs, payload size and offered rate; mosquitto 2.0.11, "
                  "MQTT 3.1.1 QoS 1 over TLS 1.3, in-memory (chatnode: every message durable "
                  "in RocksDB before its OK):",
                  "",
                  "| offered msg/s | delivered/s chatnode / mosquitto | ratio | p99 chatnode / mosquitto "
                  "| CPU per message chatnode / mosquitto | CPU ratio (mosquitto / chatnode) |",
                  "|---|---|---|---|---|---|"]
        for row in pr:
            lines.append("| " + " | ".join(row) + " |")
    lines.append(END)
    return "\n".join(lines)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    work, doc, machine, commit = sys.argv[1:]
    text = open(doc).read() if os.path.exists(doc) else ""
    block = render(work, machine, commit)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text += "\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
