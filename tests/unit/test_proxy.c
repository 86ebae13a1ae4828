/* The proxy's pure parts: the PostgreSQL first packet, BackendKeyData learnt from a byte
 * stream cut at every possible place, the ErrorResponse, conn_url parsing, and which members a
 * route snapshot offers for writes and for reads (proxy_pg.c, proxy_snapshot.c). */
#include "common/common.h"
#include "dcs/aa_group.h"
#include "dcs/site_record.h"
#include "pg/pg.h"
#include "proxy/proxy.h"
#include "proxy/proxy_pg.h"

#include <setjmp.h>
#include <cmocka.h>

static size_t put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

static void test_first_packet(void **state)
{
    (void)state;
    unsigned char b[32] = {0};
    uint32_t pid = 0, key = 0;
    assert_int_equal(pg_first_packet(b, 0, &pid, &key), PGF_NEED_MORE);
    size_t n = put32(b, 16);
    n += put32(b + n, PG_CANCEL_CODE);
    n += put32(b + n, 4242);
    n += put32(b + n, 0xdeadbeef);
    for (size_t k = 0; k < 16; k++)
        assert_int_equal(pg_first_packet(b, k, &pid, &key), PGF_NEED_MORE);
    assert_int_equal(pg_first_packet(b, 16, &pid, &key), PGF_CANCEL);
    assert_int_equal(pid, 4242);
    assert_int_equal(key, 0xdeadbeef);
    /* SSLRequest, a startup packet, garbage: forwarded as they are */
    put32(b, 8);
    put32(b + 4, PG_SSL_CODE);
    assert_int_equal(pg_first_packet(b, 8, &pid, &key), PGF_OTHER);
    put32(b, 80);
    put32(b + 4, 196608);
    assert_int_equal(pg_first_packet(b, 8, &pid, &key), PGF_OTHER);
    memset(b, 0xff, 8);
    assert_int_equal(pg_first_packet(b, 8, &pid, &key), PGF_OTHER);
}

/* client: [SSLRequest] startup; server: ['N'] R(ok) S(param) K(pid,key) Z */
static size_t client_bytes(unsigned char *b, bool ssl)
{
    size_t n = 0;
    if (ssl) {
        n += put32(b + n, 8);
        n += put32(b + n, PG_SSL_CODE);
    }
    const char params[] = "user\0postgres\0database\0postgres\0\0";
    n += put32(b + n, (uint32_t)(8 + sizeof(params) - 1));
    n += put32(b + n, 196608);
    memcpy(b + n, params, sizeof(params) - 1);
    return n + sizeof(params) - 1;
}

static size_t server_bytes(unsigned char *b, bool ssl, bool with_key)
{
    size_t n = 0;
    if (ssl)
        b[n++] = 'N';
    b[n++] = 'R';
    n += put32(b + n, 8);
    n += put32(b + n, 0);
    const char ps[] = "server_version\00015.20\0";
    b[n++] = 'S';
    n += put32(b + n, (uint32_t)(4 + sizeof(ps) - 1));
    memcpy(b + n, ps, sizeof(ps) - 1);
    n += sizeof(ps) - 1;
    if (with_key) {
        b[n++] = 'K';
        n += put32(b + n, 12);
        n += put32(b + n, 777);
        n += put32(b + n, 0x01020304);
    }
    b[n++] = 'Z';
    n += put32(b + n, 5);
    b[n++] = 'I';
    return n;
}

static void test_keyscan_every_split(void **state)
{
    (void)state;
    unsigned char c[128], s[128];
    for (int ssl = 0; ssl < 2; ssl++) {
        size_t cn = client_bytes(c, ssl), sn = server_bytes(s, ssl, true);
        for (size_t cut = 0; cut <= sn; cut++) {
            PgKeyScan ks;
            memset(&ks, 0, sizeof(ks));
            /* the client side is seen first, split in two as well */
            pg_keyscan_client(&ks, c, cut % (cn + 1));
            pg_keyscan_client(&ks, c + cut % (cn + 1), cn - cut % (cn + 1));
            pg_keyscan_server(&ks, s, cut);
            pg_keyscan_server(&ks, s + cut, sn - cut);
            assert_true(ks.found);
            assert_true(ks.done);
            assert_int_equal(ks.pid, 777);
            assert_int_equal(ks.key, 0x01020304);
        }
        /* byte by byte */
        PgKeyScan ks;
        memset(&ks, 0, sizeof(ks));
        for (size_t i = 0; i < cn; i++)
            pg_keyscan_client(&ks, c + i, 1);
        for (size_t i = 0; i < sn; i++)
            pg_keyscan_server(&ks, s + i, 1);
        assert_true(ks.found);
    }
}

