/* Unit tests for the Patroni-compatible JSON of etcd keys (members, failover, sync, history)
 * and for assembling a Cluster from one range read, including bad values. */
#include "common/common.h"
#include "dcs/cluster.h"

#include <setjmp.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

/* ---- capture of log output (log.c writes straight to fd 2) ---- */

static int saved_stderr = -1;
static int capture_fd = -1;
static char captured[16384];

static void capture_start(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    capture_fd = p[0];
}

/* Restores stderr and returns everything logged since capture_start(). */
static const char *capture_end(void)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(captured) - 1 &&
           (r = read(capture_fd, captured + len, sizeof(captured) - 1 - len)) > 0)
        len += (size_t)r;
    captured[len] = '\0';
    close(capture_fd);
    capture_fd = -1;
    return captured;
}

/* ---- helpers ---- */

static void assert_member_equal(const Member *a, const Member *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->conn_url, b->conn_url);
    assert_string_equal(a->api_url, b->api_url);
    assert_string_equal(a->state, b->state);
    assert_string_equal(a->role, b->role);
    assert_string_equal(a->version, b->version);
    assert_true(a->xlog_location == b->xlog_location);
    assert_int_equal(a->timeline, b->timeline);
    assert_string_equal(a->replication_state, b->replication_state);
    assert_int_equal(a->tags.nofailover, b->tags.nofailover);
    assert_int_equal(a->tags.noloadbalance, b->tags.noloadbalance);
    assert_int_equal(a->tags.nosync, b->tags.nosync);
    assert_int_equal(a->tags.clonefrom, b->tags.clonefrom);
    assert_int_equal(a->tags.failover_priority, b->tags.failover_priority);
    assert_int_equal(a->pending_restart, b->pending_restart);
}

static void minimal_member(Member *m, const char *name)
{
    memset(m, 0, sizeof(*m));
    str_copy(m->name, sizeof(m->name), name);
    m->tags.failover_priority = 1;
}

static void full_member(Member *m)
{
    minimal_member(m, "node1");
    str_copy(m->conn_url, sizeof(m->conn_url), "postgres://127.0.0.1:5432/postgres");
    str_copy(m->api_url, sizeof(m->api_url), "http://127.0.0.1:8008/patroni");
    str_copy(m->state, sizeof(m->state), "running");
    str_copy(m->role, sizeof(m->role), "primary");
    str_copy(m->version, sizeof(m->version), "0.1.0");
    m->xlog_location = 50331744;
    m->timeline = 1;
    str_copy(m->replication_state, sizeof(m->replication_state), "streaming");
    m->tags.nofailover = true;
    m->pending_restart = true;
}

/* ---- members ---- */

static void test_member_round_trip_full(void **state)
{
    (void)state;
    Member m, back;
    full_member(&m);
    char *json = member_to_json(&m);
    assert_string_equal(json,
        "{\"conn_url\":\"postgres://127.0.0.1:5432/postgres\","
        "\"api_url\":\"http://127.0.0.1:8008/patroni\",\"state\":\"running\","
        "\"role\":\"primary\",\"version\":\"0.1.0\",\"xlog_location\":50331744,\"timeline\":1,"
        "\"replication_state\":\"streaming\",\"tags\":{\"nofailover\":true,"
        "\"failover_priority\":1},\"pending_restart\":true}");
    Err err = {{0}};
    assert_true(member_from_json("node1", json, &back, &err));
    assert_member_equal(&m, &back);
    free(json);

    /* every tag, a large LSN and a non-default priority */
    m.tags.noloadbalance = m.tags.nosync = m.tags.clonefrom = true;
    m.tags.nofailover = false;
    m.tags.failover_priority = 0;
    m.xlog_location = ((Lsn)0x16 << 32) | 0xB374D848u;
    m.timeline = 7;
    json = member_to_json(&m);
    assert_true(member_from_json("node1", json, &back, &err));
    assert_member_equal(&m, &back);
    assert_int_equal(back.mod_revision, 0);
    free(json);
}

