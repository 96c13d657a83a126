#!/usr/bin/env python3
"""Measurement driver for bench/run.sh (which starts and stops the servers).

Reads the ports and pids of the running targets from the environment, runs
redis-benchmark against each target, samples CPU and backend connections,
measures idle-connection memory, and prints / writes the markdown report.
Standard library only.
"""
import datetime
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

# ------------------------------------------------------------------ settings

ENV = os.environ
QUICK = ENV.get("BENCH_QUICK", "0") == "1"


def knob(name, full, quick):
    v = ENV.get(name)
    return int(v) if v else (quick if QUICK else full)


REPEATS = knob("BENCH_REPEATS", 5, 1)
N_P1 = knob("BENCH_N_P1", 200_000, 15_000)
N_P16 = knob("BENCH_N_P16", 1_400_000, 60_000)
N_16K = knob("BENCH_N_16K", 100_000, 5_000)
N_C1 = knob("BENCH_N_C1", 20_000, 3_000)
KEYSPACE = knob("BENCH_KEYSPACE", 100_000, 100_000)
KEYSPACE_16K = knob("BENCH_KEYSPACE_16K", 10_000, 10_000)
CLIENTS = knob("BENCH_CLIENTS", 50, 50)
IDLE_CONNS = knob("BENCH_IDLE_CONNS", 1000, 1000)
BUDGET_S = knob("BENCH_BUDGET_SECS", 1200, 300)   # stop starting repetitions past this
RUN_TIMEOUT_S = 120                              # one redis-benchmark invocation

WORK = ENV["BENCH_WORK"]
REPO = ENV["BENCH_REPO"]
BIN = ENV["BENCH_BIN"]
REDIS_PORT = int(ENV["REDIS_PORT"])
REDIS_PID = int(ENV["REDIS_PID"])

# name, port, pid (None for direct), sealed (writes db 1 through respseal)
TARGETS = [
    ("direct", REDIS_PORT, None),
    ("respseal", int(ENV["RS_SHARED_PORT"]), int(ENV["RS_SHARED_PID"])),
    ("respseal-dedicated", int(ENV["RS_DED_PORT"]), int(ENV["RS_DED_PID"])),
    ("twemproxy", int(ENV["TW_PORT"]), int(ENV["TW_PID"])),
    ("haproxy", int(ENV["HAP_PORT"]), int(ENV["HAP_PID"])),
]
if ENV.get("RS_1T_PORT"):  # BENCH_THREADS1=1: shared mode on one worker thread, db 1
    TARGETS.insert(3, ("respseal-1t", int(ENV["RS_1T_PORT"]), int(ENV["RS_1T_PID"])))
if ENV.get("RS_NOSEAL_PORT"):  # BENCH_NOSEAL=1: respseal without seal rules, db 2
    TARGETS.insert(3, ("respseal-noseal", int(ENV["RS_NOSEAL_PORT"]), int(ENV["RS_NOSEAL_PID"])))
PORT = {t[0]: t[1] for t in TARGETS}
PID = {t[0]: t[2] for t in TARGETS}
PROXIES = [t[0] for t in TARGETS if t[2] is not None]
RESPSEALS = ["respseal", "respseal-dedicated"] + (["respseal-1t"] if ENV.get("RS_1T_PORT") else [])
LABEL = {"respseal": "respseal (shared)", "respseal-dedicated": "respseal (dedicated)",
         "respseal-noseal": "respseal (shared, no seal rule)",
         "respseal-1t": "respseal (shared, --threads 1)"}
CLK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()
LOAD0 = open("/proc/loadavg").read().split()[:3]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')} +{time.monotonic() - T0:5.0f}s] {msg}",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------ tiny RESP client

class Resp:
    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"bad reply {line!r}")

    def cmd(self, *args):
        self.sock.sendall(self.encode(*args))
        r = self.read()
        if isinstance(r, RuntimeError):
            raise r
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def info_field(conn, section, field):
    text = conn.cmd("INFO", section).decode()
    m = re.search(rf"^{field}:(\S+)", text, re.M)
    return m.group(1) if m else None


