#!/usr/bin/env python3
"""Helpers of bench/active-active (run by it; not a bench of its own). Every wait is bounded.

  catchup --slot-dsn DSN --slot NAME --lsn LSN --timeout S [--resume-dsn DSN --resume-sql SQL]
          [--samples FILE [--aa-dsn DSN --aa-peer NAME]]
      runs the resume statement (if given), then polls the slot every 20 ms until its
      confirmed_flush_lsn is at or past LSN; prints "active=S confirmed=S" (seconds from the
      resume until the slot's reader connected, and until it confirmed LSN), or confirmed=timeout;
      with --samples, every 0.25 s the slot's lag and (pgvigil) pgvigil_aa.status()'s, as TSV,
      and their maxima
  quiet --timeout S DSN...
      notes each node's WAL position now, then waits until every logical slot on that node is
      confirmed up to it; prints "quiet=S", or "quiet=timeout behind=..." with what is missing
  sample --seconds N --out FILE --slot-dsn DSN --slot NAME [--aa-dsn DSN --aa-peer NAME]
      once a second: bytes of the slot's node's WAL not confirmed by the slot, the slot's reader's
      replay_lag in pg_stat_replication, and (pgvigil) pgvigil_aa.status()'s lag_bytes and
      lag_seconds for the peer, as TSV; then prints median and max of each column
  same-rows --seconds S --keys K --seed N --logdir DIR NODE=DSN...
      aa_workload.py's clients (one thread per node, same rows, logs for aa_audit.py), each
      running operations until S seconds have passed; prints the operations and writes done
  tie-all --tick-file F --logdir DIR NODE=DSN...
      one more step of the stepped workload, a tie on every key: the stopped clock a second on,
      then every node rewrites every row of w in one REPEATABLE READ transaction that took its
      snapshot and locked the rows before any node wrote (so none sees another's: a peer's
      rewrite is applied after the local one commits), all committing at that time;
      appended to DIR/NODE.log as aa_workload.py logs its writes (for aa_audit.py); prints
      "rows=NODE:N,..." or the error of a node whose transaction failed
  diff --out FILE DSN1 DSN2
      compares w's (id, v, n) on both: prints "differ=N only1=N only2=N changed=N rows1=N rows2=N"
  logscan --tool pgvigil|pglogical --offset N FILE
      in FILE from byte N on: apply-worker ERROR lines, apply-worker starts and (pglogical) its
      CONFLICT lines, by kind and resolution, and how many of them were ties
  leader-writer --dsn DSN --log FILE --status FILE [--interval S] [--timeout S]
      step 5's client, an application writing through the proxy's write_leader route: one
      persistent connection that commits one small insert after another (--interval between
      them, default 0.005 s), and on any error closes it and connects again (10 ms later), every
      step under a deadline (--timeout, default 10 s). Logs every commit ("A sent_ns ack_ns node
      id": the node is pgvigil_aa.local_node's name, read in the committing statement), every
      error ("E sent_ns at_ns connect|write message") and every connection made ("C asked_ns
      ready_ns") to --log; keeps in --status the acks so far per node ("node acks last_ack_ns"
      lines, replaced atomically) for the bench's waits. Runs until SIGTERM.
  leader-gap --log FILE --t0 NS --tend NS --old NODE [--logdir DIR]
      the write-unavailability of one event at t0 (the kill, or the switchover command's start)
      in a leader-writer log: the longest gap between two consecutive commits from the last
      commit before t0 to the last one at or before tend (the bench's wait saw the writes flow on
      the new leader then); prints gap_s, where it lies (gap_from_s, gap_to_s, from t0), the first
      commit on another node than --old (first_other_s, new), the last commit on --old after t0
      (last_old_s), when the connection that carried it was asked for and ready (conn_asked_s,
      conn_ready_s), the commits and the errors in the window (by message); with --logdir (the
      agents' nN.log and proxy.log), when the old leader's agent let the lead go (left_s), another
      node's agent took it (took_s) and the proxy's route followed (routed_s), from their logs
  leader-stats V,V,...
      median and max of the numbers among the values (a round not measured is not a number)
  summary RESULTS.TSV
      the side-by-side tables and the targets
  selftest
      feeds the targets' verdicts results that miss each target, results that meet them, and no
      results: exit 0 when every verdict says "NOT met" on the first and the last and "met" on the
      second
"""
import argparse
import collections
import importlib.util
import json
import os
import re
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "..", "tests", "integration", "aa_workload.py")


def connect(dsn):
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    return conn


def one(cur, sql, args=None):
    cur.execute(sql, args)
    return cur.fetchone()


