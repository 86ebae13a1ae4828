#!/usr/bin/env python3
"""Same-rows workload for active-active tests, on table
w(id int primary key, v text not null, n int not null default 0) of every node named, each
operation one transaction on a hot set of keys:
- update: the row is read (locked), then v set to a token naming the node and the operation;
- insert: the key is read (locked); absent, it is inserted (an insert racing another of the same
  key on that node fails and is not counted); present, it is updated as above;
- delete.
Every acknowledged write (committed, and it changed a row) is logged in LOGDIR/NODE.log as a
JSON line {"node", "seq", "key", "token" (null for a delete), "old" (the value it replaced, read
under the row lock; null when there was none)}, for aa_audit.py.

Without --tick-file each node has its own client thread, all at once. With --tick-file F (nodes
run under libfaketime reading F, see lib_aa.sh), the clients go in steps: at step i the file is
set to a new time (a second later each step) and every node runs one operation, in a
REPEATABLE READ transaction whose snapshot is taken before any node of the step writes: the
nodes' commits of one step are concurrent and carry equal timestamps, while each node's own
commits stay in time order, and a change made after seeing another carries a later time.

usage: aa_workload.py [--tick-file F] SEED OPS KEYS LOGDIR NODE=DSN...
"""
import datetime
import json
import os
import random
import sys
import threading

import psycopg2


class Client:
    def __init__(self, node, dsn, seed, keys, logdir):
        self.node = node
        self.conn = psycopg2.connect(dsn)
        self.cur = self.conn.cursor()
        self.rnd = random.Random(seed)
        self.keys = keys
        self.log = open(os.path.join(logdir, node + ".log"), "w")

    def op(self, i, barrier=None):
        """one operation; with a barrier, in a REPEATABLE READ transaction whose snapshot is
        taken before every node passes the barrier (so it sees no other node's operation of
        the same step; one that must would fail and is not counted)"""
        if barrier is not None:
            self.cur.execute("SELECT 1")
            barrier.wait()
        k = self.rnd.randint(1, self.keys)
        token = f"{self.node}-{i}"
        r = self.rnd.random()
        entry = None
        cur = self.cur
        try:
            if r < 0.8:
                cur.execute("SELECT v FROM w WHERE id = %s FOR UPDATE", (k,))
                row = cur.fetchone()
                if row is not None:
                    cur.execute("UPDATE w SET v = %s, n = n + 1 WHERE id = %s", (token, k))
                    entry = {"token": token, "old": row[0]}
                elif r >= 0.5:
                    cur.execute("INSERT INTO w (id, v) VALUES (%s, %s)", (k, token))
                    entry = {"token": token, "old": None}
            else:
                cur.execute("DELETE FROM w WHERE id = %s RETURNING v", (k,))
                row = cur.fetchone()
                if row is not None:
                    entry = {"token": None, "old": row[0]}
            self.conn.commit()
        except (psycopg2.errors.UniqueViolation, psycopg2.errors.SerializationFailure):
            self.conn.rollback()
            entry = None
        if entry is not None:
            entry.update({"node": self.node, "seq": i, "key": k})
            self.log.write(json.dumps(entry) + "\n")

    def close(self):
        self.log.close()
        self.conn.close()


def in_parallel(clients, fn):
    """fn(client) for every client at once, in threads; any error ends the run"""
    errors = []

    def run(c):
        try:
            fn(c)
        except Exception as e:  # reported, and the run fails
            errors.append(f"{c.node}: {e}")

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("aa_workload: " + "; ".join(errors))


def main():
    args = sys.argv[1:]
    tick_file = None
    if args and args[0] == "--tick-file":
        tick_file, args = args[1], args[2:]
    seed, ops, keys, logdir = int(args[0]), int(args[1]), int(args[2]), args[3]
    clients = []
    for n, spec in enumerate(args[4:]):
        node, dsn = spec.split("=", 1)
        clients.append(Client(node, dsn, seed * 100 + n, keys, logdir))
    if tick_file:
        for c in clients:
            c.conn.set_session(isolation_level="REPEATABLE READ")
        # on from the file's time: a node's clock never goes back
        with open(tick_file) as f:
            base = datetime.datetime.strptime(f.read().strip(), "%Y-%m-%d %H:%M:%S")
        for i in range(ops):
            with open(tick_file + ".new", "w") as f:
                f.write((base + datetime.timedelta(seconds=i + 1)).strftime("%Y-%m-%d %H:%M:%S") + "\n")
            os.replace(tick_file + ".new", tick_file)
            # all nodes at once within the step, none seeing another's operation of the step:
            # their commits are concurrent, and carry the step's time
            barrier = threading.Barrier(len(clients))
            in_parallel(clients, lambda c, i=i, b=barrier: c.op(i, b))
    else:
        in_parallel(clients, lambda c: [c.op(i) for i in range(ops)])
    for c in clients:
        c.close()


if __name__ == "__main__":
    main()