static void test_member_round_trip_minimal(void **state)
{
    (void)state;
    Member m, back;
    minimal_member(&m, "n");
    char *json = member_to_json(&m);
    /* replication_state, tags and pending_restart are left out at their defaults */
    assert_string_equal(json, "{\"conn_url\":\"\",\"api_url\":\"\",\"state\":\"\",\"role\":\"\","
                              "\"version\":\"\",\"xlog_location\":0,\"timeline\":0}");
    Err err = {{0}};
    assert_true(member_from_json("n", json, &back, &err));
    assert_member_equal(&m, &back);
    free(json);

    /* an empty object is a valid (if useless) member: every field defaults */
    assert_true(member_from_json("n", "{}", &back, &err));
    assert_member_equal(&m, &back);
    assert_int_equal(back.tags.failover_priority, 1);
}

static void test_member_patroni_sample(void **state)
{
    (void)state;
    /* as written by Patroni 2.x/3.x, with fields pgvigil does not know */
    const char *primary =
        "{\"conn_url\": \"postgres://10.0.0.11:5432/postgres\", "
        "\"api_url\": \"http://10.0.0.11:8008/patroni\", \"state\": \"running\", "
        "\"role\": \"master\", \"version\": \"2.1.4\", \"xlog_location\": 83886240, "
        "\"timeline\": 3, \"tags\": {\"clonefrom\": true, \"replicatefrom\": \"pg2\", "
        "\"nofailover\": false}, \"pending_restart\": true, "
        "\"pending_restart_reason\": {\"max_connections\": {\"old_value\": \"100\", "
        "\"new_value\": \"200\"}}, \"dcs_last_seen\": 1700000000, \"proxy_url\": null}";
    Member m;
    Err err = {{0}};
    assert_true(member_from_json("pg1", primary, &m, &err));
    assert_string_equal(m.name, "pg1");
    assert_string_equal(m.role, "primary");
    assert_string_equal(m.conn_url, "postgres://10.0.0.11:5432/postgres");
    assert_string_equal(m.api_url, "http://10.0.0.11:8008/patroni");
    assert_string_equal(m.state, "running");
    assert_string_equal(m.version, "2.1.4");
    assert_true(m.xlog_location == 83886240);
    assert_int_equal(m.timeline, 3);
    assert_string_equal(m.replication_state, "");
    assert_true(m.tags.clonefrom);
    assert_false(m.tags.nofailover);
    assert_int_equal(m.tags.failover_priority, 1);
    assert_true(m.pending_restart);

    const char *replica =
        "{\"conn_url\":\"postgres://10.0.0.12:5432/postgres\",\"api_url\":"
        "\"http://10.0.0.12:8008/patroni\",\"state\":\"running\",\"role\":\"replica\","
        "\"version\":\"3.2.0\",\"xlog_location\":83886240,\"replication_state\":\"streaming\","
        "\"timeline\":3,\"tags\":{\"failover_priority\":5,\"nosync\":true}}";
    assert_true(member_from_json("pg2", replica, &m, &err));
    assert_string_equal(m.role, "replica");
    assert_string_equal(m.replication_state, "streaming");
    assert_int_equal(m.tags.failover_priority, 5);
    assert_true(m.tags.nosync);
    assert_false(m.pending_restart);

    assert_true(member_from_json("pg3", "{\"role\":\"standby_leader\",\"state\":\"running\"}", &m,
                                 &err));
    assert_string_equal(m.role, "standby_leader");

    /* a stopped Patroni member has no position yet */
    assert_true(member_from_json("pg4",
                                 "{\"state\":\"stopped\",\"role\":\"uninitialized\","
                                 "\"xlog_location\":null,\"timeline\":null,\"tags\":null}",
                                 &m, &err));
    assert_true(m.xlog_location == 0);
    assert_int_equal(m.timeline, 0);
}