static void test_keyscan_gives_up(void **state)
{
    (void)state;
    unsigned char c[128], s[128];
    PgKeyScan ks;
    /* TLS accepted: nothing more to learn */
    memset(&ks, 0, sizeof(ks));
    size_t cn = client_bytes(c, true);
    pg_keyscan_client(&ks, c, 8);
    s[0] = 'S';
    pg_keyscan_server(&ks, s, 1);
    assert_true(ks.done);
    assert_false(ks.found);
    (void)cn;
    /* ReadyForQuery without a key (e.g. a newer protocol): done, nothing found */
    memset(&ks, 0, sizeof(ks));
    cn = client_bytes(c, false);
    pg_keyscan_client(&ks, c, cn);
    size_t sn = server_bytes(s, false, false);
    pg_keyscan_server(&ks, s, sn);
    assert_true(ks.done);
    assert_false(ks.found);
    /* garbage from the client */
    memset(&ks, 0, sizeof(ks));
    memset(c, 0xee, 16);
    pg_keyscan_client(&ks, c, 16);
    assert_true(ks.done);
}

static void test_error_response(void **state)
{
    (void)state;
    unsigned char b[256];
    size_t n = pg_error_response(b, sizeof(b), "no primary available");
    assert_true(n > 0);
    assert_int_equal(b[0], 'E');
    uint32_t len = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
    assert_int_equal(len, n - 1);
    assert_int_equal(b[n - 1], 0);
    assert_non_null(memmem(b, n, "C57P03", 7));
    assert_non_null(memmem(b, n, "Mno primary available", 22));
    assert_int_equal(pg_error_response(b, 10, "too long for ten bytes"), 0);
}