# ------------------------------------------------------------------ /proc helpers

def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError):
        return None


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ backend connection sampler

SS_RE = re.compile(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)")


def backend_conns_by_pid():
    """{pid: set(local ports)} of established connections to Redis, from ss."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{REDIS_PORT} )"],
        capture_output=True, text=True).stdout
    res = {}
    for m in SS_RE.finditer(out):
        if int(m.group(2)) == REDIS_PORT:
            res.setdefault(int(m.group(3)), set()).add(int(m.group(1)))
    return res


def redis_client_ports(conn):
    text = conn.cmd("CLIENT", "LIST").decode()
    ports = []
    for line in text.splitlines():
        m = re.search(r"\baddr=127\.0\.0\.1:(\d+)", line)
        if m:
            ports.append(int(m.group(1)))
    return ports


def backend_counts(conn):
    """Redis's view (CLIENT LIST) grouped by the owning process (ss)."""
    ports = redis_client_ports(conn)
    owners = backend_conns_by_pid()
    counts = {name: len([p for p in ports if p in owners.get(pid, ())])
              for name, pid in PID.items() if pid}
    return len(ports), counts


class Sampler(threading.Thread):
    """Every 0.5 s: CLIENT LIST on Redis, grouped by proxy process."""

    def __init__(self):
        super().__init__(daemon=True)
        self.conn = Resp(REDIS_PORT)
        self.maxc = {n: 0 for n in PROXIES}
        self.max_total = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            try:
                total, counts = backend_counts(self.conn)
            except Exception as e:  # noqa: BLE001 - keep sampling
                log(f"sampler: {e}")
                continue
            self.max_total = max(self.max_total, total)
            for n, c in counts.items():
                self.maxc[n] = max(self.maxc[n], c)


# ------------------------------------------------------------------ redis-benchmark

CURRENT = {"proc": None}
BASELINE = {"busy": 0.0}
CSV_COLS = ("test", "rps", "p50_latency_ms", "p99_latency_ms", "avg_latency_ms")


def redis_benchmark(target, test, n, pipeline, size, clients, keyspace, admin):
    """One redis-benchmark invocation (one test). Returns a result dict or None."""
    port, ppid = PORT[target], PID[target]
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
            "-d", str(size), "-c", str(clients), "-r", str(keyspace), "-n", str(n),
            "-P", str(pipeline), "--csv"]
    conns0 = int(info_field(admin, "stats", "total_connections_received"))
    r0, p0, m0 = cpu_ticks(REDIS_PID), cpu_ticks(ppid) if ppid else None, machine_busy()
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    CURRENT["proc"] = proc
    timer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
    timer.daemon = True
    timer.start()
    _, status, ru = os.wait4(proc.pid, 0)
    timer.cancel()
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    CURRENT["proc"] = None
    r1, p1, m1 = cpu_ticks(REDIS_PID), cpu_ticks(ppid) if ppid else None, machine_busy()
    conns1 = int(info_field(admin, "stats", "total_connections_received"))
    out = proc.stdout.read().decode(errors="replace")
    err = proc.stderr.read().decode(errors="replace")
    errlines = [l for l in err.splitlines() if l.strip() and "Could not fetch server CONFIG" not in l]
    rows = {}
    lines = [l for l in out.splitlines() if l.startswith('"')]
    if lines:
        header = [h.strip('"') for h in lines[0].split(",")]
        if not all(c in header for c in CSV_COLS):
            raise SystemExit(f"redis-benchmark --csv columns changed: {header}")
        for l in lines[1:]:
            vals = [v.strip('"') for v in l.split(",")]
            rows[vals[0]] = dict(zip(header, vals))
    row = rows.get(test.upper())
    if proc.returncode != 0 or row is None:
        log(f"  {target} {test} FAILED rc={proc.returncode} {' | '.join(errlines[:3])}")
        return None
    bench_cpu = ru.ru_utime + ru.ru_stime
    red = (r1 - r0) / CLK if r0 is not None and r1 is not None else None
    prx = (p1 - p0) / CLK if p0 is not None and p1 is not None else None
    tot = (m1 - m0) / CLK
    other = tot - bench_cpu - (red or 0) - (prx or 0)
    res = {
        "rps": float(row["rps"]),
        "p50": float(row["p50_latency_ms"]),
        "p99": float(row["p99_latency_ms"]),
        "avg": float(row["avg_latency_ms"]),
        "wall": wall,
        "cpu_redis": 100 * red / wall if red is not None else None,
        "cpu_proxy": 100 * prx / wall if prx is not None else None,
        "cpu_bench": 100 * bench_cpu / wall,
        "cpu_other": 100 * max(other, 0) / wall,
        "conns_opened": conns1 - conns0,
        "proxy_us": 1e6 * prx / n if prx is not None else None,   # proxy CPU per request
        "rtt_us": 1e6 * clients / float(row["rps"]),              # mean round trip per client
        "warnings": errlines,
    }
    return res