static void test_member_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *message;
    } cases[] = {
        {"{\"timeline\":\"1\"}", "members/node2: timeline: expected an integer"},
        {"{\"timeline\":1.0}", "members/node2: timeline: expected an integer"},
        {"{\"timeline\":-1}", "members/node2: timeline: out of range"},
        {"{\"timeline\":4294967296}", "members/node2: timeline: out of range"},
        {"{\"xlog_location\":\"0/3000060\"}", "members/node2: xlog_location: expected an integer"},
        {"{\"xlog_location\":-5}", "members/node2: xlog_location: out of range"},
        {"{\"state\":5}", "members/node2: state: expected a string"},
        {"{\"role\":true}", "members/node2: role: expected a string"},
        {"{\"conn_url\":[]}", "members/node2: conn_url: expected a string"},
        {"{\"api_url\":{}}", "members/node2: api_url: expected a string"},
        {"{\"version\":3}", "members/node2: version: expected a string"},
        {"{\"replication_state\":1}", "members/node2: replication_state: expected a string"},
        {"{\"pending_restart\":1}", "members/node2: pending_restart: expected a boolean"},
        {"{\"tags\":[]}", "members/node2: tags: expected a JSON object"},
        {"{\"tags\":{\"nofailover\":\"yes\"}}", "members/node2: tags.nofailover: expected a boolean"},
        {"{\"tags\":{\"failover_priority\":\"2\"}}",
         "members/node2: tags.failover_priority: expected an integer"},
        {"{\"state\":\"0123456789012345678901234567890123456789\"}",
         "members/node2: state: longer than 31 bytes"},
        {"[]", "members/node2: expected a JSON object"},
        {"\"running\"", "members/node2: expected a JSON object"},
        {"null", "members/node2: expected a JSON object"},
        {"{\"role\":", "members/node2: invalid JSON"},
        {"", "members/node2: invalid JSON"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        Member m;
        Err err = {{0}};
        full_member(&m);
        if (member_from_json("node2", cases[i].json, &m, &err)) {
            print_error("accepted: %s\n", cases[i].json);
            fail();
        }
        if (strncmp(err.msg, cases[i].message, strlen(cases[i].message)) != 0) {
            print_error("%s: got \"%s\", want \"%s\"\n", cases[i].json, err.msg, cases[i].message);
            fail();
        }
        /* a failed parse leaves nothing half-filled behind */
        assert_string_equal(m.name, "");
        assert_string_equal(m.state, "");
    }

    Member m;
    Err err = {{0}};
    assert_false(member_from_json("", "{}", &m, &err));
    assert_false(member_from_json(NULL, "{}", &m, &err));
    assert_false(member_from_json("node1", NULL, &m, &err));
    char longname[NAME_MAX_LEN + 1];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[NAME_MAX_LEN] = '\0';
    assert_false(member_from_json(longname, "{}", &m, &err));
    assert_non_null(strstr(err.msg, "member name longer than 63 bytes"));
    longname[NAME_MAX_LEN - 1] = '\0';
    assert_true(member_from_json(longname, "{}", &m, &err));
    assert_string_equal(m.name, longname);
}

/* ---- failover and sync ---- */

static void test_failover_round_trip(void **state)
{
    (void)state;
    FailoverReq f, back;
    Err err = {{0}};
    memset(&f, 0, sizeof(f));
    f.present = true;
    str_copy(f.leader, sizeof(f.leader), "node1");
    str_copy(f.candidate, sizeof(f.candidate), "node2");
    char *json = failover_to_json(&f);
    assert_string_equal(json, "{\"leader\":\"node1\",\"member\":\"node2\",\"scheduled_at\":null}");
    assert_true(failover_from_json(json, &back, &err));
    assert_true(back.present);
    assert_string_equal(back.leader, "node1");
    assert_string_equal(back.candidate, "node2");
    free(json);

    /* failover: a candidate only; switchover to anyone: a leader only */
    f.leader[0] = '\0';
    json = failover_to_json(&f);
    assert_string_equal(json, "{\"member\":\"node2\",\"scheduled_at\":null}");
    assert_true(failover_from_json(json, &back, &err));
    assert_string_equal(back.leader, "");
    assert_string_equal(back.candidate, "node2");
    free(json);
    str_copy(f.leader, sizeof(f.leader), "node1");
    f.candidate[0] = '\0';
    json = failover_to_json(&f);
    assert_true(failover_from_json(json, &back, &err));
    assert_string_equal(back.leader, "node1");
    assert_string_equal(back.candidate, "");
    free(json);

    /* Patroni's scheduled form parses (the time is not honoured) */
    assert_true(failover_from_json("{\"leader\":\"a\",\"member\":\"b\",\"scheduled_at\":"
                                   "\"2024-01-01T10:00:00+00:00\"}",
                                   &back, &err));
    assert_string_equal(back.candidate, "b");

    assert_false(failover_from_json("{\"member\":3}", &back, &err));
    assert_string_equal(err.msg, "failover: member: expected a string");
    assert_false(back.present);
    assert_false(failover_from_json("{\"scheduled_at\":1}", &back, &err));
    assert_string_equal(err.msg, "failover: scheduled_at: expected a string");
    assert_false(failover_from_json("node1:node2", &back, &err));
    assert_non_null(strstr(err.msg, "failover: invalid JSON"));
}

