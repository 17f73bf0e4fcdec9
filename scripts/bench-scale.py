"""Runner and report of scripts/bench-scale (see there).

run TUPLE SCALE EXPECT PORT LISTEN EXPORTER_PID RUNS HOLDERS
    times the commands alternately inside the namespace (the caller runs it
    with ip netns exec) and prints one JSON line.
report RESULTS.jsonl CORES [OUT.md]
    prints the markdown section, or replaces it in OUT.md.
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import time

BEGIN = "<!-- bench-scale:begin (scripts/bench-scale writes this section) -->"
END = "<!-- bench-scale:end -->"

# (tuple command, anchor, target ratio of medians)
PAIRS = [
    ("tuple ls -ta", "ss -tan", 0.6),
    ("tuple --version", "ss -tan", None),
    ("Go dump floor", "ss -tan", None),
    ("tuple ls -tap", "lsof -nP -iTCP", 0.15),
    ("tuple ls -tap", "ss -tanp", None),
    ("tuple who PORT", "lsof -nP -iTCP:PORT", 0.15),
    ("tuple ports", "ss -tan", 1.0),
    ("exporter scrape", "ss -tan", 0.5),
    ("curl /metrics", "ss -tan", None),
]
# Peak RSS targets (MiB) by scale for these commands.
RSS_TARGETS = {100000: 150, 200000: 250}
RSS_CMDS = ["tuple ports", "exporter scrape"]
MAX_AGE = 1.0  # seconds: exporter.Options.MaxAge, the default the CLI keeps (each scrape checks it)
SLOW = 30.0  # seconds: a command this slow runs once per scale
# ss -tanp pairs every socket with every process's descriptors: quadratic
# (103 s at 40,000 sockets here); above this scale it is not run. lsof, the
# linear anchor of ls -tap, always is.
SS_P_MAX = int(os.environ.get("SS_P_MAX", "40000"))


def tcp_inuse():
    """TCP sockets in use in this namespace (TIME_WAIT excluded)."""
    n = 0
    for name in ("/proc/net/sockstat", "/proc/net/sockstat6"):
        try:
            for line in open(name):
                f = line.split()
                if f and f[0] in ("TCP:", "TCP6:"):
                    n += int(f[f.index("inuse") + 1])
        except FileNotFoundError:
            pass
    return n


def proc_cpu(pid):
    """CPU seconds (user+system) process pid has used so far, dead threads
    included, in the clock ticks /proc/PID/stat counts (10 ms here: a
    scrape at 10k sockets is a few ticks). The threads' own schedstat is
    finer but loses the threads that end, and the exporter's namespace
    work ends its threads."""
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def scrape(listen):
    """One scrape as a scraper sees it: a new connection, GET /metrics, the
    whole body read, the connection closed. Timed in this process, so the
    figure is the exporter's answer, not a client's own start-up (curl's
    added 16-20 ms here up to 100k sockets, more than a whole scrape at
    10k)."""
    host, port = listen.rsplit(":", 1)

    def get():
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or not body:
                sys.exit("bench-scale: scrape answered %d with %d bytes" % (r.status, len(body)))
            # A snapshot served again is at least MAX_AGE old: a timed
            # scrape must have read the table itself.
            for line in body.split(b"\n"):
                if line.startswith(b"tuple_scrape_snapshot_age_seconds "):
                    age = float(line.split()[1])
                    if age >= MAX_AGE:
                        sys.exit("bench-scale: a timed scrape was served a snapshot %.2f s old" % age)
        finally:
            c.close()
    return get


def peak_rss(cmd):
    """The peak resident set (KiB) of one run of cmd, by GNU time(1); None
    when time(1) is missing or the run fails."""
    if not os.path.exists("/usr/bin/time"):
        return None
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss %M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = p.stderr.decode(errors="replace").splitlines()
    if p.returncode != 0 or not lines or not lines[-1].startswith("maxrss "):
        return None
    return int(lines[-1].split()[1])


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def run(args):
    tuple_bin, scale, expect, port, listen, exporter, runs, holders = args
    scale, expect, runs = int(scale), int(expect), int(runs)
    # The exporter's listener is one more socket.
    expect += 1
    cmds = {
        # What every tuple command pays before it reads anything: the
        # floor under the table commands at small scales.
        "tuple --version": [tuple_bin, "--version"],
        # The least any Go listing does (internal/benchtools/dumpfloor):
        # start-up and the kernel's walk, nothing decoded or printed.
        "Go dump floor": [os.path.join(os.path.dirname(tuple_bin), "dumpfloor")],
        "tuple ls -ta": [tuple_bin, "ls", "-ta"],
        "ss -tan": ["ss", "-tan"],
        "tuple ls -tap": [tuple_bin, "ls", "-tap"],
        "ss -tanp": ["ss", "-tanp"],
        "lsof -nP -iTCP": ["lsof", "-nP", "-iTCP"],
        "tuple who PORT": [tuple_bin, "who", port],
        "lsof -nP -iTCP:PORT": ["lsof", "-nP", "-iTCP:" + port],
        "tuple ports": [tuple_bin, "ports"],
        "exporter scrape": scrape(listen),
        # The same scrape by a curl process, start-up included: for
        # comparison with runs before 2026-12-01 06:00 UTC, which timed this.
        "curl /metrics": ["curl", "-sf", "-o", "/dev/null", "http://%s/metrics" % listen],
    }
    out = {"scale": scale, "sockets": expect, "holders": int(holders), "load_before": loadavg(), "results": {}}
    if scale > SS_P_MAX:
        del cmds["ss -tanp"]
    res = {name: {"wall": [], "cpu": [], "rss_kib": []} for name in cmds}
    names = list(cmds)
    scrapes = ("exporter scrape", "curl /metrics")
    last_scrape = 0.0
    for r in range(runs):
        # Alternate: every command once per round, the order rotated.
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if r > 0 and res[name]["wall"] and res[name]["wall"][0] > SLOW:
                continue
            before = tcp_inuse()
            if before != expect:
                sys.exit("bench-scale: %d TCP sockets before %s, want %d" % (before, name, expect))
            if name in scrapes:
                # The exporter answers from its last snapshot for up to a
                # second (exporter.Options.MaxAge): every timed scrape must
                # read anew.
                time.sleep(max(0.0, last_scrape + MAX_AGE + 0.1 - time.perf_counter()))
            served0 = proc_cpu(exporter)
            t0 = time.perf_counter()
            if callable(cmds[name]):
                cmds[name]()
                wall, ru = time.perf_counter() - t0, None
            else:
                p = subprocess.Popen(cmds[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                _, status, ru = os.wait4(p.pid, 0)
                wall = time.perf_counter() - t0
                err = p.stderr.read().decode(errors="replace")
                p.stderr.close()
                p.returncode = os.waitstatus_to_exitcode(status)
                if p.returncode != 0:
                    sys.exit("bench-scale: %s exited %d: %s" % (name, p.returncode, err.strip()))
            # The command's own connection (curl's or the harness's to the
            # exporter) may
            # take a moment to close on the server's side.
            after = tcp_inuse()
            for _ in range(30):
                if after == expect:
                    break
                time.sleep(0.1)
                after = tcp_inuse()
            if after != expect:
                sys.exit("bench-scale: %d TCP sockets after %s, want %d" % (after, name, expect))
            res[name]["wall"].append(wall)
            if name in scrapes:
                last_scrape = time.perf_counter()
                # The exporter's work, not the client's; its memory is
                # read once, below.
                res[name]["cpu"].append(proc_cpu(exporter) - served0)
            else:
                res[name]["cpu"].append(ru.ru_utime + ru.ru_stime)
                res[name]["rss_kib"].append(ru.ru_maxrss)
    # A child's ru_maxrss from wait4 is at least the forking process's
    # resident set (Linux keeps the larger of the old and new image's at
    # exec): this harness's, about 21 MiB. Each command's own peak is read
    # in one more, untimed run under time(1), which forks it from a small
    # process.
    for name in names:
        if name in scrapes or callable(cmds[name]) or med(res[name]["wall"]) > SLOW:
            continue
        rss = peak_rss(cmds[name])
        if rss is not None:
            res[name]["rss_kib"] = [rss]
    # The scrape's memory is the exporter's peak.
    for line in open("/proc/%s/status" % exporter):
        if line.startswith("VmHWM:"):
            res["exporter scrape"]["rss_kib"] = res["curl /metrics"]["rss_kib"] = [int(line.split()[1])]
    out["results"] = res
    out["load_after"] = loadavg()
    print(json.dumps(out))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fit(points):
    """Least-squares line through (sockets, seconds): (seconds per socket, fixed seconds)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def per_socket(rows):
    """The medians of every scale split by a straight line into a cost per
    socket and a fixed cost (start-up, the walk of empty hash buckets): the
    targets' ratios at small scales are set by the fixed costs, at large
    ones by the cost per socket."""
    if len(rows) < 3:
        return []
    lines = ["", "### Cost per socket and fixed cost (a straight line through the medians of all %d scales)" % len(rows), "",
             "The line's slope is what each further socket costs, its value at zero sockets the fixed cost every run "
             "pays whatever the table (tuple's is mostly its start-up, `tuple --version` above). The per-socket ratio "
             "is tuple's slope / the anchor's: what the ratio of medians tends to as the table grows. A straight line is a "
             "simplification (a larger table also costs more per socket, in caches and in the collector), so the fixed "
             "costs are estimates, and a noisy scale moves them.", "",
             "| command | anchor | µs per socket | anchor's µs per socket | per-socket ratio | fixed (ms) | anchor's fixed (ms) | target |",
             "|---|---|---|---|---|---|---|---|"]
    for t, a, target in PAIRS:
        if target is None:
            continue
        pts = {name: [(r["sockets"], med(r["results"][name]["wall"])) for r in rows if r["results"].get(name, {}).get("wall")]
               for name in (t, a)}
        if len(pts[t]) < 3 or len(pts[a]) < 3:
            continue
        (ts, tf), (as_, af) = fit(pts[t]), fit(pts[a])
        lines.append("| `%s` | `%s` | %.2f | %.2f | %.2fx | %.0f | %.0f | <= %.2fx |" % (
            t, a, ts * 1e6, as_ * 1e6, ts / as_, tf * 1e3, af * 1e3, target))
    return lines


