#!/usr/bin/env python3
"""Randomized fault suite for pgvigil: schedule, workload (clients + etcd poller) and checker.

  fault.py schedule --seed S --duration D --etcd N       nemesis schedule, one fault a line
  fault.py workload --dir D --dsn DSN --etcd URLS ...    clients writing through the proxy, and
                                                         a poller of etcd's leader/history keys
  fault.py check --dir D --mode sync|async ...           wait for convergence, read every node,
                                                         check the history, write the report

Every time is wall-clock seconds (time.time()): all processes run on one host, so the clocks of
the clients, the poller, the nemesis and the agents are the same clock.
"""
import argparse
import base64
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

# ---------------------------------------------------------------------------------------------
# schedule

# fault kinds; "role" is resolved when the fault is applied (the leader key at that moment)
FAULTS = [
    "kill9_node",          # kill -9 agent + fence + postgres of a node; heal: restart the agent
    "stop_node",           # SIGSTOP agent + fence + postgres; heal: SIGCONT
    "stop_agent",          # SIGSTOP the agent alone (its fence keeps running); heal: SIGCONT
    "isolate_primary",     # the primary's bridge port drops everything
    "cut_primary_etcd",    # primary <-> every etcd member
    "cut_primary_replicas",  # primary <-> the other database nodes
    "isolate_etcd",        # one etcd member cut from everyone (--etcd 3 only)
    "restart_proxy",       # kill -9 of the proxy, started again at once
]


def cmd_schedule(a):
    rnd = random.Random(a.seed)
    kinds = [k for k in FAULTS if k != "isolate_etcd" or a.etcd >= 3]
    t = 0.0
    bag = []
    out = []
    while t < a.duration:
        if not bag:            # every kind once per round, in a seeded order: short runs still cover
            bag = kinds[:]     # many kinds
            rnd.shuffle(bag)
        kind = bag.pop()
        role = "primary"
        if kind in ("kill9_node", "stop_node", "stop_agent") and rnd.random() < 0.25:
            role = "replica"
        if kind == "isolate_etcd":
            role = "etcd%d" % rnd.randint(1, a.etcd)
        if kind == "restart_proxy":
            role = "proxy"
            hold = 0.0
        elif kind == "kill9_node":
            hold = rnd.uniform(2, 10)
        else:
            # around the TTL: sometimes shorter (the lease survives), mostly longer
            hold = rnd.uniform(0.5 * a.ttl, 3.0 * a.ttl)
        pause = rnd.uniform(4, 9)
        pick = rnd.randrange(100)        # which replica, when there is a choice
        out.append("%s %s %.1f %.1f %d" % (kind, role, hold, pause, pick))
        t += hold + pause + 1.0
    print("\n".join(out))


# ---------------------------------------------------------------------------------------------
# etcd over its v3 HTTP/JSON gateway

def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s).decode(errors="replace") if s else ""


class Etcd:
    def __init__(self, urls, timeout=0.7):
        self.eps = []
        for u in urls.split(","):
            u = u.strip()
            if u.startswith("http://"):
                u = u[len("http://"):]
            host, _, port = u.partition(":")
            self.eps.append((host, int(port or 2379)))
        self.good = 0
        self.timeout = timeout

    def post(self, path, body, timeout=None):
        """POST to the last endpoint that answered, then the others; None if none answers."""
        n = len(self.eps)
        for i in range(n):
            j = (self.good + i) % n
            host, port = self.eps[j]
            try:
                c = http.client.HTTPConnection(host, port, timeout=timeout or self.timeout)
                c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                c.close()
                if r.status != 200:
                    continue
                self.good = j
                return json.loads(data)
            except Exception:
                continue
        return None

    def range_prefix(self, prefix):
        return self.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix[:-1] + chr(ord(prefix[-1]) + 1))})

    def get(self, key):
        r = self.post("/v3/kv/range", {"key": b64(key)})
        if not r:
            return None
        kvs = r.get("kvs") or []
        return unb64(kvs[0].get("value")) if kvs else ""

    def events(self, key, quiet=2.0, limit=20.0):
        """Every event of KEY since revision 1 (etcd keeps them all: no compaction here), through
        a watch: the past events arrive at once; stop when the stream goes quiet. None when no
        member answers or the stream does not reach the key's current revision."""
        cur = self.post("/v3/kv/range", {"key": b64(key)})
        if cur is None:
            return None
        kvs = cur.get("kvs") or []
        want = int(kvs[0].get("mod_revision", 0)) if kvs else 0
        n = len(self.eps)
        for i in range(n):
            host, port = self.eps[(self.good + i) % n]
            try:
                c = http.client.HTTPConnection(host, port, timeout=quiet)
                c.request("POST", "/v3/watch", json.dumps({"create_request": {"key": b64(key), "start_revision": 1}}),
                          {"Content-Type": "application/json"})
                r = c.getresponse()
                if r.status != 200:
                    c.close()
                    continue
                evs = []
                deadline = time.time() + limit
                buf = b""
                lines = []
                while time.time() < deadline:
                    try:
                        data = r.read1(65536)    # the body, chunked encoding removed
                    except Exception:
                        break          # quiet: everything in the past has been sent
                    if not data:
                        break
                    buf += data
                    *done, buf = buf.split(b"\n")
                    lines.extend(done)
                for line in lines:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(obj, dict):
                        continue
                    for e in (obj.get("result") or {}).get("events") or []:
                        kv = e.get("kv", {})
                        evs.append({"type": e.get("type", "PUT"), "rev": int(kv.get("mod_revision", 0)),
                                    "create_rev": int(kv.get("create_revision", 0) or 0),
                                    "version": int(kv.get("version", 0) or 0), "value": unb64(kv.get("value"))})
                c.close()
                if want and not any(e["rev"] == want for e in evs):
                    continue
                return evs
            except Exception:
                continue
        return None


