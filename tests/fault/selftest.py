#!/usr/bin/env python3
"""Self-test of the fault checker (fault.py check --offline): hand-made run directories, each
with exactly one kind of violation, must be reported with the right check name, and clean ones
must pass. No root, no cluster: a few seconds.

  python3 tests/fault/selftest.py [-v] [--keep]     (or: bash tests/fault/selftest.sh)

The base run: 3 nodes, node1 primary from the start; at B+55 node1 is killed, the leader key
goes at B+60 (lease expiry) and node2 takes it at B+61.5, promotes (history entry at B+62.3)
and takes the proxy's writes from B+62.5. Two clients write through the proxy, one direct writer
per node (node1's gets refused while node1 is down, then read-only errors). The nemesis heals at
B+150.5, the workload stops at B+160. Each case changes one thing."""
import copy
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FAULT_PY = os.path.join(HERE, "fault.py")
B = 1700000000.0
IP = {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}
NODES = ",".join("%s=%s" % kv for kv in sorted(IP.items()))
SWITCH_LSN = 0x3000000


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds")


def rev_at(t):
    """etcd's revision at time B+t: member updates bump it; the leader key is deleted at
    revision 300 (B+60) and created by node2 at 301 (B+61.5)"""
    if t < 60:
        return 10 + int(t)
    if t < 61.5:
        return 300
    return 301 + int(t - 61.5)


def leader_at(t):
    if t < 60:
        return "node1", 5
    if t < 61.5:
        return "-", 0
    return "node2", 301


