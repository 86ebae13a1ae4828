#!/usr/bin/env python3
"""Write the seed inputs of the fuzz targets into tests/fuzz/seeds/<target>/ (run from anywhere).
Seeds are small valid inputs that show each target the shapes it should mutate."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
RS = b"\x1e"   # separates the parts of one input (see each target's header)


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def pg_msg(tag, body):
    return tag + struct.pack("!I", len(body) + 4) + body


def startup(params):
    body = struct.pack("!I", 196608) + b"".join(k + b"\0" + v + b"\0" for k, v in params) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def server_hello():
    return (pg_msg(b"R", struct.pack("!I", 0)) +
            pg_msg(b"S", b"server_version\x0015.8\x00") +
            pg_msg(b"K", struct.pack("!II", 4242, 0x1234abcd)) +
            pg_msg(b"Z", b"I"))


def pg_protocol():
    st = startup([(b"user", b"postgres"), (b"database", b"postgres")])
    ssl = struct.pack("!II", 8, 80877103)
    gss = struct.pack("!II", 8, 80877104)
    cancel = struct.pack("!IIII", 16, 80877102, 4242, 0x1234abcd)
    sep = b"\xff\x00"
    write("fuzz_pg_protocol", "plain", b"\x03" + st + sep + server_hello())
    write("fuzz_pg_protocol", "ssl_refused", b"\x01" + ssl + st + sep + b"N" + server_hello())
    write("fuzz_pg_protocol", "gss_then_ssl", b"\x05" + gss + ssl + st + sep + b"NN" + server_hello())
    write("fuzz_pg_protocol", "ssl_accepted", b"\x07" + ssl + sep + b"S\x16\x03\x01")
    write("fuzz_pg_protocol", "cancel", b"\x10" + cancel + sep)
    write("fuzz_pg_protocol", "auth_error", b"\x02" + st + sep +
          pg_msg(b"E", b"SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"))


MEMBER = ('{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni",'
          '"state":"running","role":"primary","version":"0.1.0","xlog_location":50331744,'
          '"timeline":2,"replication_state":"streaming","tags":{"nofailover":false,'
          '"failover_priority":2,"nosync":true},"pending_restart":false}')
REPLICA = ('{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni",'
           '"state":"running","role":"replica","xlog_location":50331000,"timeline":2}')
CONFIG = ('{"ttl":5,"loop_wait":1,"retry_timeout":3,"maximum_lag_on_failover":1048576,'
          '"synchronous_mode":true,"synchronous_mode_strict":false,"synchronous_node_count":1,'
          '"postgresql":{"use_pg_rewind":true,"use_slots":true,"parameters":{"work_mem":"8MB",'
          '"max_connections":100}}}')
SYNC = '{"leader":"node1","sync_standby":"node2,node3","pgvigil_catchup":{"node3":"0/5000000"}}'
FAILOVER = '{"leader":"node1","member":"node2","scheduled_at":null}'
HISTORY = '[[1,50331744,"no recovery target specified","2026-11-22T10:00:00+00:00","node2"]]'
PATRONI = ('{"state":"running","role":"replica","server_version":150008,"timeline":2,'
           '"xlog":{"received_location":50331744,"replayed_location":50331000},'
           '"tags":{"nofailover":false,"failover_priority":1}}')


def cluster_json():
    parts = ["7300000000000000001", "node1", MEMBER, REPLICA, CONFIG, SYNC, FAILOVER, HISTORY,
             '{"optime":50331744}', REPLICA]
    write("fuzz_cluster_json", "full", RS.join(p.encode() for p in parts))
    write("fuzz_cluster_json", "member", MEMBER)
    write("fuzz_cluster_json", "sync", SYNC)
    write("fuzz_cluster_json", "failover", FAILOVER)
    write("fuzz_cluster_json", "patroni", PATRONI)


NODE_YML = """scope: demo
name: node1
log:
  level: info
etcd3:
  hosts: 127.0.0.1:2379,127.0.0.1:2381
  username: root
  password: secret
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
  authentication:
    username: admin
    password: secret
bootstrap:
  dcs:
    ttl: 5
    loop_wait: 0.5
    retry_timeout: 2
    maximum_lag_on_failover: 10485760
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 30
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgvigil/node1
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser:
      username: postgres
      password: it-super
    replication:
      username: replicator
      password: it-repl
  pg_hba:
    - host replication replicator 127.0.0.1/32 scram-sha-256
  callbacks:
    on_role_change: /bin/true
