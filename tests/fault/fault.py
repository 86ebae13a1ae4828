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
    "kill9_agent",         # kill -9 of the agent alone (postgres and its fence keep running);
                           # heal: start the agent again
    "kill9_agent_promoting",  # kill -9 of the primary node, then kill -9 of the agent that takes
                           # the leader key, right after its pg_promote (the test build's
                           # PGVIGIL_TEST_PROMOTE_PAUSE hook holds it there); heal: restart both
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
        if kind in ("kill9_node", "stop_node", "stop_agent", "kill9_agent") and rnd.random() < 0.25:
            role = "replica"
        if kind == "isolate_etcd":
            role = "etcd%d" % rnd.randint(1, a.etcd)
        if kind == "restart_proxy":
            role = "proxy"
            hold = 0.0
        elif kind == "kill9_node":
            hold = rnd.uniform(2, 10)
        elif kind == "kill9_agent_promoting":
            # longer than the lease: the killed agent's lease must expire while it is dead, so
            # that its fence has to stop the promoted postgres and another node takes over
            hold = rnd.uniform(1.5 * a.ttl, 3.0 * a.ttl)
        elif kind == "kill9_agent":
            # the agent comes back before its lease expires, or well after it
            hold = rnd.uniform(1, 2.5 * a.ttl)
        else:
            # around the TTL: sometimes shorter (the lease survives), mostly longer
            hold = rnd.uniform(0.5 * a.ttl, 3.0 * a.ttl)
        pause = rnd.uniform(4, 9)
        pick = rnd.randrange(100)        # which replica, when there is a choice
        out.append("%s %s %.1f %.1f %d" % (kind, role, hold, pause, pick))
        t += hold + pause + 1.0
        if kind == "kill9_agent_promoting":
            t += 2 * a.ttl     # the failover it waits for before its hold starts
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


def proxy_connect(a, name):
    import psycopg2
    return psycopg2.connect(a.dsn, application_name="fault-" + name)


def direct_connect(ip, name):
    """A connection straight to one node's postgres. Short timeouts so that a partitioned node
    stalls its writer for seconds, not minutes: connect_timeout (libpq's least is 2 s),
    keepalives and tcp_user_timeout for a peer that vanished mid-statement. No
    statement_timeout: a COMMIT cancelled while it waits for a synchronous standby is answered
    as a success (with a warning), which would turn an unreplicated commit into an ack."""
    import psycopg2
    return psycopg2.connect(host=ip, port=5432, user="postgres", dbname="postgres", sslmode="disable",
                            password=os.environ.get("PGPASSWORD", "it-super"), connect_timeout=2,
                            keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=2,
                            tcp_user_timeout=4000, application_name="fault-" + name)