static void test_conn_url(void **state)
{
    (void)state;
    char host[128];
    int port = 0;
    assert_true(proxy_parse_conn_url("postgres://127.0.0.1:5433/postgres", host, sizeof(host), &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5433);
    assert_true(proxy_parse_conn_url("postgres://user@db1.example:6000/x", host, sizeof(host), &port));
    assert_string_equal(host, "db1.example");
    assert_int_equal(port, 6000);
    assert_true(proxy_parse_conn_url("postgresql://[::1]:5432/postgres", host, sizeof(host), &port));
    assert_string_equal(host, "::1");
    assert_true(proxy_parse_conn_url("postgres://db2/postgres", host, sizeof(host), &port));
    assert_string_equal(host, "db2");
    assert_int_equal(port, 5432);
    assert_false(proxy_parse_conn_url("db2:5432", host, sizeof(host), &port));
    assert_false(proxy_parse_conn_url("postgres:///x", host, sizeof(host), &port));
    assert_false(proxy_parse_conn_url("postgres://h:99999/x", host, sizeof(host), &port));
}

static Member *add_member(Cluster *c, const char *name, int port, const char *role, const char *state,
                          const char *repl, Lsn pos)
{
    c->members = xrealloc(c->members, (size_t)(c->n_members + 1) * sizeof(Member));
    Member *m = &c->members[c->n_members++];
    memset(m, 0, sizeof(*m));
    str_copy(m->name, sizeof(m->name), name);
    str_fmt(m->conn_url, sizeof(m->conn_url), "postgres://127.0.0.1:%d/postgres", port);
    str_copy(m->role, sizeof(m->role), role);
    str_copy(m->state, sizeof(m->state), state);
    str_copy(m->replication_state, sizeof(m->replication_state), repl);
    m->xlog_location = pos;
    return m;
}

/* Two sites: writes to the primary of the site that is not a standby cluster, never to two. */
static void test_snapshot_two_sites(void **state)
{
    (void)state;
    Cluster a, b;
    cluster_init(&a);
    cluster_init(&b);
    str_copy(a.leader, sizeof(a.leader), "a1");
    add_member(&a, "a1", 5001, "primary", "running", "", 100000000);
    add_member(&a, "a2", 5002, "replica", "running", "streaming", 100000000);
    str_copy(b.leader, sizeof(b.leader), "b1");
    add_member(&b, "b1", 5003, "standby_leader", "running", "streaming", 100000000);
    add_member(&b, "b2", 5004, "replica", "running", "streaming", 100000000);
    b.config.standby.present = true;
    ProxySnapshot *m = proxy_snapshot_merge(proxy_snapshot_build(&a, 1048576, true, false), false,
                                            proxy_snapshot_build(&b, 1048576, true, false), true);
    assert_int_equal(m->n_backends, 4);
    assert_true(m->primary >= 0);
    assert_string_equal(m->backends[m->primary].name, "a1");
    assert_true(m->backends[proxy_snapshot_find(m, "a2")].eligible);
    assert_false(m->backends[proxy_snapshot_find(m, "b1")].eligible);   /* the standby site: no reads */
    assert_false(m->backends[proxy_snapshot_find(m, "b2")].eligible);
    proxy_snapshot_unref(m);

    /* after a site switchover, the other site's primary, seen from a's proxy */
    a.config.standby.present = true;
    str_copy(a.members[0].role, sizeof(a.members[0].role), "standby_leader");
    b.config.standby.present = false;
    str_copy(b.members[0].role, sizeof(b.members[0].role), "primary");
    m = proxy_snapshot_merge(proxy_snapshot_build(&a, 1048576, true, false), true,
                             proxy_snapshot_build(&b, 1048576, true, false), false);
    assert_string_equal(m->backends[m->primary].name, "b1");
    assert_true(m->backends[proxy_snapshot_find(m, "b2")].eligible);
    assert_false(m->backends[proxy_snapshot_find(m, "a2")].eligible);
    proxy_snapshot_unref(m);

    /* both sites claim a primary: writes go nowhere */
    a.config.standby.present = false;
    str_copy(a.members[0].role, sizeof(a.members[0].role), "primary");
    m = proxy_snapshot_merge(proxy_snapshot_build(&a, 1048576, true, false), false,
                             proxy_snapshot_build(&b, 1048576, true, false), false);
    assert_int_equal(m->primary, -1);
    proxy_snapshot_unref(m);

    /* ... unless a newer site record names one of them: b promoted over a lost site a (whose last
     * read still says primary) */
    a.site_json = str_dup("{\"state\":\"done\",\"from\":\"site-b\",\"to\":\"site-a\",\"epoch\":1}");
    b.site_json = str_dup("{\"state\":\"promoted\",\"from\":\"site-a\",\"to\":\"site-b\",\"epoch\":2}");
    assert_string_equal(site_record_winner(&a, "site-a", &b, "site-b"), "site-b");
    assert_string_equal(site_record_winner(&b, "site-b", &a, "site-a"), "site-b");
    free(b.site_json);
    b.site_json = str_dup("{\"state\":\"done\",\"from\":\"site-b\",\"to\":\"site-a\",\"epoch\":1}");
    assert_string_equal(site_record_winner(&a, "site-a", &b, "site-b"), "");   /* same epoch: nothing settled */
    free(b.site_json);
    b.site_json = str_dup("{\"state\":\"rolled back\",\"from\":\"site-b\",\"to\":\"site-a\",\"epoch\":3}");
    assert_string_equal(site_record_winner(&a, "site-a", &b, "site-b"), "site-b");   /* a rollback names its from */
    free(a.site_json);
    free(b.site_json);
    a.site_json = b.site_json = NULL;

    /* the other site unknown (its etcd silent too long): this site alone */
    m = proxy_snapshot_merge(proxy_snapshot_build(&a, 1048576, true, false), false, NULL, false);
    assert_string_equal(m->backends[m->primary].name, "a1");
    proxy_snapshot_unref(m);
    cluster_free(&a);
    cluster_free(&b);
}

/* site promote --target-time: the record asks its target of the named site's servers still on
 * the timeline it started from, and of no one else */
static void test_site_record_target_time(void **state)
{
    (void)state;
    json_t *rec = json_loads("{\"state\":\"promoting\",\"from\":\"site-a\",\"to\":\"site-b\",\"timeline\":3,"
                             "\"target_time\":\"2026-12-05 11:00:00+00\",\"target_member\":\"node4\"}", 0, NULL);
    const char *m = NULL;
    assert_string_equal(site_record_target_time(rec, "site-b", 3, &m), "2026-12-05 11:00:00+00");
    assert_string_equal(m, "node4");
    assert_null(site_record_target_time(rec, "site-a", 3, &m));    /* another site */
    json_object_set_new(rec, "state", json_string("promoted"));
    assert_non_null(site_record_target_time(rec, "site-b", 3, &m));
    json_object_set_new(rec, "target_done", json_true());          /* the member was promoted at T */
    assert_null(site_record_target_time(rec, "site-b", 3, &m));
    json_object_del(rec, "target_done");
    json_object_set_new(rec, "state", json_string("rolled back"));
    assert_null(site_record_target_time(rec, "site-b", 3, &m));
    json_object_set_new(rec, "state", json_string("promoting"));
    json_object_del(rec, "target_time");                          /* a plain site promote */
    assert_null(site_record_target_time(rec, "site-b", 3, &m));
    assert_null(site_record_target_time(NULL, "site-b", 3, &m));
    json_decref(rec);
    assert_true(pg_timestamp_text_ok("2026-12-05 11:00:00+00"));
    assert_false(pg_timestamp_text_ok("now'; drop table t; --"));
    assert_false(pg_timestamp_text_ok("a\\b"));
    assert_false(pg_timestamp_text_ok(""));
}

static void test_snapshot_roles(void **state)
{
    (void)state;
    Cluster c;
    cluster_init(&c);
    str_copy(c.leader, sizeof(c.leader), "n1");
    add_member(&c, "n1", 5001, "primary", "running", "", 100000000);
    add_member(&c, "n2", 5002, "replica", "running", "streaming", 100000000 - 10);
    add_member(&c, "n3", 5003, "replica", "running", "streaming", 100000000 - 5000000);   /* lags 5 MB */
    add_member(&c, "n4", 5004, "replica", "running", "streaming", 100000000)->tags.noloadbalance = true;
    add_member(&c, "n5", 5005, "replica", "starting", "", 0);
    add_member(&c, "n6", 5006, "replica", "running", "in archive recovery", 100000000);
    ProxySnapshot *s = proxy_snapshot_build(&c, 1048576, true, false);
    assert_int_equal(s->n_backends, 6);
    assert_true(s->primary >= 0);
    assert_string_equal(s->backends[s->primary].name, "n1");
    static const struct { const char *name; bool replica, eligible; } want[] = {
        {"n1", false, false}, {"n2", true, true}, {"n3", true, false},
        {"n4", true, false},  {"n5", false, false}, {"n6", true, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        int k = proxy_snapshot_find(s, want[i].name);
        assert_true(k >= 0);
        assert_int_equal(s->backends[k].replica, want[i].replica);
        assert_int_equal(s->backends[k].eligible, want[i].eligible);
    }
    assert_int_equal(s->backends[proxy_snapshot_find(s, "n3")].lag, 5000000);

    /* the same read gives the same routing; etcd lost past the TTL drops the primary only */
    ProxySnapshot *same = proxy_snapshot_build(&c, 1048576, true, false);
    assert_true(proxy_snapshot_same(s, same));
    ProxySnapshot *lost = proxy_snapshot_build(&c, 1048576, false, false);
    assert_int_equal(lost->primary, -1);
    assert_true(lost->backends[proxy_snapshot_find(lost, "n2")].eligible);
    assert_false(proxy_snapshot_same(s, lost));
    proxy_snapshot_unref(same);
    proxy_snapshot_unref(lost);
    proxy_snapshot_unref(s);

    /* the key alone (promotion still running) or the record alone (old primary) is not enough */
    str_copy(c.leader, sizeof(c.leader), "n2");
    s = proxy_snapshot_build(&c, 1048576, true, false);
    assert_int_equal(s->primary, -1);
    assert_false(s->backends[proxy_snapshot_find(s, "n2")].replica);  /* the leader is no replica */
    proxy_snapshot_unref(s);
    c.leader[0] = '\0';
    s = proxy_snapshot_build(&c, 1048576, true, false);
    assert_int_equal(s->primary, -1);
    proxy_snapshot_unref(s);
    cluster_free(&c);
}

static void take(Cluster *c, const char *key, const char *value, int64_t rev)
{
    if (!c->aa)
        c->aa = xcalloc(1, sizeof(*c->aa));
    char bad[300];
    assert_true(aa_group_take(c->aa, key, value, rev, 7, bad, sizeof(bad)));
}

/* An active-active group: its nodes serve reads, each write_leader route gets its location's
 * leader (else the group's), none during a handover or without etcd. */
static void test_snapshot_write_leader(void **state)
{
    (void)state;
    Cluster c;
    cluster_init(&c);
    take(&c, "aa/nodes/a", "{\"conn_url\": \"postgres://127.0.0.1:5001/postgres\", \"location\": \"vl\", \"writable\": true}", 1);
    take(&c, "aa/nodes/b", "{\"conn_url\": \"postgres://127.0.0.1:5002/postgres\", \"location\": \"vl\", \"writable\": false}", 2);
    take(&c, "aa/nodes/c", "{\"conn_url\": \"postgres://127.0.0.1:5003/postgres\", \"location\": \"wa\", \"writable\": true}", 3);
    take(&c, "aa/leader", "{\"node\": \"a\", \"conn_url\": \"postgres://127.0.0.1:5001/postgres\"}", 4);
    take(&c, "aa/location/wa/leader", "{\"node\": \"c\", \"conn_url\": \"postgres://127.0.0.1:5003/postgres\"}", 5);
    ProxyConfig pc;
    memset(&pc, 0, sizeof(pc));
    ProxyRoute routes[4] = {{.name = "wl", .role = ROUTE_WRITE_LEADER},
                            {.name = "wa", .role = ROUTE_WRITE_LEADER, .location = "wa"},
                            {.name = "xx", .role = ROUTE_WRITE_LEADER, .location = "xx"},
                            {.name = "ro", .role = ROUTE_REPLICA}};
    pc.routes = routes;
    pc.n_routes = 4;
    ProxySnapshot *s = proxy_snapshot_build(&c, 1048576, true, false);
    proxy_snapshot_set_leaders(s, &c, &pc);
    assert_int_equal(s->n_backends, 3);
    assert_int_equal(s->primary, -1);
    assert_true(s->backends[proxy_snapshot_find(s, "a")].eligible);
    assert_false(s->backends[proxy_snapshot_find(s, "b")].eligible);   /* cannot take writes: no reads either */
    {
        /* drained for maintenance: no new sessions, the open ones stay (still a replica) */
        Cluster dc;
        cluster_init(&dc);
        take(&dc, "aa/drain/a", "{\"since\": 1}", 1);
        take(&dc, "aa/nodes/a", "{\"conn_url\": \"postgres://127.0.0.1:5001/postgres\", \"writable\": true}", 2);
        ProxySnapshot *ds = proxy_snapshot_build(&dc, 1048576, true, false);
        assert_true(ds->backends[proxy_snapshot_find(ds, "a")].replica);
        assert_false(ds->backends[proxy_snapshot_find(ds, "a")].eligible);
        proxy_snapshot_unref(ds);
        cluster_free(&dc);
    }
    assert_string_equal(s->backends[s->route_leader[0]].name, "a");
    assert_string_equal(s->backends[s->route_leader[1]].name, "c");
    assert_string_equal(s->backends[s->route_leader[2]].name, "a");    /* no leader in xx: the group's */
    assert_int_equal(s->route_leader[3], -1);
    ProxySnapshot *copy = proxy_snapshot_clone(s);
    assert_true(proxy_snapshot_same(s, copy));
    proxy_snapshot_unref(copy);

    /* a handover: the group's routes go nowhere until the new leader has the key */
    cluster_free(&c);
    cluster_init(&c);
    take(&c, "aa/nodes/a", "{\"conn_url\": \"postgres://127.0.0.1:5001/postgres\", \"writable\": true}", 1);
    take(&c, "aa/leader", "{\"node\": \"a\", \"conn_url\": \"postgres://127.0.0.1:5001/postgres\", \"handover_to\": \"b\"}", 6);
    ProxySnapshot *h = proxy_snapshot_build(&c, 1048576, true, false);
    proxy_snapshot_set_leaders(h, &c, &pc);
    assert_int_equal(h->route_leader[0], -1);
    assert_string_equal(h->backends[h->route_holder[0]].name, "a");   /* its open connections finish */
    assert_false(proxy_snapshot_same(s, h));
    proxy_snapshot_unref(h);
    /* etcd not answering: no write leader */
    take(&c, "aa/location/wa/leader", "{\"node\": \"a\", \"conn_url\": \"postgres://127.0.0.1:5001/postgres\"}", 7);
    h = proxy_snapshot_build(&c, 1048576, false, false);
    proxy_snapshot_set_leaders(h, &c, &pc);
    assert_int_equal(h->route_leader[1], -1);
    assert_false(h->backends[proxy_snapshot_find(h, "a")].eligible);
    proxy_snapshot_unref(h);
    proxy_snapshot_unref(s);
    cluster_free(&c);
}

/* The group's keys: what is parsed, what is left out. */
static void test_aa_group_keys(void **state)
{
    (void)state;
    AaGroupView v;
    memset(&v, 0, sizeof(v));
    char bad[300];
    assert_true(aa_group_take(&v, "aa/leader", "{\"node\": \"a\", \"conn_url\": \"u\", \"handover_to\": \"b\", \"mark\": \"0/3000060\"}", 9, 3, bad, sizeof(bad)));
    const AaLeaderRec *l = aa_group_leader(&v, NULL);
    assert_non_null(l);
    assert_string_equal(l->handover_to, "b");
    assert_string_equal(l->mark, "0/3000060");
    assert_int_equal(l->mod_revision, 9);
    assert_int_equal(l->lease, 3);
    assert_null(aa_group_leader(&v, "vl"));
    assert_true(aa_group_take(&v, "aa/switchover", "{\"to\": \"b\", \"location\": \"\", \"state\": \"failed\", \"error\": \"why\"}", 10, 0, bad, sizeof(bad)));
    assert_true(v.switchover.present);
    assert_string_equal(v.switchover.error, "why");
    /* not the group's: ignored silently; the group's but malformed: left out, named */
    assert_false(aa_group_take(&v, "leader", "x", 1, 0, bad, sizeof(bad)));
    assert_string_equal(bad, "");
    assert_false(aa_group_take(&v, "aa/location//leader", "{}", 1, 0, bad, sizeof(bad)));
    assert_false(aa_group_take(&v, "aa/leader", "{\"node\": 5}", 1, 0, bad, sizeof(bad)));
    assert_non_null(strstr(bad, "aa/leader: not a record"));
    assert_false(aa_group_take(&v, "aa/nodes/x", "[]", 1, 0, bad, sizeof(bad)));
    assert_false(aa_group_take(&v, "aa/nodes/x", "{\"conn_url\": \"u\", \"writable\": \"yes\"}", 1, 0, bad, sizeof(bad)));
    assert_int_equal(v.n_nodes, 0);
    char key[160];
    aa_leader_key("wa", key, sizeof(key));
    assert_string_equal(key, "aa/location/wa/leader");
    aa_leader_key("", key, sizeof(key));
    assert_string_equal(key, "aa/leader");
    /* what the agent writes, the parser reads back */
    char *j = aa_leader_json("c", "postgres://h:1/postgres", "d", "0/10", 3);
    AaGroupView w;
    memset(&w, 0, sizeof(w));
    assert_true(aa_group_take(&w, "aa/location/wa/leader", j, 1, 0, bad, sizeof(bad)));
    free(j);
    assert_string_equal(aa_group_leader(&w, "wa")->handover_to, "d");
    assert_int_equal(aa_group_leader(&w, "wa")->ttl, 3);
    j = aa_node_json("postgres://h:1/postgres", "wa", true, "http://h:8008");
    assert_true(aa_group_take(&w, "aa/nodes/c", j, 1, 0, bad, sizeof(bad)));
    free(j);
    assert_true(aa_group_node(&w, "c")->writable);
    assert_string_equal(aa_group_node(&w, "c")->location, "wa");
    assert_string_equal(aa_group_node(&w, "c")->api_url, "http://h:8008");
    assert_false(aa_group_node(&w, "c")->drained);
    assert_true(aa_group_take(&w, "aa/drain/c", "{\"since\": 1}", 1, 0, bad, sizeof(bad)));
    assert_true(aa_group_node(&w, "c")->drained);
    assert_true(aa_group_is_drained(&w, "c"));
    j = aa_switchover_json("c", "wa", 2500, NULL, NULL);
    assert_true(aa_group_take(&w, "aa/switchover", j, 1, 0, bad, sizeof(bad)));
    free(j);
    assert_string_equal(w.switchover.location, "wa");
    assert_string_equal(w.switchover.state, "");
    assert_int_equal(w.switchover.drain_ms, 2500);
    /* the DDL lock, and each node's last DDL commit */
    j = aa_ddl_json("a", 1234);
    assert_true(aa_group_take(&w, "aa/ddl_lock", j, 5, 9, bad, sizeof(bad)));
    free(j);
    assert_true(w.ddl_lock.present);
    assert_int_equal(w.ddl_lock.pid, 1234);
    assert_int_equal(w.ddl_lock.mod_revision, 5);
    j = aa_ddl_done_json(NULL, "b", "0/3000060");
    assert_true(aa_group_take(&w, "aa/ddl_last", j, 6, 0, bad, sizeof(bad)));
    free(j);
    j = aa_ddl_done_json(&w.ddl_last, "a", "0/10");
    assert_true(aa_group_take(&w, "aa/ddl_last", j, 7, 0, bad, sizeof(bad)));
    free(j);
    assert_int_equal(w.ddl_last.n, 2);
    assert_int_equal(w.ddl_last.mod_revision, 7);
    assert_false(aa_group_take(&w, "aa/ddl_lock", "{\"node\": \"a\"}", 8, 0, bad, sizeof(bad)));   /* no pid */
    assert_false(aa_group_take(&w, "aa/ddl_last", "{\"a\": 5}", 8, 0, bad, sizeof(bad)));
}

static void test_snapshot_bad_urls(void **state)
{
    (void)state;
    Cluster c;
    cluster_init(&c);
    str_copy(c.leader, sizeof(c.leader), "n1");
    Member *m = add_member(&c, "n1", 5001, "primary", "running", "", 1);
    str_copy(m->conn_url, sizeof(m->conn_url), "garbage");
    add_member(&c, "n2", 5002, "replica", "running", "streaming", 1);
    m = add_member(&c, "n3", 5003, "replica", "running", "streaming", 1);
    str_copy(m->conn_url, sizeof(m->conn_url), "postgres://not-a-number.invalid:5/x"); /* no DNS here */
    ProxySnapshot *s = proxy_snapshot_build(&c, 1048576, true, false);
    assert_int_equal(s->n_backends, 1);
    assert_int_equal(s->primary, -1);
    assert_string_equal(s->backends[0].name, "n2");
    proxy_snapshot_unref(s);
    cluster_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_packet),
        cmocka_unit_test(test_keyscan_every_split),
        cmocka_unit_test(test_keyscan_gives_up),
        cmocka_unit_test(test_error_response),
        cmocka_unit_test(test_conn_url),
        cmocka_unit_test(test_snapshot_roles),
        cmocka_unit_test(test_snapshot_two_sites),
        cmocka_unit_test(test_site_record_target_time),
        cmocka_unit_test(test_snapshot_bad_urls),
        cmocka_unit_test(test_snapshot_write_leader),
        cmocka_unit_test(test_aa_group_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