class Run:
    """The files of one run directory, as data."""

    def __init__(self, mode="sync"):
        self.mode = mode
        self.ops = []
        self.next_id = 1
        self.nemesis = [
            {"t": B + 55.0, "phase": "apply", "fault": "kill9_node", "target": "node1", "detail": "role primary"},
            {"t": B + 65.0, "phase": "heal", "fault": "kill9_node", "target": "node1", "detail": "agent restarted"},
            {"t": B + 150.0, "phase": "apply", "fault": "heal_all", "target": "all", "detail": ""},
            {"t": B + 150.5, "phase": "heal", "fault": "heal_all", "target": "all", "detail": ""},
        ]
        self.logs = {n: ["node%s INFO: started" % n[-1]] for n in ("node1", "node2", "node3")}
        self.logs["proxy"] = ["proxy INFO: primary is node1", "proxy INFO: primary is node2"]
        self.extra_files = {}
        self.history_key = json.dumps([[1, SWITCH_LSN, "failover", iso(B + 62.3), "node2"]])
        self.t_conv = B + 155.0
        self.converged_s = 4.5
        self.leader = "node2"
        self.meta = {"t_begin": B + 0.5, "t_stop": B + 160.0, "stop_wait": 20, "not_joined": [], "t_end": B + 160.5,
                     "threads": {"c0": {"client": 0, "via": "proxy", "node": None},
                                 "c1": {"client": 1, "via": "proxy", "node": None},
                                 "d1": {"client": 101, "via": "direct", "node": "node1"},
                                 "d2": {"client": 102, "via": "direct", "node": "node2"},
                                 "d3": {"client": 103, "via": "direct", "node": "node3"}}}
        self.final_extra = {}       # id -> (srv, key) present although no ok record says so
        self.final_drop = set()     # ids missing from the final primary
        self.build_ops()

    # ---- operations
    def op(self, client, via, node, t, result, srv=None, phase=None, error=None, code=None, dur=0.006, commit=None):
        o = {"op": "txn", "client": client, "via": via, "id": self.next_id, "key": self.next_id % 8,
             "start": round(t, 4)}
        self.next_id += 1
        if node:
            o["node"] = node
        if srv:
            o["conn_srv"] = srv
            o["srv"] = srv
            o["lsn"] = "0/%X" % (SWITCH_LSN - 0x100 + (o["id"] % 64) if srv == IP["node1"] else SWITCH_LSN + o["id"] * 16)
            o["ins"] = round(t + 0.002, 4)
        if result in ("ok", "unknown"):
            o["commit"] = round(commit if commit is not None else t + 0.004, 4)
        o["result"] = result
        if phase:
            o["phase"] = phase
        if error:
            o["error"] = error
        if code:
            o["code"] = code
        o["end"] = round(t + dur, 4)
        self.ops.append(o)
        return o

    def build_ops(self):
        t = 1.0
        while t < 160.0:
            for c in (0, 1):
                tc = B + t + 0.1 * c
                if t < 55.0:
                    self.op(c, "proxy", None, tc, "ok", srv=IP["node1"])
                elif t == 55.0:
                    self.op(c, "proxy", None, tc, "unknown", srv=IP["node1"], phase="commit",
                            error="server closed the connection unexpectedly", dur=0.2)
                elif t < 62.5:
                    self.op(c, "proxy", None, tc, "failed", phase="connect", dur=0.3,
                            error="pgvigil proxy: no primary available")
                else:
                    self.op(c, "proxy", None, tc, "ok", srv=IP["node2"])
            t += 0.5
        t = 1.0
        while t < 160.0:
            for k, node in ((1, "node1"), (2, "node2"), (3, "node3")):
                tc = B + t + 0.03 * k
                ro = dict(phase="insert", error="cannot execute INSERT in a read-only transaction", code="25006")
                if node == "node1":
                    if t < 55.0:
                        self.op(100 + k, "direct", node, tc, "ok", srv=IP[node])
                    elif t < 75.0:
                        self.op(100 + k, "direct", node, tc, "failed", phase="connect", dur=0.001,
                                error="connection to server at \"10.0.0.1\", port 5432 failed: Connection refused")
                    else:
                        self.op(100 + k, "direct", node, tc, "failed", **ro)
                elif node == "node2" and t >= 62.5:
                    self.op(100 + k, "direct", node, tc, "ok", srv=IP[node])
                else:
                    self.op(100 + k, "direct", node, tc, "failed", **ro)
            t += 1.0

    def find(self, pred):
        return next(o for o in self.ops if pred(o))

    # ---- writing the directory
    def final(self):
        ids = {}
        lists = {}
        for o in sorted(self.ops, key=lambda o: o["id"]):
            present = o["result"] == "ok" or (o["result"] == "unknown" and o["id"] % 2 == 0)
            if present and o["id"] not in self.final_drop:
                ids[o["id"]] = o.get("srv")
                lists.setdefault(o["key"], []).append(o["id"])
        for i, (srv, key) in self.final_extra.items():
            ids[i] = srv
            lists.setdefault(key, []).append(i)
        return {"ids": {str(k): v for k, v in ids.items()}, "lists": {str(k): v for k, v in lists.items()}}

    def write(self, d):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "history.jsonl"), "w") as f:
            for o in self.ops:
                f.write(json.dumps(o) + "\n")
        with open(os.path.join(d, "nemesis.jsonl"), "w") as f:
            for n in sorted(self.nemesis, key=lambda n: n["t"]):
                f.write(json.dumps(n) + "\n")
        keys = []
        last = None
        with open(os.path.join(d, "polls.txt"), "w") as f:
            for i in range(0, 4000):
                t = i * 0.05
                ld, crev = leader_at(t)
                f.write("%.3f %.3f %d %s %d\n" % (B + t, B + t + 0.002, rev_at(t), ld, crev))
                if ld != last:
                    keys.append({"t0": round(B + t, 3), "t": round(B + t + 0.002, 3), "rev": rev_at(t), "key": "leader",
                                 "value": "" if ld == "-" else ld, "create_rev": crev, "mod_rev": crev})
                    last = ld
        with open(os.path.join(d, "etcd_keys.jsonl"), "w") as f:
            for k in keys:
                f.write(json.dumps(k) + "\n")
        events = [{"type": "PUT", "rev": 5, "create_rev": 5, "version": 1, "value": "node1"},
                  {"type": "DELETE", "rev": 300, "create_rev": 0, "version": 0, "value": ""},
                  {"type": "PUT", "rev": 301, "create_rev": 301, "version": 1, "value": "node2"}]
        fin = self.final() if self.t_conv else {}
        sums = {n: {"rows": len(fin.get("ids", {})), "ids_md5": "x", "lists_md5": "y"} for n in IP} if fin else {}
        state = {"leader": self.leader, "nodes": {n: {"recovery": n != self.leader} for n in IP}}
        with open(os.path.join(d, "final_state.json"), "w") as f:
            json.dump({"t_conv": self.t_conv, "leader": self.leader, "state": state, "checksums": sums,
                       "final": fin or None, "data_violations": [], "leader_events": events,
                       "history": self.history_key}, f)
        with open(os.path.join(d, "converge.json"), "w") as f:
            json.dump({"converged_s": self.converged_s, "leader": self.leader, "state": state}, f)
        with open(os.path.join(d, "workload.json"), "w") as f:
            json.dump(self.meta, f)
        for name, lines in self.logs.items():
            with open(os.path.join(d, name + ".log"), "w") as f:
                f.write("\n".join(lines) + "\n")
        for name, text in self.extra_files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)


