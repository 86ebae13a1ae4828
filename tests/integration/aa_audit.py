#!/usr/bin/env python3
"""Audit of an active-active same-rows run (aa_workload.py): every acknowledged write of a value
is either in the final content, or was seen and replaced by another acknowledged write (its
"old"), or is recorded in a node's pgvigil_aa.conflicts as the version that lost a conflict
(the local one when the remote change won, the remote one when the local version won). A value that vanished otherwise was lost silently. Deletes are not audited here (a
key deleted and inserted again later is no loss); convergence covers them.
Prints one line per unaccounted write; exits 1 if there is any.

usage: aa_audit.py DSN_FOR_CONTENT LOG... -- DSN...   (conflicts are read from every DSN)
"""
import json
import sys

import psycopg2


def remote_value(text, column):
    for part in (text or "").split(", "):
        if part.startswith(column + "="):
            return part[len(column) + 1:]
    return None


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    content_dsn, logs, dsns = args[0], args[1:sep], args[sep + 1:]
    with psycopg2.connect(content_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, v FROM w")
        final = dict(cur.fetchall())
    in_conflicts = set()
    for dsn in dsns:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            # the version that lost: the local one when the remote change won, else the remote one
            cur.execute("SELECT local_row, remote_row, winner FROM pgvigil_aa.conflicts WHERE relation = 'public.w'")
            for local_row, remote_row, winner in cur.fetchall():
                if winner == "remote" and local_row:
                    in_conflicts.add(json.loads(local_row).get("v"))
                if winner == "local" and remote_row:
                    in_conflicts.add(remote_value(remote_row, "v"))
    writes = []
    for path in logs:
        with open(path) as f:
            writes += [json.loads(line) for line in f]
    replaced = {w["old"] for w in writes if w["old"] is not None}
    bad = 0
    values = [w for w in writes if w["token"] is not None]
    for w in values:
        t = w["token"]
        if final.get(w["key"]) != t and t not in replaced and t not in in_conflicts:
            print(f"unaccounted: {t} written to key {w['key']}: final {final.get(w['key'])!r}, replaced by no write, in no conflict")
            bad += 1
    print(f"audit: {len(values)} acknowledged values, {len(replaced)} replaced by a later write,"
          f" {len(in_conflicts)} lost a recorded conflict, {bad} unaccounted")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
