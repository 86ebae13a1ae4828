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
  summary RESULTS.TSV
      the side-by-side tables and the targets
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


# ---------------------------------------------------------------- summary
def cmd_summary(a):
    R = collections.defaultdict(dict)
    with open(a.results) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                R[parts[0]][parts[1]] = parts[2]
    g, p = R.get("pgvigil", {}), R.get("pglogical", {})
    meta = R.get("run", {})

    def num(d, k):
        try:
            return float(d[k])
        except (KeyError, ValueError):
            return None

    def fmt(d, k):
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

    print(f"bench/active-active, {meta.get('started', '?')}, commit {meta.get('commit', '?')}: pgbench scale"
          f" {meta.get('scale', '?')}, {meta.get('duration', '?')} s pgbench runs, {meta.get('same_rows_seconds', '?')} s"
          f" same rows on {meta.get('keys', '?')} keys, {meta.get('tie_steps', '?')} tie steps on"
          f" {meta.get('tie_keys', '?')} keys")
    print(f"step 2's base rate: {meta.get('base_rate', '?')} tps ({meta.get('base_rate_from', '?')}), the same for both tools")
    print(f"pglogical {meta.get('pglogical_version', '?')} applies with synchronous_commit"
          f" {'local' if meta.get('pglogical_sync') == 'on' else 'off'}; pgvigil_aa commits without"
          f" waiting for the flush and confirms to the peer only what is flushed")
    print()
    row("1. backlog replay, transactions/s (from resume)", "p1.replay_tps")
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
    for pct in ("50", "80"):
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
    rows.append(("5. write-unavailability (leader failover, switchover)", "not built", "not built", ""))
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
            print(f"{tool}, {name}: workload {d.get(ph + '.workload', '-')}; quiet after {d.get(ph + '.quiet', '-')} s;"
                  f" conflicts {d.get(ph + '.conflict_kinds', '-')}"
                  + (f"; audit {d[ph + '.audit']}" if ph + ".audit" in d else ""))
        print(f"{tool}, a tie on every key: {d.get('p4.final_step', '-')}; quiet after {d.get('p4.final_quiet', '-')} s"
              + (f"; audit {d['p4.final_audit']}" if "p4.final_audit" in d else ""))
    if p and "p2.50.replay_s_median" in p and p.get("p2.50.replay_s_median") == "-":
        print("(pglogical's walsender records no replay_lag in pg_stat_replication: its output plugin does not"
              " report progress)")
    print()
    print("targets (issue):")
    if not g:
        print("  pgvigil was not run (--tools)")
        return
    t = []
    x, y = num(g, "p1.replay_tps"), num(p, "p1.replay_tps")
    if x is not None and y:
        t.append(("backlog replay >= 1.5x pglogical's", f"{x / y:.2f}x", x / y >= 1.5))
    else:
        t.append(("backlog replay >= 1.5x pglogical's", "not measured (replay time " + g.get("p1.catchup_s", "-") + " / "
                  + p.get("p1.catchup_s", "-") + ")", False))
    d3, d4, d5 = g.get("p3.differ"), g.get("p4.differ"), g.get("p4.final_differ")
    t.append(("0 divergent rows, ties included", f"same rows {d3 or '-'}, ties {d4 or '-'}, a tie on every key {d5 or '-'}"
              f" (pglogical: {p.get('p3.differ', '-')}, {p.get('p4.differ', '-')}, {p.get('p4.final_differ', '-')})",
              d3 == "0" and d4 == "0" and d5 == "0"))
    e, rs = g.get("p3.errors"), g.get("p3.restarts")
    t.append(("0 apply-worker errors or restarts under the same-rows workload", f"{e or '-'} errors, {rs or '-'} restarts"
              f" (pglogical: {p.get('p3.errors', '-')}, {p.get('p3.restarts', '-')})",
              e == "0" and rs == "0"))
    for name, val, ok in t:
        print(f"  {'met    ' if ok else 'NOT met'}  {name}: {val}")
    print("  (write-unavailability through the proxy: not built)")


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
    s = sub.add_parser("summary")
    s.add_argument("results")
    a = ap.parse_args()
    {"catchup": cmd_catchup, "quiet": cmd_quiet, "sample": cmd_sample, "same-rows": cmd_same_rows, "tie-all": cmd_tie_all,
     "diff": cmd_diff, "logscan": cmd_logscan, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