# ---- the cases: (name, what it does to the base run, expected check names, extra test)

def c_clean(r):
    pass


def c_clean_async(r):
    r.mode = "async"


def c_async_loss_at_failover(r):
    # async: the last acknowledged writes of node1 before it died did not reach node2; allowed
    # (far below maximum_lag_on_failover)
    r.mode = "async"
    for o in r.ops:
        if o.get("srv") == IP["node1"] and o["result"] == "ok" and o["start"] > B + 54.0:
            r.final_drop.add(o["id"])


def c_lost_sync(r):
    o = r.find(lambda o: o["result"] == "ok" and o.get("srv") == IP["node2"] and o["start"] > B + 100)
    r.final_drop.add(o["id"])


def c_two_writers_proxy(r):
    # the proxy sent a write to node1 after node2's promotion (history key) and node1 took it
    o = r.op(0, "proxy", None, B + 70.2, "ok", srv=IP["node1"])
    o["key"] = 3


def c_two_writers_direct(r):
    # node1's direct writer: node1 (old primary) acknowledges at B+80 while the proxy's writes
    # go to node2; nothing through the proxy shows it
    o = r.find(lambda o: o.get("via") == "direct" and o.get("node") == "node1" and o["start"] > B + 80)
    o.update(result="ok", srv=IP["node1"], conn_srv=IP["node1"], lsn="0/2FFFF00", ins=round(o["start"] + 0.002, 4),
             commit=round(o["start"] + 0.004, 4))
    for k in ("phase", "error", "code"):
        o.pop(k, None)


def c_two_writers_no_history(r):
    # as above, with no history entry for node2's promotion (its agent died before writing it,
    # as in the kill9_agent_promoting fault): node2's own writes prove it was a primary
    r.history_key = "[]"
    c_two_writers_direct(r)


def c_zombie_before_promotion(r):
    # node1 acknowledges a direct write after node2 took the key (B+61.502) but before node2
    # was a primary (history B+62.3, first insert B+62.5): a write without a lease, reported as
    # a warning, not as two writers
    o = r.op(101, "direct", "node1", B + 61.55, "ok", srv=IP["node1"])
    o["key"] = 5


def c_commit_before_promotion(r):
    # COMMIT sent to node1 before node2's promotion, acknowledged after it: it may have been
    # processed before, so it is not counted
    r.op(101, "direct", "node1", B + 62.2, "ok", srv=IP["node1"], commit=B + 62.25, dur=0.9)


def c_crash_agent(r):
    r.nemesis.append({"t": B + 90.0, "phase": "unexpected_exit", "fault": "agent", "target": "node3",
                      "detail": "agent pid 4242 exited; see node3.log"})


def c_crash_proxy(r):
    r.nemesis.append({"t": B + 95.0, "phase": "unexpected_exit", "fault": "proxy", "target": "proxy",
                      "detail": "proxy pid 4343 exited; see proxy.log"})


def c_sanitizer_asan(r):
    r.logs["node2"] += ["=================================================================",
                        "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010",
                        "    #0 0x55d in tick src/ha/agent.c:123"]


def c_sanitizer_ubsan(r):
    r.logs["proxy"] += ["src/proxy/worker.c:88:17: runtime error: signed integer overflow: "
                        "2147483647 + 1 cannot be represented in type 'int'"]


def c_sanitizer_file(r):
    # sanitizers with log_path write their report to a file of their own
    r.extra_files["sanitizer.4444"] = ("==4444==ERROR: LeakSanitizer: detected memory leaks\n"
                                       "SUMMARY: AddressSanitizer: 24 byte(s) leaked in 1 allocation(s).\n")


def c_hung_client(r):
    # proxy client 1 stops making progress at B+80 while node2 is the leader all along
    drop = [o for o in r.ops if o["client"] == 1 and o["start"] > B + 80]
    for o in drop:
        r.ops.remove(o)


def c_hung_not_stopping(r):
    # the workload did not end when told to (the harness kills it and says so)
    r.nemesis.append({"t": B + 190.5, "phase": "unexpected_exit", "fault": "workload", "target": "workload",
                      "detail": "the workload did not stop within 30 s"})


def c_hung_not_joined(r):
    r.meta["not_joined"] = ["d2"]


def c_no_convergence(r):
    r.t_conv = None
    r.converged_s = None
    r.leader = None