# ------------------------------------------------------------------ key warm-up and sanity

def key(i):
    return "key:%012d" % i


def fill(port, nkeys, size, batch=500):
    """SET key:000000000000 .. key:<nkeys-1> to 'x'*size, pipelined."""
    c = Resp(port, timeout=60)
    val = b"x" * size
    for start in range(0, nkeys, batch):
        end = min(start + batch, nkeys)
        c.sock.sendall(b"".join(Resp.encode("SET", key(i), val) for i in range(start, end)))
        for _ in range(start, end):
            r = c.read()
            if r != "OK":
                raise SystemExit(f"warm-up SET through port {port} failed: {r!r}")
    c.close()


def sanity(size):
    """Values read through each target are the plaintext; db 1 holds sealed values."""
    plain = b"x" * size
    for name, port, _ in TARGETS:
        c = Resp(port)
        got = c.cmd("GET", key(1))
        c.close()
        if got != plain:
            raise SystemExit(f"sanity: GET {key(1)} through {name} returned "
                             f"{(got or b'')[:40]!r}... ({len(got or b'')} bytes), expected plaintext")
    c = Resp(REDIS_PORT)
    c.cmd("SELECT", 1)
    raw = c.cmd("GET", key(1))
    n1 = c.cmd("DBSIZE")
    c.cmd("SELECT", 0)
    n0 = c.cmd("DBSIZE")
    c.close()
    if raw is None or raw == plain or b"xxxxxxxxxxxxxxxx" in raw:
        raise SystemExit("sanity: value in Redis db 1 is not sealed - respseal is not sealing key:*")
    return {"db0_keys": n0, "db1_keys": n1, "sealed_len": len(raw), "plain_len": size}


# ------------------------------------------------------------------ idle connection memory

def idle_memory(target, admin):
    pid = PID[target]
    time.sleep(0.5)
    total0, counts0 = backend_counts(admin)
    before = rss_kib(pid)
    socks = []
    try:
        for _ in range(IDLE_CONNS):
            s = socket.create_connection(("127.0.0.1", PORT[target]), timeout=10)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            if buf != b"+PONG\r\n":
                raise RuntimeError(f"PING through {target}: {buf!r}")
            socks.append(s)
        time.sleep(1.0)
        during = rss_kib(pid)
        total1, counts1 = backend_counts(admin)
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    after_close = rss_kib(pid)
    total2, counts2 = backend_counts(admin)
    return {
        "before": before, "during": during, "after_close": after_close,
        "per_conn": (during - before) / IDLE_CONNS,
        "redis_clients_before": total0, "redis_clients_during": total1,
        "own_backend_before": counts0[target], "own_backend_during": counts1[target],
        "own_backend_after": counts2[target],
    }


# ------------------------------------------------------------------ formatting

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def formatter(spec, suffix=""):
    """A formatter for an optional number: `spec` applied, or "n/a" for None."""
    return lambda v: "n/a" if v is None else format(v, spec) + suffix