def cmd_catchup(a):
    slot = connect(a.slot_dsn).cursor()
    aa = connect(a.aa_dsn).cursor() if a.aa_dsn else None
    if a.resume_sql:
        connect(a.resume_dsn).cursor().execute(a.resume_sql)
    t0 = time.monotonic()
    active_at = None
    last = None
    next_sample = 0.0
    smax = {"slot": None, "status": None, "status_s": None}
    samples = open(a.samples, "w") if a.samples else None
    if samples:
        samples.write("t\tslot_lag_bytes\tstatus_lag_bytes\tstatus_lag_s\n")

    def keep(k, v):
        if v is not None and (smax[k] is None or v > smax[k]):
            smax[k] = v

    result = None
    while time.monotonic() - t0 < a.timeout:
        row = one(slot, "SELECT active, confirmed_flush_lsn >= %s::pg_lsn, confirmed_flush_lsn::text,"
                        " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
                        " FROM pg_replication_slots WHERE slot_name = %s", (a.lsn, a.slot))
        if row is None:
            sys.exit(f"catchup: no slot {a.slot}")
        now = time.monotonic() - t0
        if row[0] and active_at is None:
            active_at = now
        last = row[2]
        if samples and now >= next_sample:
            # what the operator sees meanwhile: the slot's lag, and pgvigil_aa.status()'s
            st = one(aa, "SELECT lag_bytes, lag_seconds FROM pgvigil_aa.status() WHERE peer = %s",
                     (a.aa_peer,)) if aa else None
            st = st or (None, None)
            samples.write(f"{now:.3f}\t{row[3]}\t{'' if st[0] is None else st[0]}\t{'' if st[1] is None else st[1]}\n")
            keep("slot", row[3])
            keep("status", st[0])
            keep("status_s", st[1])
            next_sample = now + 0.25
        if row[1]:
            result = f"active={active_at if active_at is not None else now:.3f} confirmed={now:.3f} last={last}"
            break
        time.sleep(0.02)
    if result is None:
        result = f"active={'%.3f' % active_at if active_at is not None else 'never'} confirmed=timeout last={last}"
    if samples:
        samples.close()
        result += "".join(f" {k}_lag_max={'-' if v is None else v}" for k, v in
                          (("slot", smax["slot"]), ("status", smax["status"]), ("status_s", smax["status_s"])))
    print(result)


def cmd_quiet(a):
    conns = [connect(d).cursor() for d in a.dsns]
    marks = [one(c, "SELECT pg_current_wal_lsn()::text")[0] for c in conns]
    t0 = time.monotonic()
    behind = []
    while True:
        behind = []
        for i, (c, m) in enumerate(zip(conns, marks)):
            c.execute("SELECT slot_name, pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint FROM pg_replication_slots"
                      " WHERE slot_type = 'logical' AND confirmed_flush_lsn < %s::pg_lsn", (m, m))
            behind += [f"node{i + 1}:{s}:{b}" for s, b in c.fetchall()]
        if not behind:
            print(f"quiet={time.monotonic() - t0:.3f}")
            return
        if time.monotonic() - t0 >= a.timeout:
            print(f"quiet=timeout behind={','.join(behind)}")
            return
        time.sleep(0.1)


def stats_line(name, values):
    v = [x for x in values if x is not None]
    if not v:
        return f"{name}_median=- {name}_max=- {name}_n=0"
    return f"{name}_median={statistics.median(v):.6g} {name}_max={max(v):.6g} {name}_n={len(v)}"


def cmd_sample(a):
    slot = connect(a.slot_dsn).cursor()
    aa = connect(a.aa_dsn).cursor() if a.aa_dsn else None
    cols = collections.defaultdict(list)
    t0 = time.monotonic()
    with open(a.out, "w") as out:
        out.write("t\tslot_lag_bytes\treplay_lag_s\taa_lag_bytes\taa_lag_s\n")
        i = 0
        while i < a.seconds:
            i += 1
            row = one(slot, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,"
                            " extract(epoch FROM r.replay_lag)::float8"
                            " FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid"
                            " WHERE s.slot_name = %s", (a.slot,)) or (None, None)
            arow = (None, None)
            if aa:
                arow = one(aa, "SELECT lag_bytes, lag_seconds FROM pgvigil_aa.status() WHERE peer = %s",
                           (a.aa_peer,)) or (None, None)
            vals = [row[0], row[1], arow[0], arow[1]]
            for k, v in zip(("slot_bytes", "replay_s", "aa_bytes", "aa_s"), vals):
                cols[k].append(None if v is None else float(v))
            out.write(f"{time.monotonic() - t0:.3f}\t" + "\t".join("" if v is None else str(v) for v in vals) + "\n")
            out.flush()
            time.sleep(max(0.0, t0 + i - time.monotonic()))
    print(" ".join(stats_line(k, cols[k]) for k in ("slot_bytes", "replay_s", "aa_bytes", "aa_s")))