def c_phantom(r):
    r.final_extra[999999] = (IP["node2"], 4)


def c_failed_committed(r):
    o = r.find(lambda o: o["result"] == "failed" and o.get("node") == "node3" and o["start"] > B + 120)
    r.final_extra[o["id"]] = (IP["node2"], o["key"])


def has_warning(key):
    def t(rep):
        return any(isinstance(w, dict) and w.get(key) for w in rep.get("warnings", []))
    return t


def first_example_via(via):
    def t(rep):
        v = [x for x in rep.get("violations", []) if x.get("check") == "two_writers"]
        return bool(v) and v[0]["examples"][0].get("via") == via
    return t


def counts_faults(rep):
    return rep.get("fault_counts") == {"kill9_node": 1}


CASES = [
    ("clean", c_clean, set(), counts_faults),
    ("clean_async", c_clean_async, set(), None),
    ("async_loss_at_failover_allowed", c_async_loss_at_failover, set(), None),
    ("write_after_key_moved_is_a_warning", c_zombie_before_promotion, set(), has_warning("writes_after_leader_key_moved")),
    ("commit_sent_before_promotion_not_counted", c_commit_before_promotion, set(), None),
    ("lost_acknowledged_sync", c_lost_sync, {"lost_acknowledged"}, None),
    ("two_writers_proxy", c_two_writers_proxy, {"two_writers"}, first_example_via("proxy")),
    ("two_writers_direct", c_two_writers_direct, {"two_writers"}, first_example_via("direct")),
    ("two_writers_direct_no_history_entry", c_two_writers_no_history, {"two_writers"}, first_example_via("direct")),
    ("crashed_agent", c_crash_agent, {"crash"}, None),
    ("crashed_proxy", c_crash_proxy, {"crash"}, None),
    ("sanitizer_asan_in_node_log", c_sanitizer_asan, {"sanitizer"}, None),
    ("sanitizer_ubsan_in_proxy_log", c_sanitizer_ubsan, {"sanitizer"}, None),
    ("sanitizer_report_file", c_sanitizer_file, {"sanitizer"}, None),
    ("hung_client", c_hung_client, {"hung_workload"}, None),
    ("hung_workload_not_stopping", c_hung_not_stopping, {"hung_workload"}, None),
    ("hung_thread_at_stop", c_hung_not_joined, {"hung_workload"}, None),
    ("no_convergence", c_no_convergence, {"convergence"}, None),
    ("phantom_row", c_phantom, {"phantom"}, None),
    ("failed_before_commit_present", c_failed_committed, {"failed_committed"}, None),
]


def main():
    verbose = "-v" in sys.argv
    keep = "--keep" in sys.argv
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    top = tempfile.mkdtemp(prefix="fault-selftest.")
    base = Run()
    passed = failed = 0
    for name, change, want, extra in CASES:
        r = copy.deepcopy(base)
        change(r)
        d = os.path.join(top, name)
        r.write(d)
        rep_path = os.path.join(d, "report.json")
        p = subprocess.run([py, FAULT_PY, "check", "--offline", "--dir", d, "--mode", r.mode, "--nodes", NODES,
                            "--etcd", "http://127.0.0.1:9", "--scope", "it", "--t-start", str(B + 50),
                            "--t-heal", str(B + 150.5), "--report", rep_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        why = ""
        got = set()
        rep = {}
        if not os.path.exists(rep_path):
            why = "no report (rc %d): %s" % (p.returncode, p.stderr.strip().splitlines()[-1:] or "")
        else:
            with open(rep_path) as f:
                rep = json.load(f)
            got = set(v.get("check") for v in rep.get("violations", []))
            if got != want:
                why = "reported %s, expected %s" % (sorted(got) or "nothing", sorted(want) or "nothing")
            elif (p.returncode != 0) != bool(want):
                why = "exit code %d" % p.returncode
            elif extra and not extra(rep):
                why = "report lacks the expected detail (%s)" % extra.__name__
        if why:
            failed += 1
            print("FAIL  %-42s %s" % (name, why))
            if verbose:
                print("      " + p.stdout.strip())
                for v in rep.get("violations", []):
                    print("      " + json.dumps(v, default=str)[:400])
        else:
            passed += 1
            print("ok    %-42s %s" % (name, ("reported " + ",".join(sorted(got))) if got else "passes"))
            if verbose:
                print("      " + p.stdout.strip())
    if keep or failed:
        print("run directories: %s" % top)
    else:
        shutil.rmtree(top, ignore_errors=True)
    print("selftest: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