static void test_sync_round_trip(void **state)
{
    (void)state;
    SyncState s, back;
    Err err = {{0}};
    memset(&s, 0, sizeof(s));
    s.present = true;
    str_copy(s.leader, sizeof(s.leader), "node1");
    str_copy(s.members[0], NAME_MAX_LEN, "node2");
    str_copy(s.members[1], NAME_MAX_LEN, "node3");
    s.n_members = 2;
    char *json = sync_to_json(&s);
    assert_string_equal(json, "{\"leader\":\"node1\",\"sync_standby\":\"node2,node3\"}");
    assert_true(sync_from_json(json, &back, &err));
    assert_true(back.present);
    assert_string_equal(back.leader, "node1");
    assert_int_equal(back.n_members, 2);
    assert_string_equal(back.members[0], "node2");
    assert_string_equal(back.members[1], "node3");
    free(json);

    s.n_members = 0;
    json = sync_to_json(&s);
    assert_string_equal(json, "{\"leader\":\"node1\",\"sync_standby\":null}");
    assert_true(sync_from_json(json, &back, &err));
    assert_true(back.present);
    assert_int_equal(back.n_members, 0);
    free(json);

    assert_true(sync_from_json("{\"leader\":\"node1\"}", &back, &err));
    assert_int_equal(back.n_members, 0);
    /* spaces, empty items and repeats as a hand edit might leave them */
    assert_true(sync_from_json("{\"leader\":null,\"sync_standby\":\" node2 ,,node3,node2,\"}",
                               &back, &err));
    assert_string_equal(back.leader, "");
    assert_int_equal(back.n_members, 2);
    assert_string_equal(back.members[0], "node2");
    assert_string_equal(back.members[1], "node3");

    char big[1024] = "{\"sync_standby\":\"";
    for (int i = 0; i <= MAX_SYNC; i++) {
        char item[16];
        str_fmt(item, sizeof(item), "%sn%d", i ? "," : "", i);
        size_t len = strlen(big);
        str_copy(big + len, sizeof(big) - len, item);
    }
    size_t len = strlen(big);
    str_copy(big + len, sizeof(big) - len, "\"}");
    assert_false(sync_from_json(big, &back, &err));
    assert_string_equal(err.msg, "sync: sync_standby: more than 16 names");
    assert_false(back.present);

    assert_false(sync_from_json("{\"sync_standby\":[\"node2\"]}", &back, &err));
    assert_string_equal(err.msg, "sync: sync_standby: expected a string");
    assert_false(sync_from_json("{\"leader\":1}", &back, &err));
    assert_string_equal(err.msg, "sync: leader: expected a string");
    assert_false(sync_from_json("null", &back, &err));
    assert_string_equal(err.msg, "sync: expected a JSON object");
}

static void test_sync_has(void **state)
{
    (void)state;
    SyncState s;
    Err err = {{0}};
    assert_true(sync_from_json("{\"leader\":\"node1\",\"sync_standby\":\"node2,Node3\"}", &s, &err));
    assert_true(sync_has(&s, "node2"));
    assert_true(sync_has(&s, "node3"));   /* application_name matching ignores case */
    assert_false(sync_has(&s, "node1"));  /* the leader is not a sync standby */
    assert_false(sync_has(&s, "node"));
    assert_false(sync_has(&s, ""));
    assert_false(sync_has(&s, NULL));
    assert_false(sync_has(NULL, "node2"));
    s.present = false;
    assert_false(sync_has(&s, "node2"));
}

/* ---- history ---- */

static void assert_history_entry(json_t *e, int timeline, json_int_t lsn, const char *reason,
                                 const char *leader)
{
    assert_true(json_is_array(e));
    assert_int_equal(json_array_size(e), leader ? 5 : 4);
    assert_int_equal(json_integer_value(json_array_get(e, 0)), timeline);
    assert_true(json_integer_value(json_array_get(e, 1)) == lsn);
    assert_string_equal(json_string_value(json_array_get(e, 2)), reason);
    const char *when = json_string_value(json_array_get(e, 3));
    assert_non_null(when);
    /* 2026-11-22T05:53:49.123+00:00 */
    assert_int_equal(strlen(when), 29);
    assert_int_equal(when[10], 'T');
    assert_string_equal(when + 23, "+00:00");
    if (leader)
        assert_string_equal(json_string_value(json_array_get(e, 4)), leader);
}