def report(args):
    path, cores = args[0], args[1]
    dest = args[2] if len(args) > 2 else None
    rows = [json.loads(l) for l in open(path) if l.strip()]
    lines = [BEGIN, "", "## Table commands at scale (`scripts/bench-scale`)", ""]
    lines.append(
        "One run of `scripts/bench-scale`: loopback connections held by several holder processes (keepalive off) "
        "in a throwaway namespace; every command run alternately with the others, medians of the runs, the TCP socket "
        "count checked before and after every timing. Ratio = tuple's median / the anchor's median in the same run "
        "(lower is better). Peak RSS is the command's maximum resident set, from one more untimed run under time(1) "
        "(the exporter's VmHWM over all its scrapes at that scale; runs before 2026-12-02 07:00 UTC took it from the "
        "timed runs' wait4, which never showed less than the harness's own 21 MiB). A scrape is an HTTP GET timed by this script (a new connection, the whole body read, "
        "made after the exporter's one-second snapshot reuse has passed), its CPU the exporter's; `curl /metrics` is "
        "the same scrape by a curl process, curl's start-up included, as runs before 2026-12-01 06:00 UTC timed it. "
        "`tuple --version` is the start-up every tuple command pays (tuple built static, `CGO_ENABLED=0`, as the README recommends). "
        "`Go dump floor` (internal/benchtools/dumpfloor) is the least a Go program listing the table can do: the same "
        "dump as `tuple ls -ta`, every reply received and counted, nothing decoded or printed; its ratio to `ss -tan` "
        "is the floor under `tuple ls -ta`'s at that scale (the Go runtime's start-up and the kernel's walk of its "
        "hash tables). "
        "%s cores, shared: the load average is given per scale. Run of %s, kernel %s."
        % (cores, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().release)
    )
    for row in rows:
        res = row["results"]
        lines += ["", "### %d sockets (%d holders; load %s before, %s after)" % (
            row["sockets"], row["holders"], " ".join(row["load_before"]), " ".join(row["load_after"])), ""]
        lines.append("| command | runs | median wall (s) | CPU (s) | peak RSS (MiB) | vs anchor | target | met |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, r in res.items():
            lines.append("| `%s` | %d | %.3f | %.3f | %.1f | | | |" % (
                name, len(r["wall"]), med(r["wall"]), med(r["cpu"]), max(r["rss_kib"] or [0]) / 1024))
        for t, a, target in PAIRS:
            if not res.get(a, {}).get("wall") or not res.get(t, {}).get("wall"):
                continue  # an anchor not run at this scale
            ratio = med(res[t]["wall"]) / med(res[a]["wall"])
            cpu = med(res[t]["cpu"]) / med(res[a]["cpu"]) if med(res[a]["cpu"]) > 0 else float("nan")
            met = "" if target is None else ("yes" if ratio <= target else "**no**")
            lines.append("| `%s` vs `%s` | | | | | %.2fx wall, %.2fx CPU | %s | %s |" % (
                t, a, ratio, cpu, "<= %.2fx" % target if target else "", met))
        for name in RSS_CMDS:
            limit = RSS_TARGETS.get(row["scale"])
            if limit:
                rss = max(res[name]["rss_kib"] or [0]) / 1024
                lines.append("| `%s` peak RSS | | | | %.1f | | <= %d MiB | %s |" % (
                    name, rss, limit, "yes" if rss <= limit else "**no**"))
    by = {r["scale"]: r for r in rows}
    if 40000 in by and 200000 in by:
        lines += ["", "### Growth: time at 200k sockets / time at 40k (target <= 5.5)", "",
                  "| command | 40k (s) | 200k (s) | ratio | met |", "|---|---|---|---|---|"]
        for name in by[40000]["results"]:
            if name not in by[200000]["results"]:
                continue
            a, b = med(by[40000]["results"][name]["wall"]), med(by[200000]["results"][name]["wall"])
            met = ("yes" if b / a <= 5.5 else "**no**") if name.startswith(("tuple ", "exporter")) and name != "tuple --version" else ""
            lines.append("| `%s` | %.3f | %.3f | %.2f | %s |" % (name, a, b, b / a, met))
    lines += per_socket(rows)
    lines += ["", END]
    text = "\n".join(lines) + "\n"
    if not dest:
        sys.stdout.write(text)
        return
    old = open(dest).read() if os.path.exists(dest) else "# Benchmarks\n\nFigures from the scripts in `scripts/`, each in its own section.\n\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    open(dest, "w").write(new)
    sys.stdout.write(text)


if __name__ == "__main__":
    {"run": run, "report": report}[sys.argv[1]](sys.argv[2:])
