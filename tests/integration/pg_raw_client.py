#!/usr/bin/python3
"""A PostgreSQL client that speaks the wire protocol itself, so a test can see exactly which
messages the server sent (a driver would hide a reply that arrived before the connection was
lost). pg_raw_client.py HOST PORT USER APPLICATION_NAME simple|extended SQL
Connects (trust authentication), prints READY once the session is up, sends SQL with the simple
protocol (Query: its CommandComplete comes after the commit, so it is the acknowledgement) or
the extended one (Parse, Bind, Execute, Sync: the Execute's CommandComplete may come before the
commit, which happens at Sync; the ReadyForQuery that follows the commit is the
acknowledgement), then prints the type letter of every message that comes back, one per line,
as it comes ('C' CommandComplete, 'Z' ReadyForQuery, 'E' error, 'N' notice), and CLOSED when
the server closes the connection."""
import socket
import struct
import sys


def msg(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


def read_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            return None
        b += chunk
    return b


def read_msg(s):
    head = read_exact(s, 5)
    if head is None:
        return None, None
    (length,) = struct.unpack("!I", head[1:5])
    body = read_exact(s, length - 4)
    if body is None:
        return None, None
    return head[0:1], body


def main():
    host, port, user, app, mode, sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
    s = socket.create_connection((host, port), timeout=60)
    params = b"user\0" + user.encode() + b"\0database\0postgres\0application_name\0" + app.encode() + b"\0\0"
    body = struct.pack("!I", 196608) + params
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    while True:
        kind, body = read_msg(s)
        if kind is None:
            sys.exit("connection closed during startup")
        if kind == b"E":
            sys.exit("startup error: " + body.decode(errors="replace"))
        if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            sys.exit("authentication other than trust is not supported")
        if kind == b"Z":
            break
    print("READY", flush=True)
    q = sql.encode() + b"\0"
    if mode == "simple":
        s.sendall(msg(b"Q", q))
    else:
        s.sendall(msg(b"P", b"\0" + q + b"\0\0") + msg(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0")
                  + msg(b"E", b"\0" + b"\0\0\0\0") + msg(b"S", b""))
    s.settimeout(None)
    while True:
        try:
            kind, body = read_msg(s)
        except OSError:
            kind = None
        if kind is None:
            print("CLOSED", flush=True)
            return
        print(kind.decode(), flush=True)


main()