static json_t *load_array(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_array(j));
    return j;
}

static void test_history_append_null(void **state)
{
    (void)state;
    char *h = history_append(NULL, 1, 50331744, "no recovery target specified", "node2");
    json_t *j = load_array(h);
    assert_int_equal(json_array_size(j), 1);
    assert_history_entry(json_array_get(j, 0), 1, 50331744, "no recovery target specified",
                         "node2");
    json_decref(j);
    free(h);

    h = history_append(NULL, 2, 0, NULL, NULL);
    j = load_array(h);
    assert_history_entry(json_array_get(j, 0), 2, 0, "", NULL);
    json_decref(j);
    free(h);
}

static void test_history_append_existing(void **state)
{
    (void)state;
    const char *old = "[[1,25165984,\"no recovery target specified\","
                      "\"2024-01-01T00:00:00.000+00:00\",\"node1\"],[2,33554592,\"x\"]]";
    char *h = history_append(old, 3, ((Lsn)1 << 33) + 40, "switchover", "node3");
    json_t *j = load_array(h);
    assert_int_equal(json_array_size(j), 3);
    /* earlier entries are kept exactly as they were, even Patroni's short ones */
    char *first = json_dumps(json_array_get(j, 0), JSON_COMPACT);
    assert_string_equal(first, "[1,25165984,\"no recovery target specified\","
                               "\"2024-01-01T00:00:00.000+00:00\",\"node1\"]");
    free(first);
    assert_int_equal(json_array_size(json_array_get(j, 1)), 3);
    assert_history_entry(json_array_get(j, 2), 3, ((json_int_t)1 << 33) + 40, "switchover",
                         "node3");
    json_decref(j);
    free(h);
}

static void test_history_append_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {"not json", "{\"timeline\":1}", "", "[1,"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        capture_start();
        char *h = history_append(bad[i], 4, 100, "failover", "node1");
        const char *log = capture_end();
        assert_non_null(strstr(log, "history:"));
        json_t *j = load_array(h);
        assert_int_equal(json_array_size(j), 1);
        assert_history_entry(json_array_get(j, 0), 4, 100, "failover", "node1");
        json_decref(j);
        free(h);
    }
}

/* ---- cluster_from_kvs ---- */