def writer(name, cid, via, node, connect, ids, ops, stop, inflight, rnd, think, fail_pause):
    """One client thread: one transaction after another (insert a unique id, append it to a
    key's list), each recorded with its outcome and times. VIA is "proxy" (through the proxy's
    read-write route) or "direct" (to NODE's postgres, whatever its role: a replica answers
    read-only errors, recorded as failed)."""
    conn = None
    srv_conn = None
    while not stop.is_set():
        oid = next(ids)
        key = (oid // 400) * 8 + rnd.randrange(8)   # ~50 appends a key: lists stay short
        rec = {"op": "txn", "client": cid, "via": via, "id": oid, "key": key, "start": round(now(), 4)}
        if node:
            rec["node"] = node
        inflight[name] = rec
        phase = "connect"
        try:
            if conn is None:
                conn = connect()
                cur = conn.cursor()
                cur.execute("select host(inet_server_addr())")
                srv_conn = cur.fetchone()[0]
                conn.commit()
            rec["conn_srv"] = srv_conn
            phase = "insert"
            cur = conn.cursor()
            cur.execute("insert into ids(id, client, k, srv) values (%s, %s, %s, host(inet_server_addr())) "
                        "returning host(inet_server_addr()), pg_current_wal_insert_lsn()::text", (oid, cid, key))
            rec["srv"], rec["lsn"] = cur.fetchone()
            # the insert ran: the server was a writable primary at some instant in [start, ins]
            rec["ins"] = round(now(), 4)
            phase = "append"
            cur.execute("insert into lists(k, vals) values (%s, array[%s]::bigint[]) "
                        "on conflict (k) do update set vals = lists.vals || excluded.vals", (key, oid))
        except Exception as e:
            code = getattr(e, "pgcode", None)
            rec.update(result="failed", phase=phase, error=str(e).strip().split("\n")[0][:200])
            if code:
                rec["code"] = code
            # an error answered by a live server (read-only replica, ...): roll back and keep
            # the connection, so a replica that gets promoted takes this writer's next write at
            # once; anything else: reconnect
            kept = False
            if code and conn is not None and conn.closed == 0:
                try:
                    conn.rollback()
                    kept = True
                except Exception:
                    pass
            if not kept:
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
            inflight.pop(name, None)
            ops.write_locked(rec)
        if rec["result"] != "ok":
            stop.wait(fail_pause)
        else:
            stop.wait(think)
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


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


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
    # every writer thread: its client number (the ids table's client column), how it connects
    specs = []
    for i in range(a.clients):
        specs.append(("c%d" % i, i, "proxy", None, (lambda n="c%d" % i: proxy_connect(a, n)), a.think, 0.1))
    if a.nodes:
        for item in a.nodes.split(","):
            node, _, ip = item.partition("=")
            k = int(node[4:]) if node.startswith("node") and node[4:].isdigit() else len(specs)
            n = "d%d" % k
            specs.append((n, 100 + k, "direct", node, (lambda ip=ip, n=n: direct_connect(ip, n)),
                          a.direct_think, a.direct_fail_pause))
    meta_path = os.path.join(a.dir, "workload.json")
    meta = {"t_begin": round(now(), 3), "threads": {s[0]: {"client": s[1], "via": s[2], "node": s[3]} for s in specs}}
    write_json(meta_path, meta)
    threads = {}
    for name, cid, via, node, connect, think, fail_pause in specs:
        t = threading.Thread(target=writer, args=(name, cid, via, node, connect, ids, ops, stop, inflight,
                                                  random.Random(rnd.random()), think, fail_pause), daemon=True)
        t.start()
        threads[name] = t
    while not stop.is_set():
        if os.path.exists(os.path.join(a.dir, "workload.stop")):
            stop.set()
        stop.wait(0.2)
    meta["t_stop"] = round(now(), 3)
    deadline = now() + a.stop_wait
    for t in threads.values():
        t.join(max(0.1, deadline - now()))
    # operations still blocked (e.g. a COMMIT that never returned) end as unknown
    with ops.lock:
        for name, rec in list(inflight.items()):
            rec["abandoned"] = True
            out = dict(rec)
            out.pop("abandoned")
            out.update(result="unknown" if "commit" in rec else "failed", phase="stopped",
                       error="still in flight when the workload stopped", end=round(now(), 4))
            ops.write_locked(out)
        ops.f.flush()
    # a thread still blocked stop_wait seconds after the stop (the cluster healed and converged
    # before it) is a hung client; the checker reports it
    meta["stop_wait"] = a.stop_wait
    meta["not_joined"] = sorted(n for n, t in threads.items() if t.is_alive())
    meta["t_end"] = round(now(), 3)
    write_json(meta_path, meta)
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



def check_sanitizer_logs(d):
    """Sanitizer reports in a run directory: (file, line) of each report's first line."""
    import glob
    import re
    pat = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|AddressSanitizer:DEADLYSIGNAL|"
                     r"UndefinedBehaviorSanitizer|: runtime error: |WARNING: AddressSanitizer")
    found = []
    files = sorted(set(glob.glob(os.path.join(d, "node*.log")) + glob.glob(os.path.join(d, "proxy*.log")) +
                       glob.glob(os.path.join(d, "sanitizer*"))))
    for f in files:
        if not os.path.isfile(f):
            continue
        hit = None
        try:
            with open(f, errors="replace") as fh:
                for line in fh:
                    if pat.search(line):
                        hit = line.strip()[:300]
                        break
        except OSError:
            continue
        # a report file is a report even when its first lines do not match (a DEADLYSIGNAL
        # header, a report cut short)
        if hit is None and os.path.basename(f).startswith("sanitizer") and os.path.getsize(f) > 0:
            with open(f, errors="replace") as fh:
                hit = fh.readline().strip()[:300]
        if hit is not None:
            found.append({"file": os.path.basename(f), "line": hit})
    return found