fk = formatter(",.0f")
fx = formatter(".2f", "x")
fms = formatter(".3f")
fpct = formatter(".0f", "%")
fus = formatter(".0f")
fdiff = formatter("+.0f")
fdiff1 = formatter("+.1f")
f1 = formatter(".1f")


def ratio(a, b):
    return a / b if a is not None and b else None


def check(label, value, op, limit, unit=""):
    if value is None:
        verdict = "n/a"
    else:
        ok = value >= limit if op == ">=" else value <= limit
        verdict = "PASS" if ok else "MISS"
    v = "n/a" if value is None else (f"{value:.2f}{unit}" if unit != " us" else f"{value:.0f}{unit}")
    return f"| {label} | {v} | {op} {limit}{unit} | **{verdict}** |"


# ------------------------------------------------------------------ main

def main():
    def on_term(*_):
        if CURRENT["proc"]:
            CURRENT["proc"].kill()
        os._exit(143)
    signal.signal(signal.SIGTERM, on_term)
    admin = Resp(REDIS_PORT)
    b0 = machine_busy()
    time.sleep(3)
    BASELINE["busy"] = 100 * (machine_busy() - b0) / CLK / 3
    log(f"machine busy before the run (other processes): {BASELINE['busy']:.0f}% of one core")
    log(f"settings: repeats={REPEATS} N(P1)={N_P1} N(P16)={N_P16} N(16K)={N_16K} "
        f"N(c1)={N_C1} keyspace={KEYSPACE} clients={CLIENTS}{' QUICK' if QUICK else ''}")

    # 1. idle-connection memory on fresh processes
    mem_fresh = {}
    for t in PROXIES:
        mem_fresh[t] = idle_memory(t, admin)
        m = mem_fresh[t]
        log(f"idle memory {t}: {m['before']} -> {m['during']} KiB "
            f"({m['per_conn']:.1f} KiB/conn), own backend conns {m['own_backend_during']}")

    # 2. warm-up: every key of the keyspace exists (plaintext in db 0, sealed in db 1)
    log(f"warm-up: SET {KEYSPACE} x 1 KiB keys direct (db 0) and through respseal (db 1)")
    fill(REDIS_PORT, KEYSPACE, 1024)
    fill(PORT["respseal"], KEYSPACE, 1024)
    if "respseal-noseal" in PORT:
        fill(PORT["respseal-noseal"], KEYSPACE, 1024)
    san = sanity(1024)
    log(f"sanity: db0 {san['db0_keys']} keys, db1 {san['db1_keys']} keys, "
        f"sealed value {san['sealed_len']} bytes for {san['plain_len']} plaintext")

    sampler = Sampler()
    sampler.start()

    # 3. main repetitions: per repetition, each section, targets in rotated order
    sections = [("P1", 1, N_P1, CLIENTS), ("P16", 16, N_P16, CLIENTS), ("C1", 1, N_C1, 1)]
    raw = []  # (rep, section, target, test, result)
    names = [t[0] for t in TARGETS]
    rep_times = []
    reps_done = 0
    dead = set()
    for rep in range(REPEATS):
        # keep ~20% of the budget for the 16 KiB section
        if rep_times and time.monotonic() - T0 + max(rep_times) > 0.8 * BUDGET_S:
            log(f"time budget: stopping after {rep} repetitions")
            break
        t_rep = time.monotonic()
        order = names[rep % len(names):] + names[:rep % len(names)]
        for sec, pl, n, clients in sections:
            for t in order:
                if PID[t] and not alive(PID[t]):
                    if t not in dead:
                        log(f"{t} (pid {PID[t]}) is not running any more; skipping it")
                    dead.add(t)
                    continue
                for test in ("set", "get"):
                    r = redis_benchmark(t, test, n, pl, 1024, clients, KEYSPACE, admin)
                    raw.append((rep, sec, t, test, r))
                    if r:
                        log(f"rep {rep + 1} {sec:>3} {t:<18} {test.upper()} {r['rps']:>10,.0f} rps "
                            f"p50 {r['p50']:.3f} p99 {r['p99']:.3f} ms ({r['wall']:.1f}s) "
                            f"cpu redis {fpct(r['cpu_redis'])} proxy {fpct(r['cpu_proxy'])} "
                            f"bench {fpct(r['cpu_bench'])} other {fpct(r['cpu_other'])}")
        rep_times.append(time.monotonic() - t_rep)
        reps_done += 1

    # 4. 16 KiB values
    t16 = [t for t in ("direct", "respseal", "respseal-noseal", "twemproxy", "haproxy") if t in PORT]
    log(f"warm-up: SET {KEYSPACE_16K} x 16 KiB keys direct and through respseal")
    fill(REDIS_PORT, KEYSPACE_16K, 16384, batch=100)
    fill(PORT["respseal"], KEYSPACE_16K, 16384, batch=100)
    if "respseal-noseal" in PORT:
        fill(PORT["respseal-noseal"], KEYSPACE_16K, 16384, batch=100)
    sanity(16384)
    reps16 = 0
    budget16 = None
    for rep in range(REPEATS):
        if budget16 and time.monotonic() - T0 + budget16 > BUDGET_S:
            log(f"time budget: 16 KiB stopping after {rep} repetitions")
            break
        t_rep = time.monotonic()
        order = t16[rep % len(t16):] + t16[:rep % len(t16)]
        for t in order:
            if t in dead or (PID[t] and not alive(PID[t])):
                continue
            for test in ("set", "get"):
                r = redis_benchmark(t, test, N_16K, 1, 16384, CLIENTS, KEYSPACE_16K, admin)
                raw.append((rep, "16K", t, test, r))
                if r:
                    log(f"rep {rep + 1} 16K {t:<18} {test.upper()} {r['rps']:>10,.0f} rps "
                        f"p50 {r['p50']:.3f} p99 {r['p99']:.3f} ms ({r['wall']:.1f}s) "
                        f"cpu redis {fpct(r['cpu_redis'])} proxy {fpct(r['cpu_proxy'])} "
                        f"bench {fpct(r['cpu_bench'])}")
        budget16 = time.monotonic() - t_rep
        reps16 += 1

    sampler.stop.set()
    sampler.join(timeout=5)

    # 5. idle memory again, after load (allocator has grown and may reuse memory)
    mem_loaded = {}
    for t in PROXIES:
        if t in dead or not alive(PID[t]):
            continue
        mem_loaded[t] = idle_memory(t, admin)

    report(raw, reps_done, reps16, mem_fresh, mem_loaded, sampler, san, dead)