static void test_cluster_from_kvs_full(void **state)
{
    (void)state;
    DcsKv kvs[] = {
        {"config", "{\"ttl\":30,\"loop_wait\":10,\"pause\":true}", 3, 3, 0},
        {"failover", "{\"leader\":\"node1\",\"member\":\"node3\",\"scheduled_at\":null}", 40, 40, 0},
        {"history", "[[1,25165984,\"no recovery target specified\",\"2024-01-01T00:00:00+00:00\","
                    "\"node1\"]]", 20, 20, 0},
        {"initialize", "7312345678901234567", 2, 2, 0},
        {"leader", "node1", 30, 25, 0x1234},
        {"members/node3", "{\"conn_url\":\"postgres://127.0.0.1:5434/postgres\","
                          "\"role\":\"replica\",\"state\":\"running\",\"xlog_location\":100,"
                          "\"timeline\":2}", 38, 12, 0x99},
        {"members/node1", "{\"conn_url\":\"postgres://127.0.0.1:5432/postgres\","
                          "\"role\":\"master\",\"state\":\"running\",\"xlog_location\":200,"
                          "\"timeline\":2}", 36, 10, 0x1234},
        {"members/node2", "{\"role\":\"replica\",\"state\":\"running\",\"xlog_location\":150,"
                          "\"timeline\":2,\"tags\":{\"nofailover\":true}}", 37, 11, 0x77},
        {"optime/leader", "12345", 5, 5, 0},       /* Patroni 1.x key: ignored */
        {"members/", "{}", 6, 6, 0},                /* no name: ignored */
        {"members/node9/extra", "{}", 7, 7, 0},     /* not a member key: ignored */
        {"status", "{\"optime\":200,\"slots\":{\"node2\":150},\"retain_slots\":[\"node2\"]}", 41,
         9, 0},
        {"sync", "{\"leader\":\"node1\",\"sync_standby\":\"node2\"}", 39, 8, 0},
        {"something_else", "whatever", 4, 4, 0},
    };
    Cluster c;
    Err err = {{0}};
    capture_start();
    bool ok = cluster_from_kvs(kvs, (int)ARRAY_LEN(kvs), 42, &c, &err);
    const char *log = capture_end();
    assert_true(ok);
    assert_string_equal(log, "");   /* nothing here deserves a warning */

    assert_true(c.revision == 42);
    assert_true(c.initialized);
    assert_string_equal(c.sysid, "7312345678901234567");
    assert_string_equal(c.leader, "node1");
    assert_true(c.leader_mod_revision == 30);
    assert_true(c.leader_lease == 0x1234);

    assert_int_equal(c.n_members, 3);
    assert_string_equal(c.members[0].name, "node1");
    assert_string_equal(c.members[1].name, "node2");
    assert_string_equal(c.members[2].name, "node3");
    assert_string_equal(c.members[0].role, "primary");
    assert_true(c.members[0].xlog_location == 200);
    assert_true(c.members[0].mod_revision == 36);
    assert_true(c.members[1].tags.nofailover);
    assert_true(c.members[1].mod_revision == 37);
    assert_true(c.members[2].mod_revision == 38);
    const Member *m = cluster_member(&c, "node3");
    assert_non_null(m);
    assert_string_equal(m->conn_url, "postgres://127.0.0.1:5434/postgres");
    assert_null(cluster_member(&c, "node9"));
    assert_null(cluster_member(&c, NULL));

    assert_true(c.has_config);
    assert_true(c.config_mod_revision == 3);
    assert_string_equal(c.config_json, kvs[0].value);
    assert_int_equal(c.config.ttl, 30);
    assert_int_equal(c.config.loop_wait_ms, 10000);
    assert_true(c.config.pause);

    assert_true(c.failover.present);
    assert_string_equal(c.failover.leader, "node1");
    assert_string_equal(c.failover.candidate, "node3");
    assert_true(c.failover.mod_revision == 40);

    assert_true(c.sync.present);
    assert_string_equal(c.sync.leader, "node1");
    assert_true(sync_has(&c.sync, "node2"));
    assert_true(c.sync.mod_revision == 39);

    assert_string_equal(c.history_json, kvs[2].value);
    assert_true(c.status_optime == 200);

    cluster_free(&c);
    assert_null(c.members);
    assert_int_equal(c.n_members, 0);
    assert_null(c.config_json);
    assert_null(c.history_json);
    cluster_free(&c);   /* freeing twice is harmless: it left c zeroed */
    cluster_free(NULL);
}

static void test_cluster_from_kvs_broken_member(void **state)
{
    (void)state;
    DcsKv kvs[] = {
        {"leader", "node1", 30, 25, 7},
        {"members/node1", "{\"role\":\"primary\",\"timeline\":1}", 31, 31, 7},
        {"members/node2", "{\"role\":\"replica\",", 32, 32, 8},
        {"members/node3", "{\"role\":\"replica\",\"timeline\":1}", 33, 33, 9},
        {"members/node4", "{\"role\":\"replica\",\"timeline\":\"1\"}", 34, 34, 10},
        {"members/node5", NULL, 35, 35, 11},
    };
    Cluster c;
    Err err = {{0}};
    capture_start();
    bool ok = cluster_from_kvs(kvs, (int)ARRAY_LEN(kvs), 50, &c, &err);
    const char *log = capture_end();
    assert_true(ok);
    assert_int_equal(c.n_members, 2);
    assert_string_equal(c.members[0].name, "node1");
    assert_string_equal(c.members[1].name, "node3");
    assert_null(cluster_member(&c, "node2"));
    assert_string_equal(c.leader, "node1");
    /* each skipped member is named with what was wrong */
    assert_non_null(strstr(log, "members/node2: invalid JSON"));
    assert_non_null(strstr(log, "members/node4: timeline: expected an integer"));
    assert_non_null(strstr(log, "members/node5: invalid JSON"));
    assert_non_null(strstr(log, "WARNING"));
    cluster_free(&c);
}