def check_hung(d, ops, polls, bound):
    """Hung clients. Every writer thread makes progress: each operation ends with a record
    within seconds (timeouts: the proxy's connect_wait, libpq's connect_timeout, TCP timeouts,
    the fault's hold). A thread whose records stop for more than BOUND seconds of time during
    which a leader key was held (from the poller; a time without a leader, or without polls, does
    not count), or that was still blocked when the workload gave up on it after the stop (see
    workload.json), is hung."""
    import bisect
    out = []
    meta = {}
    mp = os.path.join(d, "workload.json")
    if os.path.exists(mp):
        try:
            with open(mp) as f:
                meta = json.load(f)
        except ValueError:
            meta = {}
    if meta.get("not_joined"):
        out.append({"check": "hung_workload", "detail": "threads %s still blocked %s s after the workload was told to "
                    "stop" % (",".join(meta["not_joined"]), meta.get("stop_wait"))})
    # time with a leader key, as a step function over the poll answers
    pts = sorted((p[1], p[3] != "-") for p in polls)
    starts = []
    cum = [0.0]
    for (t0, held0), (t1, _) in zip(pts, pts[1:]):
        starts.append(t0)
        # an interval between two polls counts when the first saw a leader and the poller was
        # not itself stuck (a gap of more than a second says nothing)
        cum.append(cum[-1] + ((t1 - t0) if held0 and t1 - t0 <= 1.0 else 0.0))
    ends = [p[0] for p in pts[1:]]

    def held(a, b):
        """seconds of (a, b) with a leader key"""
        if not starts or b <= a:
            return 0.0
        tot = 0.0
        i = max(0, bisect.bisect_right(starts, a) - 1)
        while i < len(starts) and starts[i] < b:
            lo = max(a, starts[i])
            hi = min(b, ends[i])
            seg = cum[i + 1] - cum[i]
            if seg > 0 and hi > lo:
                tot += seg * (hi - lo) / (ends[i] - starts[i])
            i += 1
        return tot
    threads = meta.get("threads") or {}
    per = {}
    for o in ops:
        per.setdefault(o.get("client"), []).append(o)
    t_begin = meta.get("t_begin", min((o["start"] for o in ops), default=0))
    t_stop = meta.get("t_stop", max((o["end"] for o in ops), default=0))
    names = {v.get("client"): k for k, v in threads.items()}
    for cid in set(per) | set(names):
        recs = sorted(per.get(cid, []), key=lambda o: o["end"])
        marks = [t_begin] + [o["end"] for o in recs if o["end"] <= t_stop] + [t_stop]
        for x, y in zip(marks, marks[1:]):
            if y - x > bound:
                h = held(x, y)
                if h > bound:
                    out.append({"check": "hung_workload", "detail": "client %s (%s) made no progress from %.3f to %.3f "
                                "(%.0f s, %.0f s of it with a leader)" % (names.get(cid, cid), cid, x, y, y - x, h)})
                    break
    return out


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
                promotions.append({"node": h[4], "time": t, "timeline": h[0] + 1 if isinstance(h[0], int) else h[0],
                                   "switch_lsn": h[1], "reason": h[2]})
    report["promotions"] = [dict(p, time=round(p["time"], 3)) for p in promotions]

    # ---- (2) never two writers
    # The leader key's holders form an ordered list (acquisitions, index = term). Evidence that
    # node Y was a writable primary: an insert that Y ran (it was out of recovery at some instant
    # in [start, ins]), or the history key's entry for Y's promotion (written after pg_promote
    # returned: Y was a primary at its time; the time is truncated to the millisecond, hence
    # +1 ms). Evidence counts only when its term is certain: every acquisition that can be the
    # latest one at that instant is Y's (so Y was the legitimate holder, not an old primary
    # writing after the key moved: those writes are the warning below). A write acknowledged by
    # S != Y whose COMMIT was sent after such evidence, while no acquisition by S can lie after
    # Y's term and before that COMMIT, is a violation: S accepted a write after a newer primary
    # existed. A COMMIT sent before and acknowledged after is not counted (it may have been
    # processed before).
    n_acq = len(acquisitions)
    acq_by_node = {}
    for i, x in enumerate(acquisitions):
        acq_by_node.setdefault(x["node"], []).append(i)

    def last_possible(node, t):
        """index of NODE's latest acquisition that may have happened before t (-1 if none)"""
        best = -1
        for i in acq_by_node.get(node, []):
            if acquisitions[i]["lo"] < t:
                best = i
        return best

    def certain_term(node, lo, hi):
        """the term index of an instant in [lo, hi] on NODE, if every acquisition that may be the
        latest one at that instant is NODE's; else None"""
        sure = -1
        maybe = -1
        for i, x in enumerate(acquisitions):
            if x["hi"] <= lo:
                sure = i
            if x["lo"] < hi:
                maybe = i
        if sure < 0 or any(acquisitions[i]["node"] != node for i in range(sure, max(sure, maybe) + 1)):
            return None
        return sure

    # per term, the earliest evidence that its holder was a writable primary
    first_ev = {}

    def add_evidence(node, lo, hi, what):
        term = certain_term(node, lo, hi)
        if term is not None and (term not in first_ev or hi < first_ev[term]["by"]):
            first_ev[term] = dict(what, node=node, by=round(hi, 4), term=term)

    for o in ops:
        s = ip2node.get(o.get("srv"))
        if s is None:
            continue
        if "ins" in o:
            add_evidence(s, o["start"], o["ins"], {"kind": "insert", "op": o})
        elif o["result"] == "ok":
            add_evidence(s, o["start"], o["end"], {"kind": "acknowledged write", "op": o})
    for h in hist:
        if isinstance(h, list) and len(h) >= 5 and h[4] in nodes:
            t = parse_iso(h[3])
            if t:
                add_evidence(h[4], t, t + 0.001, {"kind": "promotion (history key)", "entry": h})
    report["primary_evidence"] = [{"term": k, "node": v["node"], "by": v["by"], "kind": v["kind"]}
                                  for k, v in sorted(first_ev.items())]
    two = []
    zombie = []
    acked_srv = [o for o in acked if o.get("srv") in ip2node]
    for o in acked_srv:
        s = ip2node[o["srv"]]
        mine = last_possible(s, o["commit"])
        for term in sorted(first_ev):
            e = first_ev[term]
            if term > mine and e["node"] != s and e["by"] < o["commit"]:
                two.append({"rule": "%s acknowledged a write (COMMIT sent %.3f) after %s was a primary (%s by %.3f), "
                            "with no leader change to %s in between" % (s, o["commit"], e["node"], e["kind"], e["by"], s),
                            "via": o.get("via", "proxy"), "server": s, "op": o, "evidence": e})
                break
        else:
            # a write after the key surely went to another node, before that node was seen as a
            # primary: an old primary writing without its lease (not two writers yet)
            for i in range(mine + 1, n_acq):
                x = acquisitions[i]
                if x["node"] != s and x["hi"] < o["commit"]:
                    zombie.append({"op_id": o["id"], "via": o.get("via", "proxy"), "server": s,
                                   "commit_sent": o["commit"], "key_to": x["node"], "key_taken_by": round(x["hi"], 3)})
                    break
    two_ids = set(t["op"]["id"] for t in two)
    if two:
        by_via = {}
        for t in two:
            by_via[t["via"]] = by_via.get(t["via"], 0) + 1
        violations.append({"check": "two_writers", "count": len(two), "by_client_kind": by_via, "examples": two[:10]})
    if zombie:
        warnings.append({"writes_after_leader_key_moved": len(zombie), "examples": zombie[:5]})
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
                if o["id"] in two_ids:
                    continue       # reported as two writers: a write of a deposed primary
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

    # ---- the run's own log: nemesis actions, and what the harness found. The harness
    # (fault_run.sh's nem) writes {"t", "phase", "fault", "target", "detail"}; "phase" is apply,
    # heal, window, skip, or unexpected_exit (fault: agent, proxy or workload). Older logs
    # named the key "event".
    nem = load_jsonl(os.path.join(d, "nemesis.jsonl"))
    report["nemesis"] = nem
    for n in nem:
        if (n.get("phase") or n.get("event")) != "unexpected_exit":
            continue
        what = n.get("fault")
        if what == "workload":
            violations.append({"check": "hung_workload", "detail": "%s: %s" % (n.get("target"), n.get("detail"))})
        elif what == "sanitizer":
            violations.append({"check": "sanitizer", "detail": "%s: %s" % (n.get("target"), n.get("detail"))})
        else:
            violations.append({"check": "crash", "detail": "%s %s exited on its own: %s"
                               % (what, n.get("target"), n.get("detail")), "t": n.get("t")})
    # fault counts: one "apply" per fault; the promotion-window fault also says whether the
    # window was hit (a "window" line) or not (a "skip" line)
    counts = {}
    for n in nem:
        if n.get("phase") == "apply" and n.get("fault") != "heal_all":
            counts[n.get("fault")] = counts.get(n.get("fault"), 0) + 1
    report["fault_counts"] = counts
    report["promote_window"] = {"hit": len([n for n in nem if n.get("phase") == "window"]),
                                "missed": len([n for n in nem if n.get("phase") == "skip"
                                               and n.get("fault") == "kill9_agent_promoting"])}

    # ---- sanitizer reports: in the agents' and the proxy's logs, and in the report files the
    # sanitizers write when ASAN_OPTIONS/UBSAN_OPTIONS name a log_path (sanitizer.<pid>)
    san = check_sanitizer_logs(d)
    if san:
        violations.append({"check": "sanitizer", "detail": "%d sanitizer report(s)" % len(san), "examples": san[:10]})

    # ---- hung workload
    violations.extend(check_hung(d, ops, polls, a.hang_bound))

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
    direct_ok = len([o for o in acked if o.get("via") == "direct"])
    print("%s ops=%d ok=%d(direct %d) failed=%d unknown=%d(present %s, absent %s) faults=%d failovers=%d converge=%ss%s "
          "violations=%d%s" % (report["result"], len(ops), len(acked), direct_ok, len(failed), len(unknown), unk_p, unk_a,
                              sum(counts.values()), len(promotions),
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
    w.add_argument("--nodes", default="", help="node1=IP,...: a direct writer to each node's postgres")
    w.add_argument("--direct-think", type=float, default=0.05)
    w.add_argument("--direct-fail-pause", type=float, default=0.1)
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
    c.add_argument("--hang-bound", type=float, default=60,
                   help="seconds a client may go without progress while a leader key is held")
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