def report(raw, reps_done, reps16, mem_fresh, mem_loaded, sampler, san, dead):
    def agg(sec, t, test, field):
        return med([r[field] for (_, s, tt, te, r) in raw if s == sec and tt == t and te == test and r])

    names = [t[0] for t in TARGETS]
    L = []
    A = L.append
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    A(f"# respseal benchmark results ({now})")
    A("")
    A(f"Medians of {reps_done} repetition(s) (16 KiB: {reps16}); targets interleaved within each "
      f"repetition, order rotated between repetitions. redis-benchmark, {CLIENTS} clients, "
      f"1 KiB values, {KEYSPACE:,} random keys (`-r {KEYSPACE}`), all keys pre-populated. "
      f"N = {N_P1:,} requests per test at -P 1, {N_P16:,} at -P 16. Latency in ms.")
    if QUICK:
        A("")
        A("**BENCH_QUICK=1: smoke run, the numbers are not meaningful.**")
    if dead:
        A("")
        A(f"**Died during the run: {', '.join(sorted(dead))}** (see its log).")
    A("")
    A("## Throughput, 1 KiB values, 50 clients")
    A("")
    A("| target | SET rps P1 | GET rps P1 | SET rps P16 | GET rps P16 | p50/p99 P1 SET | p50/p99 P1 GET | p50/p99 P16 SET | p50/p99 P16 GET |")
    A("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in names:
        cells = [fk(agg(s, t, te, "rps")) for s in ("P1", "P16") for te in ("set", "get")]
        lat = [f"{fms(agg(s, t, te, 'p50'))} / {fms(agg(s, t, te, 'p99'))}"
               for s in ("P1", "P16") for te in ("set", "get")]
        A(f"| {LABEL.get(t, t)} | " + " | ".join(cells + lat) + " |")
    for rs in RESPSEALS:
        for base in ("direct", "twemproxy", "haproxy"):
            cells = [fx(ratio(agg(s, rs, te, "rps"), agg(s, base, te, "rps")))
                     for s in ("P1", "P16") for te in ("set", "get")]
            lat = [fx(ratio(agg(s, rs, te, "p50"), agg(s, base, te, "p50")))
                   for s in ("P1", "P16") for te in ("set", "get")]
            A(f"| *{LABEL[rs]} / {base}* | " + " | ".join(cells) + " | "
              + " | ".join(f"p50 {x}" for x in lat) + " |")

    # 16 KiB
    A("")
    A(f"## 16 KiB values, -P 1, {CLIENTS} clients ({KEYSPACE_16K:,} keys, N = {N_16K:,})")
    A("")
    A("| target | SET rps | GET rps | p50/p99 SET | p50/p99 GET |")
    A("|---|---:|---:|---:|---:|")
    for t in [t for t in ("direct", "respseal", "respseal-noseal", "twemproxy", "haproxy") if t in PORT]:
        A(f"| {LABEL.get(t, t)} | {fk(agg('16K', t, 'set', 'rps'))} | {fk(agg('16K', t, 'get', 'rps'))} | "
          f"{fms(agg('16K', t, 'set', 'p50'))} / {fms(agg('16K', t, 'set', 'p99'))} | "
          f"{fms(agg('16K', t, 'get', 'p50'))} / {fms(agg('16K', t, 'get', 'p99'))} |")
    for base in ("direct", "twemproxy", "haproxy"):
        A(f"| *respseal / {base}* | {fx(ratio(agg('16K', 'respseal', 'set', 'rps'), agg('16K', base, 'set', 'rps')))} | "
          f"{fx(ratio(agg('16K', 'respseal', 'get', 'rps'), agg('16K', base, 'get', 'rps')))} | | |")

    # one client latency
    A("")
    A(f"## One client, depth 1 (`-c 1 -P 1`, 1 KiB, N = {N_C1:,}), latency in microseconds (us)")
    A("")
    A("| target | SET p50 | GET p50 | SET p99 | GET p99 | SET mean | GET mean | added p50 SET / GET | added mean SET / GET |")
    A("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def us(v):
        return None if v is None else v * 1000

    def diff(a, b):
        return a - b if a is not None and b is not None else None
    added, added_mean = {}, {}
    for t in names:
        p50 = {te: us(agg("C1", t, te, "p50")) for te in ("set", "get")}
        d50 = {te: us(agg("C1", "direct", te, "p50")) for te in ("set", "get")}
        mean = {te: agg("C1", t, te, "rtt_us") for te in ("set", "get")}
        dmean = {te: agg("C1", "direct", te, "rtt_us") for te in ("set", "get")}
        added[t] = (diff(p50["set"], d50["set"]), diff(p50["get"], d50["get"]))
        A(f"| {LABEL.get(t, t)} | {fus(p50['set'])} | {fus(p50['get'])} | "
          f"{fus(us(agg('C1', t, 'set', 'p99')))} | {fus(us(agg('C1', t, 'get', 'p99')))} | "
          f"{f1(mean['set'])} | {f1(mean['get'])} | "
          + ("— | —" if t == "direct" else
             f"{fdiff(added[t][0])} / {fdiff(added[t][1])} | "
             f"{fdiff1(diff(mean['set'], dmean['set']))} / {fdiff1(diff(mean['get'], dmean['get']))}") + " |")
        added_mean[t] = (diff(mean["set"], dmean["set"]), diff(mean["get"], dmean["get"]))
    A("")
    A("p50/p99 come from redis-benchmark's histogram, whose buckets are 8 us wide at this "
      "range: read p50 differences as +-8 us. `mean` = 1/rps, the exact mean round trip "
      "seen by the one client (including the client's own time); `added mean` is the most "
      "precise figure for the latency respseal adds.")

    # memory
    A("")
    A(f"## Memory: {IDLE_CONNS:,} idle client connections (each sent one PING), VmRSS of the proxy")
    A("")
    A("| proxy | when | RSS before KiB | RSS with idle conns KiB | per connection KiB | RSS after close KiB | Redis clients (CLIENT LIST) with idle conns open | this proxy's backend conns: before / open / after close |")
    A("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, mem in (("fresh", mem_fresh), ("after load", mem_loaded)):
        for t in PROXIES:
            m = mem.get(t)
            if not m:
                continue
            A(f"| {LABEL.get(t, t)} | {label} | {m['before']:,} | {m['during']:,} | {m['per_conn']:.1f} | "
              f"{m['after_close']:,} | {m['redis_clients_during']:,} | "
              f"{m['own_backend_before']} / {m['own_backend_during']} / {m['own_backend_after']} |")
    A("")
    A("Redis-side cost of a backend connection (dedicated mode, haproxy) is not included "
      "in the proxy's RSS.")

    # backend connections
    A("")
    A("## Backend connections to Redis during the throughput runs")
    A("")
    A("| target | max concurrent (CLIENT LIST, sampled every 0.5 s) | new backend conns per redis-benchmark run (median; 50 clients + 1 CONFIG probe) | new backend conns during all runs |")
    A("|---|---:|---:|---:|")
    for t in names:
        opened = [r["conns_opened"] for (_, s, tt, _, r) in raw if tt == t and r]
        mc = "—" if t == "direct" else str(sampler.maxc.get(t, 0))
        A(f"| {LABEL.get(t, t)} | {mc} | {fk(med(opened))} | {sum(opened):,} |")

    # CPU
    A("")
    A("## CPU during the runs (% of one core, median; the machine has "
      f"{os.cpu_count()} cores shared by all processes)")
    A("")
    A("`other` = everything else on the machine in the same interval (noise from other "
      "processes; includes the kernel's softirq work not charged to a process).")
    A("")
    A("| section | target | test | rps | redis | proxy | redis-benchmark | other | proxy CPU us/request |")
    A("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for sec in ("P1", "P16", "16K", "C1"):
        for t in names:
            for te in ("set", "get"):
                if agg(sec, t, te, "rps") is None:
                    continue
                A(f"| {sec} | {LABEL.get(t, t)} | {te.upper()} | {fk(agg(sec, t, te, 'rps'))} | "
                  f"{fpct(agg(sec, t, te, 'cpu_redis'))} | "
                  f"{'—' if t == 'direct' else fpct(agg(sec, t, te, 'cpu_proxy'))} | "
                  f"{fpct(agg(sec, t, te, 'cpu_bench'))} | {fpct(agg(sec, t, te, 'cpu_other'))} | "
                  f"{'—' if t == 'direct' else (lambda v: 'n/a' if v is None else f'{v:.1f}')(agg(sec, t, te, 'proxy_us'))} |")

    # targets
    A("")
    A("## Targets")
    A("")
    A("| check | value | target | verdict |")
    A("|---|---:|---:|---|")
    for rs in RESPSEALS:
        for te in ("set", "get"):
            A(check(f"{LABEL[rs]} {te.upper()} P1 / direct", ratio(agg("P1", rs, te, "rps"), agg("P1", "direct", te, "rps")), ">=", 0.85, "x"))
            A(check(f"{LABEL[rs]} {te.upper()} P1 / twemproxy", ratio(agg("P1", rs, te, "rps"), agg("P1", "twemproxy", te, "rps")), ">=", 1.0, "x"))
            A(check(f"{LABEL[rs]} {te.upper()} P16 / direct", ratio(agg("P16", rs, te, "rps"), agg("P16", "direct", te, "rps")), ">=", 0.60, "x"))
            A(check(f"{LABEL[rs]} {te.upper()} P16 / twemproxy", ratio(agg("P16", rs, te, "rps"), agg("P16", "twemproxy", te, "rps")), ">=", 1.2, "x"))
        A(check(f"{LABEL[rs]} added p50, 1 client, SET", added[rs][0], "<=", 50, " us"))
        A(check(f"{LABEL[rs]} added p50, 1 client, GET", added[rs][1], "<=", 50, " us"))
        A(check(f"(info) {LABEL[rs]} added mean round trip, 1 client, SET", added_mean[rs][0], "<=", 50, " us"))
        A(check(f"(info) {LABEL[rs]} added mean round trip, 1 client, GET", added_mean[rs][1], "<=", 50, " us"))
        if rs in mem_fresh:
            A(check(f"{LABEL[rs]} memory per idle connection (fresh)", mem_fresh[rs]["per_conn"], "<=", 32, " KiB"))

    # machine
    A("")
    A("## Machine and versions")
    A("")

    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"
    MEM_GIB = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    model = sh("lscpu | grep 'Model name' | sed 's/.*: *//'")
    A(f"- nproc: {sh('nproc')}; CPU: {model}; kernel: {sh('uname -r')}; memory: {MEM_GIB} GiB")
    A(f"- {sh('redis-server --version')}")
    A(f"- {sh('redis-benchmark --version')}")
    A(f"- {sh('nutcracker --version 2>&1 | head -1')}; {sh('haproxy -v | head -1')}")
    dirty = ENV.get("BENCH_DIRTY", "0").strip()
    A(f"- respseal: git commit {ENV.get('BENCH_COMMIT', '?')} ({ENV.get('BENCH_COMMIT_TIME', '?')})"
      + (f" (+{dirty} uncommitted changes under src/ or Cargo files: the binary may not match the commit)"
         if dirty not in ("", "0") else "")
      + f"; binary {ENV.get('BENCH_BIN_ORIG', BIN)} built {ENV.get('BENCH_BIN_MTIME', '?')}, "
      f"sha256 {ENV.get('BENCH_BIN_SHA', '?')} (a copy was run)"
      + ("; **the binary is older than the HEAD commit: it was built from an earlier tree**"
         if ENV.get("BENCH_STALE") == "1" else ""))
    A(f"- load average at the start: {LOAD0}; CPU busy on the idle machine before the run "
      f"(other processes): {BASELINE['busy']:.0f}% of one core over 3 s")
    A(f"- median `other` CPU during the measurements: "
      f"{fpct(med([r['cpu_other'] for (*_, r) in raw if r]))} of one core")
    A(f"- load average at the end: {open('/proc/loadavg').read().split()[:3]}")
    A(f"- sanity: db 0 {san['db0_keys']:,} keys (plain targets), db 1 {san['db1_keys']:,} keys (respseal), "
      f"a 1024-byte value is stored sealed as {san['sealed_len']} bytes")
    A(f"- run: repeats={REPEATS} N_P1={N_P1} N_P16={N_P16} N_16K={N_16K} N_C1={N_C1} "
      f"clients={CLIENTS} keyspace={KEYSPACE}; wall time {time.monotonic() - T0:.0f} s")

    # raw (file only)
    R = ["", "## Raw measurements", "",
         "| rep | section | target | test | rps | p50 | p99 | avg | secs | cpu redis | cpu proxy | cpu bench | cpu other | new backend conns |",
         "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rep, sec, t, te, r in raw:
        if r is None:
            R.append(f"| {rep + 1} | {sec} | {t} | {te.upper()} | FAILED | | | | | | | | | |")
            continue
        R.append(f"| {rep + 1} | {sec} | {t} | {te.upper()} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
                 f"{r['avg']:.3f} | {r['wall']:.1f} | {fpct(r['cpu_redis'])} | {fpct(r['cpu_proxy'])} | "
                 f"{fpct(r['cpu_bench'])} | {fpct(r['cpu_other'])} | {r['conns_opened']} |")

    text = "\n".join(L) + "\n"
    print(text, flush=True)
    out = ENV.get("BENCH_RESULTS") or os.path.join(REPO, "bench", "results-latest.md")
    with open(out, "w") as f:
        f.write(text + "\n".join(R) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