static void test_cluster_from_kvs_bad_shared_keys(void **state)
{
    (void)state;
    DcsKv kvs[] = {
        {"failover", "node1:node2", 3, 3, 0},
        {"sync", "{\"leader\":\"node1\",\"sync_standby\":5}", 4, 4, 0},
        {"status", "{\"optime\":\"0/3000060\"}", 5, 5, 0},
        {"config", "{\"ttl\":\"thirty\"", 6, 6, 0},
        {"members/node1", "{}", 7, 7, 0},
    };
    Cluster c;
    Err err = {{0}};
    capture_start();
    bool ok = cluster_from_kvs(kvs, (int)ARRAY_LEN(kvs), 9, &c, &err);
    const char *log = capture_end();
    assert_true(ok);
    assert_false(c.failover.present);
    assert_false(c.sync.present);
    assert_false(sync_has(&c.sync, "node2"));
    assert_true(c.status_optime == 0);
    /* a broken config key still exists (nobody may overwrite it) but defaults apply */
    assert_true(c.has_config);
    assert_string_equal(c.config_json, kvs[3].value);
    Cluster defaults;
    cluster_init(&defaults);
    assert_int_equal(c.config.ttl, defaults.config.ttl);
    assert_int_equal(c.config.pause, defaults.config.pause);
    cluster_free(&defaults);
    assert_int_equal(c.n_members, 1);
    assert_non_null(strstr(log, "failover: invalid JSON"));
    assert_non_null(strstr(log, "sync: sync_standby: expected a string"));
    assert_non_null(strstr(log, "status: optime: expected an integer"));
    assert_non_null(strstr(log, "config:"));
    cluster_free(&c);
}

static void test_cluster_from_kvs_empty(void **state)
{
    (void)state;
    Cluster c, defaults;
    Err err = {{0}};
    cluster_init(&defaults);
    assert_true(cluster_from_kvs(NULL, 0, 17, &c, &err));
    assert_false(c.initialized);
    assert_string_equal(c.sysid, "");
    assert_string_equal(c.leader, "");
    assert_true(c.leader_mod_revision == 0);
    assert_int_equal(c.n_members, 0);
    assert_null(c.members);
    assert_false(c.has_config);
    assert_null(c.config_json);
    assert_int_equal(c.config.ttl, defaults.config.ttl);
    assert_int_equal(c.config.loop_wait_ms, defaults.config.loop_wait_ms);
    assert_false(c.failover.present);
    assert_false(c.sync.present);
    assert_null(c.history_json);
    assert_true(c.status_optime == 0);
    assert_true(c.revision == 17);
    assert_null(cluster_member(&c, "node1"));
    cluster_free(&c);
    cluster_free(&defaults);

    assert_false(cluster_from_kvs(NULL, 2, 1, &c, &err));
    assert_non_null(strstr(err.msg, "invalid key list"));
    cluster_free(&c);
}

static void test_cluster_from_kvs_initializing(void **state)
{
    (void)state;
    /* Patroni creates `initialize` empty while it bootstraps, before the sysid is known */
    char longname[NAME_MAX_LEN + 10];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    DcsKv kvs[] = {
        {"initialize", "", 2, 2, 0},
        {"leader", longname, 3, 3, 5},
    };
    Cluster c;
    Err err = {{0}};
    capture_start();
    assert_true(cluster_from_kvs(kvs, 2, 3, &c, &err));
    const char *log = capture_end();
    assert_true(c.initialized);
    assert_string_equal(c.sysid, "");
    /* a leader name no member can have is not truncated into one that might */
    assert_string_equal(c.leader, "");
    assert_true(c.leader_mod_revision == 3);
    assert_non_null(strstr(log, "leader:"));
    cluster_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_round_trip_full),
        cmocka_unit_test(test_member_round_trip_minimal),
        cmocka_unit_test(test_member_patroni_sample),
        cmocka_unit_test(test_member_wrong_types),
        cmocka_unit_test(test_failover_round_trip),
        cmocka_unit_test(test_sync_round_trip),
        cmocka_unit_test(test_sync_has),
        cmocka_unit_test(test_history_append_null),
        cmocka_unit_test(test_history_append_existing),
        cmocka_unit_test(test_history_append_invalid),
        cmocka_unit_test(test_cluster_from_kvs_full),
        cmocka_unit_test(test_cluster_from_kvs_broken_member),
        cmocka_unit_test(test_cluster_from_kvs_bad_shared_keys),
        cmocka_unit_test(test_cluster_from_kvs_empty),
        cmocka_unit_test(test_cluster_from_kvs_initializing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