# ---------------------------------------------------------------------------------------------
# workload

def now():
    return time.time()


class Out:
    """A JSON-lines file written by several threads."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, obj):
        with self.lock:
            self.write_locked(obj)

    def write_locked(self, obj):
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")


def poller(etcd, prefix, polls_path, keys_out, stop):
    """Every ~50 ms: etcd's header revision and the leader key, one line per poll (the map from
    revisions to wall time), and each change of the leader, history and sync keys."""
    pf = open(polls_path, "a", buffering=1)
    last = {}
    while not stop.is_set():
        t0 = now()
        r = etcd.range_prefix(prefix)
        t1 = now()
        if r is not None:
            rev = int(r.get("header", {}).get("revision", 0))
            vals = {}
            for kv in r.get("kvs") or []:
                k = unb64(kv.get("key"))[len(prefix):]
                if k in ("leader", "history", "sync"):
                    vals[k] = (unb64(kv.get("value")), int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0)))
            ld = vals.get("leader", ("", 0, 0))
            # t0: sent, t1: answered; the revision was read somewhere between
            pf.write("%.3f %.3f %d %s %d\n" % (t0, t1, rev, ld[0] or "-", ld[1]))
            for k in ("leader", "history", "sync"):
                v = vals.get(k, ("", 0, 0))
                if last.get(k) != v:
                    last[k] = v
                    keys_out.write({"t0": round(t0, 3), "t": round(t1, 3), "rev": rev, "key": k, "value": v[0],
                                    "create_rev": v[1], "mod_rev": v[2]})
        stop.wait(max(0.0, 0.05 - (now() - t0)))


def classify_commit_error(e, conn):
    code = getattr(e, "pgcode", None)
    alive = conn is not None and conn.closed == 0
    if code and alive and code[:2] in ("40", "23", "22", "42"):
        return "failed"      # the server answered COMMIT with an error: rolled back
    return "unknown"         # connection lost (or an answer we cannot trust): may have committed


def client(idx, a, ids, ops, stop, inflight, rnd):
    import psycopg2
    conn = None
    srv_conn = None
    while not stop.is_set():
        oid = next(ids)
        key = (oid // 400) * 8 + rnd.randrange(8)   # ~50 appends a key: lists stay short
        rec = {"op": "txn", "client": idx, "id": oid, "key": key, "start": round(now(), 4)}
        inflight[idx] = rec
        phase = "connect"
        try:
            if conn is None:
                conn = psycopg2.connect(a.dsn, application_name="fault-c%d" % idx)
                cur = conn.cursor()
                cur.execute("select host(inet_server_addr())")
                srv_conn = cur.fetchone()[0]
                conn.commit()
            rec["conn_srv"] = srv_conn
            phase = "insert"
            cur = conn.cursor()
            cur.execute("insert into ids(id, client, k, srv) values (%s, %s, %s, host(inet_server_addr())) "
                        "returning host(inet_server_addr()), pg_current_wal_insert_lsn()::text", (oid, idx, key))
            rec["srv"], rec["lsn"] = cur.fetchone()
            phase = "append"
            cur.execute("insert into lists(k, vals) values (%s, array[%s]::bigint[]) "
                        "on conflict (k) do update set vals = lists.vals || excluded.vals", (key, oid))
        except Exception as e:
            rec.update(result="failed", phase=phase, error=str(e).strip().split("\n")[0][:200])
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
            conn = None
        else:
            rec["commit"] = round(now(), 4)
            try:
                conn.commit()
                rec["result"] = "ok"
            except Exception as e:
                rec.update(result=classify_commit_error(e, conn), phase="commit",
                           error=str(e).strip().split("\n")[0][:200])
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
        rec["end"] = round(now(), 4)
        with ops.lock:
            if rec.get("abandoned"):       # already written as unknown by the stopping main thread
                return
            inflight.pop(idx, None)
            ops.write_locked(rec)
        if rec["result"] != "ok":
            stop.wait(0.1)
        else:
            stop.wait(a.think)
    try:
        if conn is not None:
            conn.close()
    except Exception:
        pass


def setup_schema(a, stop):
    import psycopg2
    deadline = now() + 60
    last = None
    while now() < deadline and not stop.is_set():
        try:
            conn = psycopg2.connect(a.dsn, application_name="fault-setup")
            cur = conn.cursor()
            cur.execute("create table if not exists ids(id bigint primary key, client int not null, k int not null, srv text)")
            cur.execute("create table if not exists lists(k int primary key, vals bigint[] not null)")
            conn.commit()
            conn.close()
            return True
        except Exception as e:
            last = e
            time.sleep(0.5)
    print("workload: cannot create the tables: %s" % last, file=sys.stderr)
    return False


def cmd_workload(a):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    keys_out = Out(os.path.join(a.dir, "etcd_keys.jsonl"))
    etcd = Etcd(a.etcd)
    pt = threading.Thread(target=poller, args=(etcd, "/service/%s/" % a.scope, os.path.join(a.dir, "polls.txt"),
                                               keys_out, stop), daemon=True)
    pt.start()
    if not setup_schema(a, stop):
        stop.set()
        pt.join(2)
        return 3
    open(os.path.join(a.dir, "workload.ready"), "w").close()
    ops = Out(os.path.join(a.dir, "history.jsonl"))
    import itertools
    ids = itertools.count(1)
    inflight = {}
    rnd = random.Random(a.seed)
    threads = []
    for i in range(a.clients):
        t = threading.Thread(target=client, args=(i, a, ids, ops, stop, inflight, random.Random(rnd.random())), daemon=True)
        t.start()
        threads.append(t)
    while not stop.is_set():
        if os.path.exists(os.path.join(a.dir, "workload.stop")):
            stop.set()
        stop.wait(0.2)
    deadline = now() + a.stop_wait
    for t in threads:
        t.join(max(0.1, deadline - now()))
    # operations still blocked (e.g. a COMMIT that never returned) end as unknown
    with ops.lock:
        for idx, rec in list(inflight.items()):
            rec["abandoned"] = True
            out = dict(rec)
            out.pop("abandoned")
            out.update(result="unknown" if "commit" in rec else "failed", phase="stopped",
                       error="still in flight when the workload stopped", end=round(now(), 4))
            ops.write_locked(out)
        ops.f.flush()
    pt.join(2)
    ops.f.flush()
    keys_out.f.flush()
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# checker

def pg_connect(host, timeout=3):
    import psycopg2
    return psycopg2.connect(host=host, port=5432, user="postgres", password=os.environ.get("PGPASSWORD", "it-super"),
                            dbname="postgres", connect_timeout=timeout, sslmode="disable",
                            application_name="fault-checker")


def q(host, sql, timeout=3):
    try:
        c = pg_connect(host, timeout)
        try:
            c.autocommit = True
            cur = c.cursor()
            cur.execute("set statement_timeout = '20s'")
            cur.execute(sql)
            return cur.fetchall()
        finally:
            c.close()
    except Exception:
        return None


def node_state(host):
    r = q(host, "select pg_is_in_recovery(), (select status from pg_stat_wal_receiver), "
                "(select sender_host from pg_stat_wal_receiver), pg_last_wal_replay_lsn()::text, "
                "(select timeline_id from pg_control_checkpoint())")
    if not r:
        return None
    rec, status, sender, replay, tli = r[0]
    return {"recovery": rec, "wal_receiver": status, "sender": sender, "replay_lsn": replay}


def lsn_int(s):
    if not s:
        return 0
    hi, _, lo = s.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def load_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def parse_iso(s):
    # "2026-11-22T09:21:41.123+00:00"
    import datetime
    try:
        return datetime.datetime.fromisoformat(s).timestamp()
    except Exception:
        return None


def wait_converged(a, etcd, nodes, bound, t_heal, violations):
    """One leader that is a writable primary and every other node streaming from it."""
    deadline = t_heal + bound
    last = None
    while True:
        leader = etcd.get("/service/%s/leader" % a.scope)
        states = {n: node_state(ip) for n, ip in nodes.items()}
        last = {"leader": leader, "nodes": states}
        ok = bool(leader) and leader in nodes and states.get(leader) and states[leader]["recovery"] is False
        if ok:
            for n, st in states.items():
                if n == leader:
                    continue
                if not st or st["recovery"] is not True or st["wal_receiver"] != "streaming" \
                        or st["sender"] != nodes[leader]:
                    ok = False
        if ok:
            return now(), leader, last
        if now() > deadline:
            violations.append({"check": "convergence", "detail": "no single primary with every replica streaming "
                               "from it %.0f s after healing" % bound, "state": last})
            return None, leader, last
        time.sleep(0.5)


def cmd_converge(a):
    """Right after the heal, with the workload still running: seconds until one primary with
    every replica streaming from it (written to converge.json for the checker)."""
    nodes = dict(item.partition("=")[::2] for item in a.nodes.split(","))
    violations = []
    t, leader, state = wait_converged(a, Etcd(a.etcd, timeout=2), nodes, a.converge_bound, a.t_heal, violations)
    res = {"converged_s": round(t - a.t_heal, 1) if t else None, "leader": leader, "state": state}
    with open(os.path.join(a.dir, "converge.json"), "w") as f:
        json.dump(res, f, default=str)
    print("converged in %.1f s (leader %s)" % (t - a.t_heal, leader) if t else "no convergence within %.0f s" % a.converge_bound)
    return 0 if t else 1


def revision_times(polls):
    """polls: [(t_sent, t_answered, rev)] -> functions giving, for a revision, the latest wall
    time before which it certainly had not happened and the earliest by which it had."""
    import bisect
    polls = sorted(polls, key=lambda p: p[0])
    revs_hi = [(p[2], p[1]) for p in polls]

    def lo(rev):
        # the last poll that saw a revision below rev was sent before... (reads see a prefix):
        # an event of revision rev had not happened when a read was answered with a lower one,
        # so it happened after that read was *sent*
        best = None
        for p in polls:
            if p[2] < rev:
                best = p[0] if best is None else max(best, p[0])
        return best

    def hi(rev):
        # the first answer with a revision >= rev: the event had happened when it was answered
        best = None
        for r, t in revs_hi:
            if r >= rev and (best is None or t < best):
                best = t
        return best
    return lo, hi


def cmd_check(a):
    t_check = now()
    d = a.dir
    nodes = {}
    for item in a.nodes.split(","):
        name, _, ip = item.partition("=")
        nodes[name] = ip
    ip2node = {ip: n for n, ip in nodes.items()}
    etcd = Etcd(a.etcd, timeout=2)
    violations = []
    warnings = []
    report = {"seed": a.seed, "mode": a.mode, "etcd_members": a.etcd_members, "ttl": a.ttl,
              "duration": a.duration, "run_dir": d}

    # ---- (3) convergence: one primary, all replicas streaming, within the bound
    if not a.t_heal or not a.t_start:
        for n in load_jsonl(os.path.join(d, "nemesis.jsonl")):
            if n.get("fault") == "heal_all" and n.get("phase") == "heal" and not a.t_heal:
                a.t_heal = n["t"]
            if n.get("phase") == "apply" and not a.t_start:
                a.t_start = n["t"]
    saved = None
    saved_path = os.path.join(d, "final_state.json")
    if a.offline:
        # re-check a kept run directory (e.g. after changing the checker): the final state and
        # etcd's events were saved by the first check
        with open(saved_path) as f:
            saved = json.load(f)
        t_conv, leader, state = saved["t_conv"], saved["leader"], saved["state"]
        if t_conv is None:
            violations.append({"check": "convergence", "detail": "no convergence (saved)"})
    else:
        t_conv, leader, state = wait_converged(a, etcd, nodes, a.converge_bound, a.t_heal, violations)
    cj = os.path.join(d, "converge.json")
    if os.path.exists(cj):
        with open(cj) as f:
            c = json.load(f)
        if c.get("converged_s") is None:
            violations.append({"check": "convergence", "detail": "no single primary with every replica streaming from "
                               "it %.0f s after healing" % a.converge_bound, "state": c.get("state")})
        report["converged_after_heal_s"] = c.get("converged_s")
    report.setdefault("converged_after_heal_s", round(t_conv - a.t_heal, 1) if t_conv else None)
    report["final_leader"] = leader
    report["final_state"] = state

    # ---- history of operations
    ops = load_jsonl(os.path.join(d, "history.jsonl"))
    byid = {}
    for o in ops:
        byid[o["id"]] = o       # ids are unique; an in-flight record written at stop replaces none
    acked = [o for o in ops if o["result"] == "ok"]
    failed = [o for o in ops if o["result"] == "failed"]
    unknown = [o for o in ops if o["result"] == "unknown"]
    report["ops"] = {"total": len(ops), "ok": len(acked), "failed": len(failed), "unknown": len(unknown)}
    if a.t_heal and not any(o["end"] > a.t_heal for o in acked):
        violations.append({"check": "convergence", "detail": "no write acknowledged after healing"})
    if len(acked) < 10:
        violations.append({"check": "workload", "detail": "only %d acknowledged writes" % len(acked)})

    # ---- final contents: the primary, and every node once caught up
    final = {}
    checksums = {}
    primary_ip = nodes.get(leader) if leader else None
    if saved:
        checksums = saved["checksums"]
        final = saved["final"]
        if final:
            final = {"ids": {int(k): v for k, v in final["ids"].items()},
                     "lists": {int(k): v for k, v in final["lists"].items()}}
        violations.extend(saved["data_violations"])
    elif t_conv and primary_ip:
        nviol = len(violations)
        target = q(primary_ip, "select pg_current_wal_lsn()::text")
        target = lsn_int(target[0][0]) if target else 0
        deadline = now() + 60
        for n, ip in nodes.items():
            if n == leader:
                continue
            while True:
                r = q(ip, "select pg_last_wal_replay_lsn()::text")
                if r and lsn_int(r[0][0]) >= target:
                    break
                if now() > deadline:
                    violations.append({"check": "convergence", "detail": "%s did not replay up to the primary's "
                                       "position within 60 s" % n})
                    break
                time.sleep(0.3)
        for n, ip in nodes.items():
            r = q(ip, "select (select count(*) from ids), "
                      "(select md5(coalesce(string_agg(id || ':' || client || ':' || k || ':' || coalesce(srv, ''), ',' "
                      "order by id), '')) from ids), "
                      "(select md5(coalesce(string_agg(k || ':' || array_to_string(vals, ' '), ',' order by k), '')) "
                      "from lists)", timeout=5)
            checksums[n] = {"rows": r[0][0], "ids_md5": r[0][1], "lists_md5": r[0][2]} if r else None
        sums = set((v["rows"], v["ids_md5"], v["lists_md5"]) if v else None for v in checksums.values())
        if len(sums) != 1 or None in sums:
            violations.append({"check": "convergence", "detail": "nodes differ after catching up", "checksums": checksums})
        rows = q(primary_ip, "select id, srv from ids", timeout=10)
        lists = q(primary_ip, "select k, vals from lists", timeout=10)
        if rows is None or lists is None:
            violations.append({"check": "convergence", "detail": "cannot read the final primary %s" % leader})
        else:
            final = {"ids": {r[0]: r[1] for r in rows}, "lists": {r[0]: r[1] for r in lists}}
        data_violations = violations[nviol:]
    report["checksums"] = checksums

    # ---- leader timeline: every event of the leader key (etcd keeps every revision), placed in
    # wall time through the poller's revision samples
    polls = []
    pp = os.path.join(d, "polls.txt")
    if os.path.exists(pp):
        with open(pp) as f:
            for line in f:
                p = line.split()
                if len(p) >= 3:
                    polls.append((float(p[0]), float(p[1]), int(p[2]), p[3] if len(p) > 3 else "-",
                                  int(p[4]) if len(p) > 4 else 0))
    last_rev = max((p[2] for p in polls), default=0)
    keyevs = load_jsonl(os.path.join(d, "etcd_keys.jsonl"))
    lead_pfx = "/service/%s/" % a.scope
    evs = saved["leader_events"] if saved else etcd.events(lead_pfx + "leader")
    acquisitions = []     # {"node", "lo", "hi"}: the node took the key somewhere in (lo, hi]
    rev_lo, rev_hi = revision_times([(p[0], p[1], p[2]) for p in polls])
    if evs:
        prev = None
        for e in evs:
            if e["type"] == "DELETE":
                prev = None
                continue
            if prev is None or prev["value"] != e["value"] or prev["create_rev"] != e["create_rev"]:
                lo = rev_lo(e["rev"])
                hi = rev_hi(e["rev"])
                acquisitions.append({"node": e["value"], "rev": e["rev"], "lo": lo if lo is not None else 0.0,
                                     "hi": hi if hi is not None else float("inf")})
            prev = e
        report["leader_timeline_source"] = "etcd watch from revision 1"
    else:
        # fallback: the poller's view (may miss a change shorter than one poll)
        prev = None
        prev_t = 0.0
        for p in polls:
            cur = (p[3], p[4])
            if p[3] != "-" and (prev is None or cur != prev):
                acquisitions.append({"node": p[3], "rev": 0, "lo": prev_t, "hi": p[1]})
            if p[3] != "-":
                prev = cur
            else:
                prev = None
            prev_t = p[0]
        report["leader_timeline_source"] = "poller (watch unavailable)"
        warnings.append("leader timeline from polls only: a change shorter than a poll may be missed")
    report["leader_changes"] = [{"node": x["node"], "rev": x["rev"], "after": round(x["lo"], 3),
                                 "by": round(x["hi"], 3) if x["hi"] != float("inf") else None} for x in acquisitions]

    # promotions from the history key: [timeline, lsn, reason, time, new_leader]; written after
    # the promotion finished, so its time is a bound by which the new primary accepted writes
    promotions = []
    hist_raw = saved["history"] if saved else etcd.get(lead_pfx + "history")
    if not saved:
        with open(saved_path, "w") as f:
            json.dump({"t_conv": t_conv, "leader": leader, "state": state, "checksums": checksums, "final": final,
                       "data_violations": locals().get("data_violations", []), "leader_events": evs,
                       "history": hist_raw}, f, default=str)
    if hist_raw is None:
        hk = [k for k in keyevs if k["key"] == "history"]
        hist_raw = hk[-1]["value"] if hk else ""
    try:
        hist = json.loads(hist_raw) if hist_raw else []
    except ValueError:
        hist = []
    for h in hist:
        if isinstance(h, list) and len(h) >= 5:
            t = parse_iso(h[3])
            if t and t >= a.t_start - 5:
                promotions.append({"node": h[4], "time": t, "timeline": h[0] + 1, "switch_lsn": h[1], "reason": h[2]})
    report["promotions"] = [dict(p, time=round(p["time"], 3)) for p in promotions]

    # ---- (2) never two writers
    def may_acquire(node, t_from, t_to):
        """whether NODE may have taken the leader key at some time in (t_from, t_to)"""
        return any(x["node"] == node and x["lo"] < t_to and x["hi"] > t_from for x in acquisitions)

    two = []
    acked_srv = [o for o in acked if o.get("srv") in ip2node]
    # (a) a promotion of Y (history key) before a commit on S != Y, with no possible
    # acquisition of the key by S in between: S accepted a write after Y became primary
    for o in acked_srv:
        s = ip2node[o["srv"]]
        for p in promotions:
            if p["node"] != s and p["time"] < o["commit"] and not may_acquire(s, p["time"], o["commit"]):
                two.append({"rule": "write after another node's promotion", "op": o, "server": s,
                            "promoted": p["node"], "promoted_at": p["time"]})
                break
    # (b) writes as proofs: an acknowledged write on Y ended before a COMMIT was sent to S != Y,
    # and S may not have taken the key between the first COMMIT's send and the second
    last_by_node = {}   # node -> latest acknowledged write so far (ordered by end)
    by_commit = sorted(acked_srv, key=lambda o: o["commit"])
    by_end = sorted(acked_srv, key=lambda o: o["end"])
    j = 0
    for o in by_commit:
        while j < len(by_end) and by_end[j]["end"] < o["commit"]:
            e = by_end[j]
            n = ip2node[e["srv"]]
            if n not in last_by_node or last_by_node[n]["commit"] < e["commit"]:
                last_by_node[n] = e
            j += 1
        s = ip2node[o["srv"]]
        for y, e in last_by_node.items():
            if y != s and not may_acquire(s, e["commit"], o["commit"]):
                # S wrote after Y wrote, with no change of leader to S in between; whether Y
                # took over from S: only if Y's write itself came after S took the key... the
                # question is only whether S could be leader again, which it could not
                two.append({"rule": "write on %s after an acknowledged write on %s, with no leader change to %s "
                            "in between" % (s, y, s), "op": o, "server": s, "earlier_op": e})
                break
    # a write after the key went to another node (before that node's promotion): not two
    # writers, but a primary writing without its lease; reported
    lease_warn = []
    for o in acked_srv:
        s = ip2node[o["srv"]]
        for x in acquisitions:
            if x["node"] != s and x["hi"] < o["commit"] and not may_acquire(s, x["hi"], o["commit"]):
                lease_warn.append({"op_id": o["id"], "server": s, "commit_sent": o["commit"], "key_to": x["node"],
                                   "key_taken_by": x["hi"]})
                break
    if two:
        violations.append({"check": "two_writers", "count": len(two), "examples": two[:10]})
    if lease_warn:
        warnings.append({"writes_after_leader_key_moved": len(lease_warn), "examples": lease_warn[:5]})
    report["two_writer_ops"] = len(two)

    # ---- (1) acknowledged writes present; (4) unknown commits' fate; failed ones absent
    if final:
        fids = final["ids"]
        in_list = {}
        dups = []
        for k, vals in final["lists"].items():
            seen = set()
            for v in vals:
                if v in seen:
                    dups.append((k, v))
                seen.add(v)
                in_list[v] = k
        lost = [o for o in acked if o["id"] not in fids]
        lost_append = [o for o in acked if in_list.get(o["id"]) != o["key"]]
        bad_failed = [o for o in failed if o["id"] in fids]
        atom = [i for i in fids if i not in in_list] + [i for i in in_list if i not in fids]
        unk_present = [o for o in unknown if o["id"] in fids]
        report["unknown_final"] = {"present": len(unk_present), "absent": len(unknown) - len(unk_present),
                                   "ids": [{"id": o["id"], "present": o["id"] in fids, "srv": o.get("srv"),
                                            "error": o.get("error")} for o in unknown][:200]}
        report["lost_acknowledged"] = len(lost)
        if dups:
            violations.append({"check": "lists", "detail": "duplicate appends", "examples": dups[:10]})
        if atom:
            violations.append({"check": "atomicity", "detail": "ids present in one table but not the other",
                               "examples": atom[:10]})
        if bad_failed:
            violations.append({"check": "failed_committed", "detail": "operations that failed before COMMIT are present",
                               "examples": bad_failed[:10]})
        unknown_ids = set(i for i in list(fids) if i not in byid)
        if unknown_ids:
            violations.append({"check": "phantom", "detail": "rows no client wrote", "examples": sorted(unknown_ids)[:10]})
        if a.mode == "sync":
            if lost:
                violations.append({"check": "lost_acknowledged", "detail": "%d acknowledged commits missing on the "
                                   "final primary" % len(lost), "examples": lost[:20]})
            elif lost_append:
                violations.append({"check": "lost_acknowledged", "detail": "%d acknowledged list appends missing"
                                   % len(lost_append), "examples": lost_append[:20]})
        else:
            # async: losses are allowed after a failover, bounded by maximum_lag_on_failover
            per = {}
            for o in lost:
                s = ip2node.get(o.get("srv"))
                nxt = None
                for p in sorted(promotions, key=lambda p: p["time"]):
                    if p["node"] != s and p["time"] > o["start"]:
                        nxt = p
                        break
                key = "%s->%s@%.3f" % (s, nxt["node"], nxt["time"]) if nxt else "%s->(no failover)" % s
                e = per.setdefault(key, {"failover": key, "lost": 0, "max_lsn": 0,
                                         "switch_lsn": nxt["switch_lsn"] if nxt else None})
                e["lost"] += 1
                e["max_lsn"] = max(e["max_lsn"], lsn_int(o.get("lsn")))
                e["first_lost_start"] = min(e.get("first_lost_start", o["start"]), o["start"])
                e["last_lost_end"] = max(e.get("last_lost_end", o["end"]), o["end"])
            for e in per.values():
                if e["switch_lsn"] is None:
                    violations.append({"check": "lost_acknowledged", "detail": "acknowledged commits lost without "
                                       "any failover", "failover": e})
                    continue
                e["lost_bytes_at_least"] = max(0, e["max_lsn"] - int(e["switch_lsn"]))
                if e["lost_bytes_at_least"] > a.max_lag:
                    violations.append({"check": "lost_beyond_max_lag", "failover": e,
                                       "maximum_lag_on_failover": a.max_lag})
            report["async_lost_per_failover"] = list(per.values())
            if lost_append and not lost:
                violations.append({"check": "lost_acknowledged", "detail": "list appends lost while their ids "
                                   "survived", "examples": lost_append[:10]})

    if not final and not a.offline:
        # no final primary: still look for acknowledged writes that no node has at all
        union = set()
        seen = {}
        for n, ip in nodes.items():
            r = q(ip, "select id from ids", timeout=10)
            seen[n] = None if r is None else len(r)
            if r:
                union.update(x[0] for x in r)
        lost_all = [o for o in acked if o["id"] not in union]
        unk_any = [o for o in unknown if o["id"] in union]
        report["no_final_primary"] = {"rows_per_node": seen, "acked_missing_on_every_node": len(lost_all),
                                      "unknown_present_on_some_node": len(unk_any)}
        if lost_all and a.mode == "sync":
            violations.append({"check": "lost_acknowledged", "detail": "%d acknowledged commits on no node at all "
                               "(no final primary to check against)" % len(lost_all), "examples": lost_all[:20]})

    # ---- the run's own log: nemesis actions, crashes found by the harness
    nem = load_jsonl(os.path.join(d, "nemesis.jsonl"))
    report["nemesis"] = nem
    for n in nem:
        if n.get("event") == "unexpected_exit":
            violations.append({"check": "crash", "detail": n})
    uniq = []
    for v in violations:
        if not any(u.get("check") == v.get("check") and u.get("detail") == v.get("detail") for u in uniq):
            uniq.append(v)
    violations[:] = uniq
    report["failovers"] = len(promotions)
    report["warnings"] = warnings
    report["violations"] = violations
    report["result"] = "FAIL" if violations else "PASS"
    report["check_s"] = round(now() - t_check, 1)
    with open(a.report, "w") as f:
        json.dump(report, f, indent=1, default=str)
    unk_p = report.get("unknown_final", {}).get("present", "?")
    unk_a = report.get("unknown_final", {}).get("absent", "?")
    lost_s = ""
    if a.mode == "async":
        lost_s = " lost_acked=%s" % report.get("lost_acknowledged", "?")
    print("%s ops=%d ok=%d failed=%d unknown=%d(present %s, absent %s) faults=%d failovers=%d converge=%ss%s "
          "violations=%d%s" % (report["result"], len(ops), len(acked), len(failed), len(unknown), unk_p, unk_a,
                              len([n for n in nem if n.get("phase") == "apply"]), len(promotions),
                              "%s" % report["converged_after_heal_s"] if report.get("converged_after_heal_s") is not None
                              else "NEVER(>%.0f)" % a.converge_bound, lost_s, len(violations),
                              (" [" + ",".join(v["check"] for v in violations) + "]") if violations else ""))
    return 1 if violations else 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schedule")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--etcd", type=int, default=1)
    s.add_argument("--ttl", type=float, default=5)
    w = sub.add_parser("workload")
    w.add_argument("--dir", required=True)
    w.add_argument("--dsn", required=True)
    w.add_argument("--etcd", required=True)
    w.add_argument("--scope", required=True)
    w.add_argument("--clients", type=int, default=4)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--think", type=float, default=0.01)
    w.add_argument("--stop-wait", type=float, default=20)
    v = sub.add_parser("converge")
    v.add_argument("--dir", required=True)
    v.add_argument("--nodes", required=True)
    v.add_argument("--etcd", required=True)
    v.add_argument("--scope", required=True)
    v.add_argument("--t-heal", type=float, required=True)
    v.add_argument("--converge-bound", type=float, default=90)
    c = sub.add_parser("check")
    c.add_argument("--dir", required=True)
    c.add_argument("--mode", choices=["sync", "async"], required=True)
    c.add_argument("--nodes", required=True)
    c.add_argument("--etcd", required=True)
    c.add_argument("--etcd-members", type=int, default=1)
    c.add_argument("--scope", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--ttl", type=float, default=5)
    c.add_argument("--duration", type=float, default=0)
    c.add_argument("--t-start", type=float, default=0)
    c.add_argument("--t-heal", type=float, default=0)
    c.add_argument("--converge-bound", type=float, default=90)
    c.add_argument("--max-lag", type=int, default=10485760)
    c.add_argument("--report", required=True)
    c.add_argument("--offline", action="store_true", help="re-check from the run directory's final_state.json")
    a = p.parse_args()
    if a.cmd == "schedule":
        return cmd_schedule(a)
    if a.cmd == "workload":
        return cmd_workload(a)
    if a.cmd == "converge":
        return cmd_converge(a)
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