def load_workload():
    spec = importlib.util.spec_from_file_location("aa_workload", WORKLOAD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cmd_same_rows(a):
    import psycopg2

    wl = load_workload()
    clients = []
    for n, spec in enumerate(a.nodes):
        node, dsn = spec.split("=", 1)
        clients.append(wl.Client(node, dsn, a.seed * 100 + n, a.keys, a.logdir))
    deadline = time.monotonic() + a.seconds
    ops = {}
    errors = collections.Counter()
    lock = threading.Lock()

    def run(c):
        i = 0
        while time.monotonic() < deadline:
            try:
                c.op(i)
            except psycopg2.Error as e:  # e.g. a deadlock with an applying worker: counted, go on
                c.conn.rollback()
                with lock:
                    errors[f"{c.node}:{type(e).__name__}"] += 1
            i += 1
        ops[c.node] = i

    wl.in_parallel(clients, run)
    for c in clients:
        c.close()
    writes = {}
    for c in clients:
        with open(os.path.join(a.logdir, c.node + ".log")) as f:
            writes[c.node] = sum(1 for _ in f)
    print("ops=" + ",".join(f"{k}:{v}" for k, v in sorted(ops.items())) +
          " writes=" + ",".join(f"{k}:{v}" for k, v in sorted(writes.items())) +
          " client_errors=" + (",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "0"))


def cmd_tie_all(a):
    import datetime

    import psycopg2

    nodes = []
    for spec in a.nodes:
        node, dsn = spec.split("=", 1)
        conn = psycopg2.connect(dsn, connect_timeout=5)
        conn.set_session(isolation_level="REPEATABLE READ")
        nodes.append((node, conn))
    with open(a.tick_file) as f:
        t = datetime.datetime.strptime(f.read().strip(), "%Y-%m-%d %H:%M:%S") + datetime.timedelta(seconds=1)
    with open(a.tick_file + ".new", "w") as f:
        f.write(t.strftime("%Y-%m-%d %H:%M:%S") + "\n")
    os.replace(a.tick_file + ".new", a.tick_file)
    barrier = threading.Barrier(len(nodes))
    done, errors = {}, {}

    def run(node, conn):
        cur = conn.cursor()
        try:
            # the snapshot and the rows locked before any node writes: the peer's rewrite, when
            # it arrives, waits for this transaction's commit (no serialization failure)
            cur.execute("SELECT id, v FROM w ORDER BY id FOR UPDATE")
            old = dict(cur.fetchall())
            barrier.wait(timeout=30)
            cur.execute("UPDATE w SET v = %s || id, n = n + 1 RETURNING id", (f"{node}-all-",))
            rows = [(k, old.get(k)) for (k,) in cur.fetchall()]
            conn.commit()
        except Exception as e:  # reported: that node's step did not happen
            conn.rollback()
            errors[node] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            return
        with open(os.path.join(a.logdir, node + ".log"), "a") as log:
            for k, old in rows:
                log.write(json.dumps({"token": f"{node}-all-{k}", "old": old, "node": node, "seq": -1, "key": k}) + "\n")
        done[node] = len(rows)

    threads = [threading.Thread(target=run, args=n) for n in nodes]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("rows=" + ",".join(f"{k}:{v}" for k, v in sorted(done.items())) +
          ("" if not errors else " errors=" + "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))))


def cmd_diff(a):
    rows = []
    for dsn in (a.dsn1, a.dsn2):
        c = connect(dsn).cursor()
        c.execute("SELECT id, v, n FROM w")
        rows.append({r[0]: (r[1], r[2]) for r in c.fetchall()})
    r1, r2 = rows
    only1 = sorted(set(r1) - set(r2))
    only2 = sorted(set(r2) - set(r1))
    changed = sorted(k for k in set(r1) & set(r2) if r1[k] != r2[k])
    with open(a.out, "w") as f:
        for k in only1:
            f.write(f"{k}\tonly on node 1\t{r1[k]}\n")
        for k in only2:
            f.write(f"{k}\tonly on node 2\t{r2[k]}\n")
        for k in changed:
            f.write(f"{k}\tnode 1 {r1[k]}\tnode 2 {r2[k]}\n")
    print(f"differ={len(only1) + len(only2) + len(changed)} only1={len(only1)} only2={len(only2)}"
          f" changed={len(changed)} rows1={len(r1)} rows2={len(r2)}")


# log_line_prefix = '%m [%p] %b: ' (bench/active-active): %b is the worker's type
APPLY_TYPE = {"pgvigil": r"pgvigil_aa apply", "pglogical": r"pglogical apply [0-9]+:[0-9]+"}
START = {"pgvigil": re.compile(r'pgvigil_aa: applying from peer "[^"]*" \(slot "[^"]*"\) from'),
         "pglogical": re.compile(r"starting apply for subscription (\S+)")}
CONFLICT = re.compile(r"CONFLICT: remote (INSERT|UPDATE|DELETE) on relation (\S+) .*?(\(tuple not found\) )?"
                      r"Resolution: (\w+)")
DETAIL_TS = re.compile(r"existing local tuple .*?timestamp=([^;]*); remote tuple .*timestamp=([^,]*),commit_lsn")


def cmd_logscan(a):
    with open(a.file, "rb") as f:
        f.seek(a.offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    err = re.compile(r"\] " + APPLY_TYPE[a.tool] + r": (ERROR|FATAL|PANIC): +(.*)")
    errors = collections.Counter()
    starts = collections.Counter()
    kinds = collections.Counter()
    ties = 0
    pending = False
    for line in lines:
        m = err.search(line)
        if m:
            errors[m.group(2)[:120]] += 1
        m = START[a.tool].search(line)
        if m:
            starts[m.group(1) if a.tool == "pglogical" else "peer"] += 1
        m = CONFLICT.search(line)
        if m and a.tool == "pglogical":
            kinds[f"{m.group(1).lower()}{'_not_found' if m.group(3) else ''}/{m.group(4)}"] += 1
            pending = m.group(1) in ("INSERT", "UPDATE") and not m.group(3)
            continue
        if pending and "DETAIL:" in line:
            d = DETAIL_TS.search(line)
            if d and d.group(1).strip() == d.group(2).strip():
                ties += 1
        pending = False
    print(json.dumps({"errors": sum(errors.values()), "error_kinds": dict(errors.most_common(5)),
                      "starts": sum(starts.values()), "conflicts": sum(kinds.values()),
                      "conflict_kinds": dict(sorted(kinds.items())), "ties": ties}))


# ---------------------------------------------------------------- step 5: the write leader
def wait_io(conn, deadline):
    """drive an async psycopg2 connection until its operation is done, at most until deadline"""
    import select

    import psycopg2
    import psycopg2.extensions as ext

    while True:
        st = conn.poll()
        if st == ext.POLL_OK:
            return
        rem = deadline - time.monotonic()
        if rem <= 0:
            raise TimeoutError("no answer within the deadline")
        if st == ext.POLL_READ:
            select.select([conn.fileno()], [], [], rem)
        elif st == ext.POLL_WRITE:
            select.select([], [conn.fileno()], [], rem)
        else:
            raise psycopg2.OperationalError(f"bad poll state {st!r}")


def one_line(e):
    m = " ".join(str(e).split()) or type(e).__name__
    return m[:200]


def cmd_leader_writer(a):
    """(bench/compare's writer, persistent kind, with each commit's node and every error)"""
    import signal

    import psycopg2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    acks = collections.OrderedDict()        # node -> [acks, last ack ns]
    last_status = [0.0]
    log = open(a.log, "a", buffering=1)

    def status(force=False):
        now = time.monotonic()
        if not force and now - last_status[0] < 0.02:
            return
        last_status[0] = now
        with open(a.status + ".tmp", "w") as f:
            for node, (n, t) in acks.items():
                f.write(f"{node} {n} {t}\n")
        os.replace(a.status + ".tmp", a.status)

    status(True)
    conn = None
    k = 0
    base = time.time_ns() // 1000 * 1000   # ids: unique across runs of the writer on one table
    while not stop.is_set():
        if conn is None:
            ts = time.time_ns()
            try:
                conn = psycopg2.connect(a.dsn, async_=1)
                wait_io(conn, time.monotonic() + a.timeout)
            except Exception as e:   # refused, timed out (the proxy held it too long): logged, again
                log.write(f"E\t{ts}\t{time.time_ns()}\tconnect\t{one_line(e)}\n")
                try:
                    conn and conn.close()
                except Exception:
                    pass
                conn = None
                stop.wait(0.01)
                continue
            log.write(f"C\t{ts}\t{time.time_ns()}\n")
        k += 1
        ts = time.time_ns()
        try:
            cur = conn.cursor()
            cur.execute("INSERT INTO lw (id, node) VALUES (%s, (SELECT name FROM pgvigil_aa.local_node)) RETURNING node",
                        (base + k,))
            wait_io(conn, time.monotonic() + a.timeout)
            node = cur.fetchone()[0]
            ta = time.time_ns()
        except Exception as e:   # an error answer, a lost connection, no answer: not a commit
            log.write(f"E\t{ts}\t{time.time_ns()}\twrite\t{one_line(e)}\n")
            try:
                conn.close()
            except Exception:
                pass
            conn = None
            stop.wait(0.01)
            continue
        log.write(f"A\t{ts}\t{ta}\t{node}\t{base + k}\n")
        c = acks.setdefault(node, [0, 0])
        c[0] += 1
        c[1] = ta
        status()
        if a.interval > 0:
            stop.wait(a.interval)
    status(True)
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
    log.close()


def read_writer_log(path):
    acks, errors, conns = [], [], []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "A" and len(p) >= 4:
                acks.append((int(p[2]), p[3]))
            elif p[0] == "E" and len(p) >= 5:
                errors.append((int(p[2]), p[3], p[4]))
            elif p[0] == "C" and len(p) >= 3:
                conns.append((int(p[2]), int(p[1])))
    acks.sort()
    conns.sort()
    return acks, errors, conns


def leader_gap(acks, errors, t0, tend, old, conns=()):
    """the event's numbers from the writer's commits (ack_ns, node), errors (at_ns, phase, msg)
    and connections (connected_ns, asked_ns)"""
    prev = None
    for t, _ in acks:
        if t <= t0:
            prev = t
    start = prev if prev is not None else t0
    gap, gfrom, gto = 0, start, start
    p = start
    first_other, new, last_old, n = None, "-", None, 0
    for t, node in acks:
        if t <= t0 or t > tend:
            continue
        n += 1
        if t - p > gap:
            gap, gfrom, gto = t - p, p, t
        p = t
        if node != old and first_other is None:
            first_other, new = t, node
        if node == old:
            last_old = t
    complete = first_other is not None
    if not complete and tend - p > gap:   # no commit elsewhere within the window: at least that long
        gap, gfrom, gto = tend - p, p, tend
    kinds = collections.Counter(f"{ph}: {re.sub(r'[0-9]+', 'N', m)[:80]}" for t, ph, m in errors if start < t <= tend)

    def rel(t):
        return "-" if t is None else f"{(t - t0) / 1e9:.3f}"

    # the connection that carried the first commit on the new leader: when it was asked for and
    # when it was there (the proxy holds it while there is no leader)
    conn = None
    for c in conns:
        if t0 < c[0] and (first_other is None or c[0] <= first_other):
            conn = c

    return {"gap_s": f"{gap / 1e9:.3f}", "complete": "yes" if complete else "no", "gap_from_s": rel(gfrom),
            "gap_to_s": rel(gto), "first_other_s": rel(first_other), "new": new, "last_old_s": rel(last_old),
            "before_s": "-" if prev is None else rel(prev), "conn_asked_s": rel(conn[1] if conn else None),
            "conn_ready_s": rel(conn[0] if conn else None), "commits": str(n), "errors": str(sum(kinds.values())),
            "error_kinds": "; ".join(f"{c}x {k}" for k, c in kinds.most_common(4)).replace(" ", "_") or "-"}


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) \w+: (.*)")


def leader_steps(logdir, t0, tend, old):
    """when, from t0, the agents and the proxy (their logs in logdir: nN.log, proxy.log) did their
    part: the old leader's agent let the lead go (gave it up, or began handing it over), another
    node's agent took it, the proxy's route went to it"""
    import datetime
    import glob

    got = {"left_s": None, "took_s": None, "routed_s": None}
    for path in sorted(glob.glob(os.path.join(logdir, "*.log"))):
        try:
            f = open(path, errors="replace")
        except OSError:
            continue
        with f:
            for line in f:
                m = LOG_LINE.match(line)
                if not m:
                    continue
                t = int(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1e9)
                # (log times are to the ms: a line of the same ms as t0 counts)
                if t < t0 - 1_000_000 or t > tend:
                    continue
                who, text = m.group(2), m.group(3)
                k = None
                if who == old and re.search(r"active_active: (gave up|handing) the write lead of group", text):
                    k = "left_s"
                elif who != old and re.search(r"active_active: took the (vacant )?write lead of group", text):
                    k = "took_s"
                elif who == "proxy" and re.search(r"write leader \S+ -> (?!none)\S+", text):
                    k = "routed_s"
                if k and (got[k] is None or t < got[k]):
                    got[k] = t
    return {k: "-" if v is None else f"{max(0, v - t0) / 1e9:.3f}" for k, v in got.items()}


def cmd_leader_gap(a):
    acks, errors, conns = read_writer_log(a.log)
    r = leader_gap(acks, errors, a.t0, a.tend, a.old, conns)
    if a.logdir:
        r.update(leader_steps(a.logdir, a.t0, a.tend, a.old))
    print(" ".join(f"{k}={v}" for k, v in r.items()))


# ---------------------------------------------------------------- summary
# the targets for step 5, and PGD's own published demo figures (not measured here)
FAILOVER_TARGET_S = 1.0
SWITCHOVER_TARGET_S = 0.2
PGD_FAILOVER_S = 6
PGD_SWITCHOVER_S = 0.5


def read_results(path):
    R = collections.defaultdict(dict)
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                R[parts[0]][parts[1]] = parts[2]
    return R


def steps_run(meta):
    # (runs from before --steps ran steps 1 to 4)
    return set(meta.get("steps", "1 2 3 4").split())


def leader_values(d, kind):
    """step 5's per-round gaps of one kind: (numbers, rounds asked, rounds not measured)"""
    vals = [v for v in d.get(f"p5.{kind}.values", "").split(",") if v]
    nums = []
    for v in vals:
        try:
            nums.append(float(v))
        except ValueError:
            pass
    try:
        asked = int(d.get(f"p5.{kind}.rounds", "0"))
    except ValueError:
        asked = 0
    return nums, asked, max(asked, len(vals)) - len(nums)


def leader_stats(nums):
    if not nums:
        return "-", "-"
    return f"{statistics.median(nums):.3f}", f"{max(nums):.3f}"


def verdicts(R):
    """the issue's targets: (name, value, ok), ok None for a step this run left out (--steps)"""
    g, p = R.get("pgvigil", {}), R.get("pglogical", {})
    steps = steps_run(R.get("run", {}))
    t = []

    def skip(name, step):
        why = f"--steps left step {step} out" if "steps" in R.get("run", {}) else "this run is older than step 5"
        t.append((name, f"not run ({why})", None))

    name = "backlog replay >= 1.5x pglogical's"
    if "1" not in steps:
        skip(name, 1)
    else:
        x, y = g.get("p1.replay_tps"), p.get("p1.replay_tps")
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            x = y = None
        if x is not None and y:
            t.append((name, f"{x / y:.2f}x", x / y >= 1.5))
        else:
            t.append((name, "not measured (replay time " + g.get("p1.catchup_s", "-") + " / "
                      + p.get("p1.catchup_s", "-") + ")", False))
    name = "0 divergent rows, ties included"
    if "3" not in steps and "4" not in steps:
        skip(name, "3 and 4")
    else:
        parts, pg, ok = [], [], True
        for st, k, label in (("3", "p3.differ", "same rows"), ("4", "p4.differ", "ties"),
                             ("4", "p4.final_differ", "a tie on every key")):
            if st not in steps:
                continue
            parts.append(f"{label} {g.get(k) or '-'}")
            pg.append(p.get(k, "-"))
            ok = ok and g.get(k) == "0"
        t.append((name, ", ".join(parts) + f" (pglogical: {', '.join(pg)})", ok))
    name = "0 apply-worker errors or restarts under the same-rows workload"
    if "3" not in steps:
        skip(name, 3)
    else:
        e, rs = g.get("p3.errors"), g.get("p3.restarts")
        t.append((name, f"{e or '-'} errors, {rs or '-'} restarts"
                  f" (pglogical: {p.get('p3.errors', '-')}, {p.get('p3.restarts', '-')})", e == "0" and rs == "0"))
    for kind, target, pgd, what in (("failover", FAILOVER_TARGET_S, PGD_FAILOVER_S,
                                     "write-unavailability through the proxy at write-leader failover"),
                                    ("switchover", SWITCHOVER_TARGET_S, PGD_SWITCHOVER_S,
                                     "write-unavailability through the proxy at planned switchover")):
        name = f"{what} <= {target:g} s (every round)"
        if "5" not in steps:
            skip(name, 5)
            continue
        nums, asked, missing = leader_values(g, kind)
        med, mx = leader_stats(nums)
        val = (f"max {mx} s, median {med} s over {len(nums)} of {asked} rounds"
               + (f", {missing} not measured" if missing else "")
               + f" (PGD's published demo figure: {pgd:g} s, not measured here)")
        ok = asked > 0 and not missing and len(nums) == asked and max(nums) <= target
        if kind == "switchover":
            failed = g.get("p5.switchover.cmd_failed", "0")
            if failed != "0":
                val += f"; {failed} switchover command(s) failed"
                ok = False
        t.append((name, val, ok))
    return t


def print_verdicts(t):
    for name, val, ok in t:
        print(f"  {'not run' if ok is None else 'met    ' if ok else 'NOT met'}  {name}: {val}")


def cmd_summary(a):
    R = read_results(a.results)
    g, p = R.get("pgvigil", {}), R.get("pglogical", {})
    meta = R.get("run", {})
    steps = steps_run(meta)

    def num(d, k):
        try:
            return float(d[k])
        except (KeyError, ValueError):
            return None

    def fmt(d, k):
        if k == "p1.rounds" and d.get(k):
            # (each round's rate, compact: "14.8k 12.2k 9.3k")
            return " ".join(x if x == "timeout" else f"{float(x) / 1000:.1f}k" for x in d[k].split())
        v = num(d, k)
        if v is None:
            return d.get(k, "-")
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100 or v == int(v):
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"

    rows = []

    def row(label, k):
        x, y = num(g, k), num(p, k)
        r = f"{x / y:.2f}" if x is not None and y else "-"
        rows.append((label, fmt(g, k), fmt(p, k), r))

    head = [f"steps {' '.join(sorted(steps))}"] if steps != {"1", "2", "3", "4"} else []
    if steps & {"1", "2", "3", "4"}:
        head.append(f"pgbench scale {meta.get('scale', '?')}, {meta.get('duration', '?')} s pgbench runs"
                    f" ({meta.get('capacity_rounds', '1')} rounds of step 1),"
                    f" {meta.get('same_rows_seconds', '?')} s same rows on {meta.get('keys', '?')} keys,"
                    f" {meta.get('tie_steps', '?')} tie steps on {meta.get('tie_keys', '?')} keys")
    if "5" in steps:
        head.append(f"{meta.get('leader_rounds', '?')} write-leader rounds of each kind")
    print(f"bench/active-active, {meta.get('started', '?')}, commit {meta.get('commit', '?')}: " + "; ".join(head))
    if meta.get("uncommitted", "none") != "none":
        print(f"(the work tree differed from that commit at the start, in {meta['uncommitted']}: the numbers are those"
              f" of the sources as they were, pgvigil built from them ({meta.get('pgvigil_bin', '?')}) and the"
              f" installed pgvigil_aa.so ({meta.get('pgvigil_aa_so', '?')}))")
    if "2" in steps:
        print(f"step 2's base rate: {meta.get('base_rate', '?')} tps ({meta.get('base_rate_from', '?')}), the same for both tools")
    if steps & {"1", "2", "3", "4"}:
        print(f"pglogical {meta.get('pglogical_version', '?')} applies with synchronous_commit"
              f" {'local' if meta.get('pglogical_sync') == 'on' else 'off'}; pgvigil_aa commits without"
              f" waiting for the flush and confirms to the peer only what is flushed")
    print()
    if "1" in steps:
        row("1. backlog replay, transactions/s (from resume)", "p1.replay_tps")
        row("   each round, transactions/s (median counts)", "p1.rounds")
        row("   backlog replay, WAL MB/s (from resume)", "p1.wal_mbps")
        row("   transactions/s from the reader's connection", "p1.replay_tps_connected")
        row("   backlog, transactions", "p1.tx")
        row("   backlog, WAL MB", "p1.wal_mb")
        row("   writer alone (1 client, apply paused), tps", "p1.writer_tps")
        row("   replay time from resume, s", "p1.catchup_s")
        row("   of which until the reader connected, s", "p1.active_s")
        row("   largest slot lag while replaying, bytes", "p1.slot_lag_max")
        if g:
            row("   largest status() lag_bytes meanwhile", "p1.status_lag_max")
    for pct in ("50", "80") if "2" in steps else ():
        row(f"2. at {pct}% of the writer: rate asked, tps", f"p2.{pct}.rate")
        row("   rate done, tps", f"p2.{pct}.tps")
        row("   slot lag bytes, median", f"p2.{pct}.slot_bytes_median")
        row("   slot lag bytes, max", f"p2.{pct}.slot_bytes_max")
        row("   replay_lag s, median", f"p2.{pct}.replay_s_median")
        row("   replay_lag s, max", f"p2.{pct}.replay_s_max")
        if g:
            row("   status() lag_bytes, median / max", f"p2.{pct}.aa_bytes_median")
            rows[-1] = (rows[-1][0], f"{fmt(g, f'p2.{pct}.aa_bytes_median')} / {fmt(g, f'p2.{pct}.aa_bytes_max')}", "", "")
            rows.append(("   status() lag_seconds, median / max",
                         f"{fmt(g, f'p2.{pct}.aa_s_median')} / {fmt(g, f'p2.{pct}.aa_s_max')}", "", ""))
    for ph, name in (("p3", "3. same rows"), ("p4", "4. forced ties")):
        if ph[1] not in steps:
            continue
        row(f"{name}: conflicts recorded", f"{ph}.conflicts")
        if ph == "p4":
            row("   of which between equal commit times", f"{ph}.ties")
        row("   apply-worker errors", f"{ph}.errors")
        row("   apply-worker restarts", f"{ph}.restarts")
        row("   keys whose rows differ", f"{ph}.differ")
        if ph == "p4":
            row("   one more step, a tie on every key: ties met", "p4.final_ties")
            row("   then keys whose rows differ", "p4.final_differ")
            row("   apply-worker errors, whole step 4", "p4.final_errors")
            row("   apply-worker restarts, whole step 4", "p4.final_restarts")
    if "5" in steps:
        nr = "no routing" if p or "pglogical" in meta.get("tools", "") else "-"
        for kind, label in (("failover", "5. write-unavailability through the proxy, s: leader failover (kill -9)"),
                            ("switchover", "   planned switchover (pgvigil aa switchover)")):
            nums, asked, missing = leader_values(g, kind)
            med, mx = leader_stats(nums)
            rows.append((label + ", median / max", f"{med} / {mx}" if g else "-", nr, ""))
            rows.append(("   rounds measured / asked", f"{len(nums)} / {asked}" if g else "-", nr, ""))
    else:
        rows.append(("5. write-unavailability (leader failover, switchover)", "not run", "not run", ""))
    w = max(len(r[0]) for r in rows)
    cw = [max(10, max(len(str(r[i])) for r in rows)) for i in (1, 2)]
    print(f"{'':{w}}  {'pgvigil_aa':>{cw[0]}}  {'pglogical':>{cw[1]}}  {'pgvigil/pglogical':>17}")
    for r in rows:
        print(f"{r[0]:{w}}  {r[1]:>{cw[0]}}  {r[2]:>{cw[1]}}  {r[3]:>17}")
    print()
    for tool, d in (("pgvigil_aa", g), ("pglogical", p)):
        if not d:
            continue
        for ph, name in (("p3", "same rows"), ("p4", "forced ties")):
            if ph[1] not in steps:
                continue
            print(f"{tool}, {name}: workload {d.get(ph + '.workload', '-')}; quiet after {d.get(ph + '.quiet', '-')} s;"
                  f" conflicts {d.get(ph + '.conflict_kinds', '-')}"
                  + (f"; audit {d[ph + '.audit']}" if ph + ".audit" in d else ""))
        if "4" in steps:
            print(f"{tool}, a tie on every key: {d.get('p4.final_step', '-')}; quiet after {d.get('p4.final_quiet', '-')} s"
                  + (f"; audit {d['p4.final_audit']}" if "p4.final_audit" in d else ""))
    if p and "p2.50.replay_s_median" in p and p.get("p2.50.replay_s_median") == "-":
        print("(pglogical's walsender records no replay_lag in pg_stat_replication: its output plugin does not"
              " report progress)")
    if "5" in steps:
        print(f"step 5, write leader: {g.get('p5.setup', '-')}")
        print(f"  writer: {g.get('p5.writer', '-')}")
        def med(k):
            nums = []
            for v in g.get(k, "").split(","):
                try:
                    nums.append(float(v))
                except ValueError:
                    pass
            return f"{statistics.median(nums):.3f}" if nums else "-"

        for kind in ("failover", "switchover"):
            print(f"  {kind}: per round {g.get(f'p5.{kind}.values', '-') or '-'} s; writer errors per round"
                  f" {g.get(f'p5.{kind}.errors', '-') or '-'}"
                  + (f"; the command's own time {g.get('p5.switchover.cmd_ms', '-') or '-'} ms"
                     if kind == "switchover" else ""))
            print("    medians, s from the " + ("kill" if kind == "failover" else "command's start")
                  + f": the old leader's agent lets the lead go {med(f'p5.{kind}.left')}, another takes it"
                  f" {med(f'p5.{kind}.took')}, the proxy follows {med(f'p5.{kind}.routed')}, the writer's new"
                  f" connection is ready {med(f'p5.{kind}.conn_ready')}, its first commit there"
                  f" {med(f'p5.{kind}.first_other')}")
        print("  pglogical: step 5 not run, pglogical has no routing (no write leader, no proxy route to follow one)")
        print(f"  PGD's published demo figures, for scale (not measured here): {PGD_FAILOVER_S:g} s at failover,"
              f" {PGD_SWITCHOVER_S:g} s at switchover")
    print()
    print("targets (issue):")
    if not g:
        print("  pgvigil was not run (--tools)")
        return
    print_verdicts(verdicts(R))


def cmd_leader_stats(a):
    nums = []
    for v in a.values.split(","):
        try:
            nums.append(float(v))
        except ValueError:
            pass
    med, mx = leader_stats(nums)
    print(f"median={med} max={mx} n={len(nums)}")


def cmd_selftest(a):
    """the verdicts must be able to fail: results that miss each target, that meet them, none"""
    def results(steps, **kv):   # (keys: the results' names, "__" for "." : p5__failover__values)
        R = collections.defaultdict(dict)
        R["run"]["steps"] = steps
        R["pgvigil"].update({k.replace("__", "."): v for k, v in kv.items()})
        return R

    five = dict(p5__failover__rounds="5", p5__switchover__rounds="5", p5__switchover__cmd_failed="0")
    good = results("1 2 3 4 5", p1__replay_tps="300", p3__differ="0", p4__differ="0", p4__final_differ="0", p3__errors="0",
                   p3__restarts="0", p5__failover__values="0.31,0.28,0.45,0.30,0.99",
                   p5__switchover__values="0.05,0.04,0.11,0.06,0.19", **five)
    good["pglogical"]["p1.replay_tps"] = "150"
    bad = [   # (what is wrong, results, the verdict that must fail)
        ("replay 1.4x", results("1", p1__replay_tps="140"), "backlog"),
        ("one divergent row", results("3 4", p3__differ="0", p4__differ="0", p4__final_differ="1"), "divergent"),
        ("one apply restart", results("3", p3__errors="0", p3__restarts="1"), "apply-worker"),
        ("a failover round of 1.01 s", results("5", p5__failover__values="0.3,1.01,0.2", p5__failover__rounds="3"),
         "failover"),
        ("a failover round not measured", results("5", p5__failover__values="0.3,timeout,0.2", p5__failover__rounds="3"),
         "failover"),
        ("fewer failover rounds than asked", results("5", p5__failover__values="0.3,0.2", p5__failover__rounds="3"),
         "failover"),
        ("a switchover round of 0.21 s", results("5", p5__switchover__values="0.05,0.21", p5__switchover__rounds="2",
                                                 p5__switchover__cmd_failed="0"), "switchover"),
        ("a failed switchover command", results("5", p5__switchover__values="0.05,0.06", p5__switchover__rounds="2",
                                                p5__switchover__cmd_failed="1"), "switchover"),
        ("no step-5 results at all", results("5"), "failover"),
        ("no step-5 results at all", results("5"), "switchover"),
        ("no results at all", results("1 2 3 4"), "backlog"),
        ("no results at all", results("1 2 3 4"), "divergent"),
        ("no results at all", results("1 2 3 4"), "apply-worker"),
    ]
    problems = []
    t = verdicts(good)
    for name, val, ok in t:
        if ok is not True:
            problems.append(f"good results: {name}: {val}: not 'met'")
    if len(t) != 5:
        problems.append(f"good results: {len(t)} verdicts, not 5")
    for what, R, key in bad:
        hit = [(n, v, ok) for n, v, ok in verdicts(R) if key in n]
        if len(hit) != 1 or hit[0][2] is not False:
            problems.append(f"{what}: the verdict on '{key}' says {hit}, not 'NOT met'")
    # a step left out by --steps is "not run", never "met"
    for n, v, ok in verdicts(results("5", p5__failover__values="0.3", p5__failover__rounds="1",
                                     p5__switchover__values="0.1", p5__switchover__rounds="1")):
        if ("failover" in n or "switchover" in n) != (ok is True):
            problems.append(f"steps 5 only: {n}: {v}: {ok}")
    if problems:
        print("selftest: FAIL")
        for x in problems:
            print("  " + x)
        sys.exit(1)
    print(f"selftest: PASS (5 verdicts met on good results; {len(bad)} bad or missing results each make theirs"
          " NOT met; steps left out are 'not run')")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("catchup")
    s.add_argument("--slot-dsn", required=True)
    s.add_argument("--slot", required=True)
    s.add_argument("--lsn", required=True)
    s.add_argument("--timeout", type=float, required=True)
    s.add_argument("--resume-dsn")
    s.add_argument("--resume-sql")
    s.add_argument("--samples")
    s.add_argument("--aa-dsn")
    s.add_argument("--aa-peer")
    s = sub.add_parser("quiet")
    s.add_argument("--timeout", type=float, required=True)
    s.add_argument("dsns", nargs="+")
    s = sub.add_parser("sample")
    s.add_argument("--seconds", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--slot-dsn", required=True)
    s.add_argument("--slot", required=True)
    s.add_argument("--aa-dsn")
    s.add_argument("--aa-peer")
    s = sub.add_parser("same-rows")
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--keys", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--logdir", required=True)
    s.add_argument("nodes", nargs="+")
    s = sub.add_parser("tie-all")
    s.add_argument("--tick-file", required=True)
    s.add_argument("--logdir", required=True)
    s.add_argument("nodes", nargs="+")
    s = sub.add_parser("diff")
    s.add_argument("--out", required=True)
    s.add_argument("dsn1")
    s.add_argument("dsn2")
    s = sub.add_parser("logscan")
    s.add_argument("--tool", choices=("pgvigil", "pglogical"), required=True)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("file")
    s = sub.add_parser("leader-writer")
    s.add_argument("--dsn", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--status", required=True)
    s.add_argument("--interval", type=float, default=0.005)
    s.add_argument("--timeout", type=float, default=10.0)
    s = sub.add_parser("leader-gap")
    s.add_argument("--log", required=True)
    s.add_argument("--t0", type=int, required=True)
    s.add_argument("--tend", type=int, required=True)
    s.add_argument("--old", required=True)
    s.add_argument("--logdir")
    s = sub.add_parser("leader-stats")
    s.add_argument("values")
    s = sub.add_parser("summary")
    s.add_argument("results")
    sub.add_parser("selftest")
    a = ap.parse_args()
    {"catchup": cmd_catchup, "quiet": cmd_quiet, "sample": cmd_sample, "same-rows": cmd_same_rows, "tie-all": cmd_tie_all,
     "diff": cmd_diff, "logscan": cmd_logscan, "leader-writer": cmd_leader_writer, "leader-gap": cmd_leader_gap,
     "leader-stats": cmd_leader_stats, "summary": cmd_summary, "selftest": cmd_selftest}[a.cmd](a)


if __name__ == "__main__":
    main()