tags:
  nofailover: false
  failover_priority: 2
vip:
  address: 10.0.0.100/24
  interface: eth0
dns:
  server: 127.0.0.1:53
  zone: example.test
  record: db.example.test
  tsig_key_name: pgvigil
  tsig_secret: c2VjcmV0c2VjcmV0c2VjcmV0
notify:
  webhook:
    url: http://127.0.0.1:9000/hook
    secret: s3cret
  command: /bin/true
"""
PROXY_YML = """scope: demo
etcd3:
  host: 127.0.0.1:2379
proxy:
  admin_listen: 127.0.0.1:5009
  workers: 2
  connect_wait: 30
  connect_timeout: 2
  max_replica_lag: 1048576
  routes:
    - name: rw
      listen: 127.0.0.1:5000
      role: primary
    - name: ro
      listen: 127.0.0.1:5001
      role: replica
      fallback_primary: true
    - name: odoo
      listen: 127.0.0.1:8069
      role: primary
      protocol: tcp
      target_port: 8069
"""


def config_yaml():
    write("fuzz_config_yaml", "node", NODE_YML)
    write("fuzz_config_yaml", "proxy", PROXY_YML)
    write("fuzz_config_yaml", "client", "scope: demo\netcd3:\n  hosts:\n    - 127.0.0.1:2379\n")
    # found by this target: a value spanning lines was quoted into a two-line error
    write("fuzz_config_yaml", "multiline_value", "scope: demo\netcd3:\n  hosts:\n    s:.\n\n    - 127.0.\n")
    write("fuzz_config_yaml", "anchors", "scope: &s demo\nname: *s\nrestapi: {listen: '[::1]:8008'}\n")


def dynconfig():
    write("fuzz_dynconfig", "merge", RS.join([CONFIG.encode(),
          b'{"ttl":10,"postgresql":{"parameters":{"work_mem":null,"wal_level":"replica"}}}',
          b"postgresql.parameters.max_wal_senders=10"]))
    write("fuzz_dynconfig", "set", RS.join([b"{}", b"{}", b"synchronous_mode=true"]))
    write("fuzz_dynconfig", "pause", RS.join([b'{"pause":true,"loop_wait":0.5,"ttl":2}', b'{"pause":null}',
          b"loop_wait=0.25"]))


AUTH = "Authorization: Basic YWRtaW46c2VjcmV0\r\n"   # admin:secret


def rest_http():
    def req(name, text):
        write("fuzz_rest_http", name, text)
    req("get_primary", "GET /primary HTTP/1.1\r\nHost: x\r\n\r\n")
    req("head_replica_lag", "HEAD /replica?lag=1MB&tag_nofailover=false HTTP/1.1\r\nHost: x\r\n\r\n")
    req("get_patroni", "GET /patroni HTTP/1.0\r\n\r\n")
    req("get_metrics", "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    req("options", "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n")
    body = '{"leader":"node1","candidate":"node2"}'
    req("switchover", "POST /switchover HTTP/1.1\r\nHost: x\r\n" + AUTH +
        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    req("failover_noauth", "POST /failover HTTP/1.1\r\nHost: x\r\nContent-Length: 21\r\n\r\n{\"candidate\":\"node2\"}")
    patch = '{"ttl":10,"postgresql":{"parameters":{"work_mem":"8MB"}}}'
    req("patch_config_chunked", "PATCH /config HTTP/1.1\r\nHost: x\r\n" + AUTH +
        "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(patch), patch))
    req("reinit", "POST /reinitialize HTTP/1.1\r\nHost: x\r\n" + AUTH + "Content-Length: 14\r\n\r\n{\"force\":true}")
    req("pipelined", "GET /leader HTTP/1.1\r\nHost: x\r\n\r\nGET /sync HTTP/1.1\r\nHost: x\r\n\r\n")


def proxy_stream():
    st = startup([(b"user", b"postgres"), (b"database", b"postgres")])
    ssl = struct.pack("!II", 8, 80877103)
    sep = b"\xff\x00"
    query = pg_msg(b"Q", b"select 1\x00") + pg_msg(b"X", b"")
    result = (pg_msg(b"T", b"\x00\x01?column?\x00" + b"\x00" * 6 + b"\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00") +
              pg_msg(b"D", b"\x00\x01\x00\x00\x00\x011") + pg_msg(b"C", b"SELECT 1\x00") + pg_msg(b"Z", b"I"))
    write("fuzz_proxy_stream", "pg_session", b"\x00" + st + query + sep + server_hello() + result)
    write("fuzz_proxy_stream", "pg_ssl_refused", b"\x00" + ssl + st + sep + b"N" + server_hello())
    write("fuzz_proxy_stream", "pg_cancel", b"\x00" + struct.pack("!IIII", 16, 80877102, 4242, 7) + sep)
    write("fuzz_proxy_stream", "tcp_http", b"\x01GET / HTTP/1.1\r\nHost: x\r\n\r\n" + sep +
          b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    write("fuzz_proxy_stream", "tcp_server_first", b"\x01" + sep + b"220 smtp ready\r\n" * 50)


def etcd_answers():
    import base64 as b64

    def enc(x):
        return b64.b64encode(x.encode()).decode()
    kv = ('{"key":"%s","value":"%s","mod_revision":"5","create_revision":"5","lease":"7587"}'
          % (enc("/service/fuzz/leader"), enc("node1")))
    member = ('{"key":"%s","value":"%s","mod_revision":"6","create_revision":"6","version":"1"}'
              % (enc("/service/fuzz/members/node1"), enc(MEMBER)))
    answers = {
        "load": (0, '{"header":{"cluster_id":"1","revision":"12"},"kvs":[%s,%s],"count":"2"}' % (kv, member)),
        "keepalive": (1, '{"result":{"header":{"revision":"12"},"ID":"7587","TTL":"5"}}'),
        "grant": (1, '{"header":{"revision":"12"},"ID":"7587","TTL":"5"}'),
        "create": (2, '{"header":{"revision":"13"},"succeeded":true,"responses":[{"response_put":{}}]}'),
        "put": (3, '{"header":{"revision":"14"},"succeeded":true}'),
        "cas_failed": (4, '{"header":{"revision":"14"}}'),
        "cas_rev": (5, '{"header":{"revision":"15"},"succeeded":true}'),
        "del": (6, '{"header":{"revision":"16"},"succeeded":true,"responses":[{"response_delete_range":{"deleted":"1"}}]}'),
        "revoke": (7, '{"header":{"revision":"17"}}'),
        "watch": (8, '{"result":{"header":{"revision":"17"},"created":true}}\n'
                  '{"result":{"header":{"revision":"18"},"events":[{"kv":%s}]}}\n' % kv),
        "watch_compacted": (8, '{"result":{"header":{"revision":"18"},"compact_revision":"15","canceled":true}}\n'),
        "auth_token": (0x10, '{"header":{"revision":"18"},"token":"abc.def.1"}'),
        "error": (3, '{"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"}'),
    }
    for name, (op, text) in answers.items():
        write("fuzz_etcd_answers", name, bytes([op, 0]) + text.encode())
    write("fuzz_etcd_answers", "unavailable", bytes([0, 9]) + b'{"error":"etcdserver: no leader","code":14}')


def dns_answers():
    def name(n):
        return b"".join(bytes([len(p)]) + p.encode() for p in n.rstrip(".").split(".")) + b"\0"
    q_a = name("db.example.test.") + struct.pack("!HH", 1, 1)
    rr_a = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + bytes([127, 0, 0, 2])
    q_aaaa = name("db.example.test.") + struct.pack("!HH", 28, 1)
    rr_aaaa = b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 5, 16) + bytes(15) + b"\x01"
    soa = (name("example.test.") + struct.pack("!HHI", 6, 1, 60) +
           struct.pack("!H", 32) + b"\x02ns\xc0\x0c" + b"\x04root\xc0\x0c" + struct.pack("!IIIII", 1, 2, 3, 4, 5))
    write("fuzz_dns_answers", "a_record", b"\x01" + struct.pack("!HHHHHH", 0, 0x8580, 1, 1, 0, 0) + q_a + rr_a)
    write("fuzz_dns_answers", "aaaa_record", b"\x05" + struct.pack("!HHHHHH", 0, 0x8580, 1, 1, 0, 0) + q_aaaa + rr_aaaa)
    write("fuzz_dns_answers", "nxdomain", b"\x01" + struct.pack("!HHHHHH", 0, 0x8583, 1, 0, 1, 0) + q_a + soa)
    write("fuzz_dns_answers", "truncated", b"\x01" + struct.pack("!HHHHHH", 0, 0x8780, 1, 0, 0, 0) + q_a)
    zone = name("example.test.") + struct.pack("!HH", 6, 1)
    write("fuzz_dns_answers", "update_ok", b"\x03" + struct.pack("!HHHHHH", 0, 0xa800, 1, 0, 0, 0) + zone)
    write("fuzz_dns_answers", "update_nxrrset", b"\x0b" + struct.pack("!HHHHHH", 0, 0xa808, 1, 0, 0, 0) + zone)
    write("fuzz_dns_answers", "update_refused", b"\x03" + struct.pack("!HHHHHH", 0, 0xa805, 1, 0, 0, 0) + zone)


def base64():
    write("fuzz_base64", "key", "L3NlcnZpY2UvZGVtby9sZWFkZXI=")
    write("fuzz_base64", "padded2", "bm9kZTE=")
    write("fuzz_base64", "binary", bytes(range(256)))


def wal_record(rmid, info, blocks, main):
    """A PostgreSQL 15 WAL record: blocks are (fork, block, relation or None for the same one)."""
    hdr = b""
    for i, (fork, blk, rel) in enumerate(blocks):
        hdr += struct.pack("<BBH", i, fork | (0x80 if rel is None else 0), 0)
        if rel is not None:
            hdr += struct.pack("<III", *rel)
        hdr += struct.pack("<I", blk)
    if main:
        hdr += struct.pack("<BB", 255, len(main)) + main
    total = 24 + len(hdr)
    return struct.pack("<IIQBBHI", total, 0, 0, info, rmid, 0, 0) + hdr


def wal_summary():
    """Segment bodies for fuzz_wal_summary: first-page info and remaining length, then records."""
    recs = b""
    for r in (wal_record(10, 0, [(0, 7, (1663, 5, 16384)), (2, 0, None)], b"abcd"),
              wal_record(2, 0x10, [], struct.pack("<IIII", 1663, 5, 16500, 0)),
              wal_record(2, 0x20, [], struct.pack("<IIIII", 3, 1663, 5, 16384, 1)),
              wal_record(4, 0x00, [], struct.pack("<IIII", 16400, 1663, 1, 1663)),
              wal_record(0, 0x40, [], b"")):
        recs += r + b"\0" * (-len(r) % 8)
    write("fuzz_wal_summary", "records", struct.pack("<HHI", 0, 0, 0) + recs)
    write("fuzz_wal_summary", "continued", struct.pack("<HHI", 1, 0, 16) + b"\xee" * 16 + recs)


def obj_decode():
    """Stored objects for fuzz_obj_decode (a piece-size byte first): SHA-256 checksummed (kind 0),
    stored as is and gzip-compressed, and an empty one."""
    import hashlib
    for name, raw in (("text", b"pgvigil object " * 40), ("empty", b"")):
        bodies = [(0, raw), (3, gzip_bytes(raw))]
        for kind, tool in ((1, "zstd"), (2, "lz4")):   # from the command-line tools, when there
            body = cli_compress(tool, raw)
            if body is not None:
                bodies.append((kind, body))
        for kind, body in bodies:
            hdr = b"PGVOBJ01" + bytes([kind, 0, 0, 0]) + struct.pack("<IQ", 56, len(raw)) + hashlib.sha256(raw).digest()
            write("fuzz_obj_decode", f"{name}-{kind}", b"\x07" + hdr + body)


def cli_compress(tool, raw):
    import shutil
    import subprocess
    if not shutil.which(tool):
        return None
    return subprocess.run([tool, "-c", "-q"], input=raw, stdout=subprocess.PIPE, check=True).stdout


def gzip_bytes(raw):
    import zlib
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(raw) + c.flush()


if __name__ == "__main__":
    obj_decode()
    wal_summary()
    base64()
    pg_protocol()
    proxy_stream()
    etcd_answers()
    dns_answers()
    cluster_json()
    config_yaml()
    dynconfig()
    rest_http()
