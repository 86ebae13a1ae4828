/* Tables for the pure REST status logic: (node state, path, query) -> HTTP code, plus the
 * shape of the status JSON and the metrics page. */
#include "common/common.h"
#include "api/rest.h"
#include "common/log.h"

#include <jansson.h>
#include <setjmp.h>
#include <cmocka.h>

typedef enum {
    V_PRIMARY,            /* leader, running, writable */
    V_PRIMARY_NOT_LEADER, /* PostgreSQL writable but the lease is gone */
    V_PRIMARY_RECOVERING, /* role says primary but still in recovery (promotion not done) */
    V_PRIMARY_PROMOTING,  /* promoted, the history key not yet written */
    V_PRIMARY_STOPPED,
    V_PAUSED_DCS_DOWN,    /* maintenance mode, etcd unreachable, lease unknown */
    V_PAUSED_DCS_OK_NOT_LEADER,
    V_REPLICA,            /* streaming, lag 1000 bytes */
    V_REPLICA_LAG_UNKNOWN,
    V_REPLICA_BIG_LAG,    /* 2 MiB */
    V_REPLICA_NOT_STREAMING,
    V_REPLICA_NOLB,       /* tags.noloadbalance */
    V_REPLICA_TAGGED,     /* nofailover, failover_priority 0, clonefrom */
    V_REPLICA_SYNC,
    V_REPLICA_SYNC_NO_MODE, /* stale sync flag while synchronous_mode is off */
    V_REPLICA_STOPPED,
    V_UNINITIALIZED,
} Variant;

static NodeStatus make_status(Variant v)
{
    NodeStatus st;
    memset(&st, 0, sizeof(st));
    str_copy(st.name, sizeof(st.name), "node1");
    str_copy(st.scope, sizeof(st.scope), "demo");
    str_copy(st.state, sizeof(st.state), "running");
    str_copy(st.sysid, sizeof(st.sysid), "7301234567890123456");
    str_copy(st.leader_name, sizeof(st.leader_name), "node1");
    st.tags.failover_priority = 1;
    st.dcs_ok = true;
    st.timeline = 1;
    st.server_version = 150004;
    st.dcs_last_seen = 1700000000;
    st.postmaster_start_time = 1700000000.5;

    bool primary = v <= V_PAUSED_DCS_OK_NOT_LEADER;
    if (primary) {
        str_copy(st.role, sizeof(st.role), "primary");
        st.pg_running = true;
        st.is_leader = true;
        st.wal_lsn = 0x3000060;
        st.lag_bytes = 0;
    } else {
        str_copy(st.role, sizeof(st.role), "replica");
        str_copy(st.leader_name, sizeof(st.leader_name), "node2");
        st.pg_running = true;
        st.in_recovery = true;
        st.streaming = true;
        st.receive_lsn = 0x3000060;
        st.replay_lsn = 0x3000000;
        st.leader_lsn = 0x30003e8;
        st.lag_bytes = 1000;
    }
    switch (v) {
    case V_PRIMARY:
    case V_REPLICA:
        break;
    case V_PRIMARY_NOT_LEADER:
        st.is_leader = false;
        break;
    case V_PRIMARY_RECOVERING:
        st.in_recovery = true;
        break;
    case V_PRIMARY_PROMOTING:
        str_copy(st.state, sizeof(st.state), "promoting");
        break;
    case V_PRIMARY_STOPPED:
        st.pg_running = false;
        str_copy(st.state, sizeof(st.state), "stopped");
        break;
    case V_PAUSED_DCS_DOWN:
        st.paused = true;
        st.dcs_ok = false;
        st.is_leader = false;
        break;
    case V_PAUSED_DCS_OK_NOT_LEADER:
        st.paused = true;
        st.is_leader = false;
        break;
    case V_REPLICA_LAG_UNKNOWN:
        st.lag_bytes = -1;
        break;
    case V_REPLICA_BIG_LAG:
        st.lag_bytes = 2 * 1024 * 1024;
        break;
    case V_REPLICA_NOT_STREAMING:
        st.streaming = false;
        break;
    case V_REPLICA_NOLB:
        st.tags.noloadbalance = true;
        break;
    case V_REPLICA_TAGGED:
        st.tags.nofailover = true;
        st.tags.clonefrom = true;
        st.tags.failover_priority = 0;
        break;
    case V_REPLICA_SYNC:
        st.sync_mode = true;
        st.sync_standby = true;
        break;
    case V_REPLICA_SYNC_NO_MODE:
        st.sync_standby = true;
        break;
    case V_REPLICA_STOPPED:
        st.pg_running = false;
        st.in_recovery = false;
        st.streaming = false;
        str_copy(st.state, sizeof(st.state), "stopped");
        break;
    case V_UNINITIALIZED:
        str_copy(st.role, sizeof(st.role), "uninitialized");
        str_copy(st.state, sizeof(st.state), "stopped");
        st.pg_running = st.in_recovery = st.streaming = st.is_leader = false;
        st.leader_name[0] = '\0';
        break;
    }
    return st;
}

typedef struct Case {
    Variant v;
    const char *path;
    const char *query;
    int code;
} Case;

static const Case cases[] = {
    /* primary checks */
    {V_PRIMARY, "/", NULL, 200},
    {V_PRIMARY, "/primary", NULL, 200},
    {V_PRIMARY, "/master", NULL, 200},
    {V_PRIMARY, "/leader", NULL, 200},
    {V_PRIMARY, "/read-write", NULL, 200},
    {V_PRIMARY, "/primary/", NULL, 200},
    {V_PRIMARY, "/replica", NULL, 503},
    {V_PRIMARY, "/read-only", NULL, 200},
    {V_PRIMARY, "/read-only", "lag=0", 200},      /* lag filters only replicas */
    {V_PRIMARY, "/read-only-sync", NULL, 200},
    {V_PRIMARY, "/standby-leader", NULL, 503},
    {V_PRIMARY, "/standby_leader", NULL, 503},
    {V_PRIMARY, "/sync", NULL, 503},
    {V_PRIMARY, "/async", NULL, 503},
    {V_PRIMARY, "/health", NULL, 200},
    {V_PRIMARY, "/liveness", NULL, 200},
    {V_PRIMARY, "/readiness", NULL, 200},
    {V_PRIMARY_NOT_LEADER, "/primary", NULL, 503},
    {V_PRIMARY_NOT_LEADER, "/read-only", NULL, 503},
    {V_PRIMARY_NOT_LEADER, "/health", NULL, 200},
    {V_PRIMARY_NOT_LEADER, "/readiness", NULL, 503},
    {V_PRIMARY_RECOVERING, "/primary", NULL, 503},
    {V_PRIMARY_RECOVERING, "/replica", NULL, 503},
    {V_PRIMARY_PROMOTING, "/primary", NULL, 503},
    {V_PRIMARY_PROMOTING, "/read-write", NULL, 503},
    {V_PRIMARY_PROMOTING, "/replica", NULL, 503},
    {V_PRIMARY_STOPPED, "/primary", NULL, 503},
    {V_PRIMARY_STOPPED, "/", NULL, 503},
    {V_PRIMARY_STOPPED, "/health", NULL, 503},
    {V_PRIMARY_STOPPED, "/liveness", NULL, 200},
    {V_PRIMARY_STOPPED, "/readiness", NULL, 503},
    /* maintenance mode */
    {V_PAUSED_DCS_DOWN, "/primary", NULL, 200},
    {V_PAUSED_DCS_DOWN, "/read-write", NULL, 200},
    {V_PAUSED_DCS_DOWN, "/replica", NULL, 503},
    {V_PAUSED_DCS_OK_NOT_LEADER, "/primary", NULL, 503},
    /* replica checks */
    {V_REPLICA, "/", NULL, 503},
    {V_REPLICA, "/primary", NULL, 503},
    {V_REPLICA, "/leader", NULL, 503},
    {V_REPLICA, "/replica", NULL, 200},
    {V_REPLICA, "/replica/", NULL, 200},
    {V_REPLICA, "/read-only", NULL, 200},
    {V_REPLICA, "/read-only-sync", NULL, 503},
    {V_REPLICA, "/health", NULL, 200},
    {V_REPLICA, "/readiness", NULL, 200},
    {V_REPLICA, "/sync", NULL, 503},
    {V_REPLICA, "/synchronous", NULL, 503},
    {V_REPLICA, "/async", NULL, 200},
    {V_REPLICA, "/asynchronous", NULL, 200},
    {V_REPLICA, "/standby-leader", NULL, 503},
    /* lag limits (lag is 1000 bytes) */
    {V_REPLICA, "/replica", "lag=1000", 200},
    {V_REPLICA, "/replica", "lag=999", 503},
    {V_REPLICA, "/replica", "lag=0", 503},
    {V_REPLICA, "/replica", "lag=1kB", 200},
    {V_REPLICA, "/replica", "lag=1kb", 200},
    {V_REPLICA, "/replica", "lag=16kB", 200},
    {V_REPLICA, "/replica", "lag=1MB", 200},
    {V_REPLICA, "/replica", "lag=1GB", 200},
    {V_REPLICA, "/replica", "lag=1000B", 200},
    {V_REPLICA, "/replica", "lag=1%20kB", 200},
    {V_REPLICA, "/replica", "lag=1+kB", 200},
    {V_REPLICA, "/replica", "lag=banana", 200},  /* unparsable limit is ignored, as Patroni */
    {V_REPLICA, "/replica", "lag=1XB", 200},
    {V_REPLICA, "/replica", "lag=", 200},
    {V_REPLICA, "/replica", "lag", 200},
    {V_REPLICA, "/replica", "lag=99999999999999999999999", 200},
    {V_REPLICA, "/replica", "lag=9999999999TB", 200},
    {V_REPLICA, "/replica", "other=1&lag=999", 503},
    {V_REPLICA, "/read-only", "lag=999", 503},
    {V_REPLICA, "/read-only", "lag=1kB", 200},
    {V_REPLICA, "/async", "lag=999", 503},
    {V_REPLICA_BIG_LAG, "/replica", NULL, 200},
    {V_REPLICA_BIG_LAG, "/replica", "lag=1MB", 503},
    {V_REPLICA_BIG_LAG, "/replica", "lag=2MB", 200},
    {V_REPLICA_BIG_LAG, "/replica", "lag=2097151", 503},
    {V_REPLICA_BIG_LAG, "/replica", "lag=2048kB", 200},
    {V_REPLICA_LAG_UNKNOWN, "/replica", NULL, 200},
    {V_REPLICA_LAG_UNKNOWN, "/replica", "lag=1GB", 503},
    {V_REPLICA_LAG_UNKNOWN, "/read-only", "lag=1GB", 503},
    /* tag filters (defaults: all false, failover_priority 1) */
    {V_REPLICA, "/replica", "tag_nofailover=false", 200},
    {V_REPLICA, "/replica", "tag_nofailover=FALSE", 200},
    {V_REPLICA, "/replica", "tag_nofailover=true", 503},
    {V_REPLICA, "/replica", "tag_nofailover", 503},
    {V_REPLICA, "/replica", "tag_nofailover=yes", 503},
    {V_REPLICA, "/replica", "tag_noloadbalance=false", 200},
    {V_REPLICA, "/replica", "tag_nosync=false&tag_clonefrom=false", 200},
    {V_REPLICA, "/replica", "tag_nosync=false&tag_clonefrom=true", 503},
    {V_REPLICA, "/replica", "tag_failover_priority=1", 200},
    {V_REPLICA, "/replica", "tag_failover_priority=2", 503},
    {V_REPLICA, "/replica", "tag_failover_priority=1x", 503},
    {V_REPLICA, "/replica", "tag_datacenter=east", 503}, /* unknown tag */
    {V_REPLICA, "/replica", "lag=1MB&tag_nosync=false", 200},
    {V_REPLICA, "/replica", "lag=10&tag_nosync=false", 503},
    {V_REPLICA, "/read-only", "tag_nofailover=true", 503},
    {V_REPLICA_TAGGED, "/replica", "tag_nofailover=true", 200},
    {V_REPLICA_TAGGED, "/replica", "tag_nofailover=false", 503},
    {V_REPLICA_TAGGED, "/replica", "tag_failover_priority=0", 200},
    {V_REPLICA_TAGGED, "/replica", "tag_clonefrom=true&tag_nofailover=true", 200},
    {V_REPLICA_TAGGED, "/replica", "tag_%6eofailover=true", 200}, /* encoded key */
    /* noloadbalance takes the node out of replica pools only */
    {V_REPLICA_NOLB, "/replica", NULL, 503},
    {V_REPLICA_NOLB, "/read-only", NULL, 503},
    {V_REPLICA_NOLB, "/async", NULL, 503},
    {V_REPLICA_NOLB, "/health", NULL, 200},
    {V_REPLICA_NOLB, "/readiness", NULL, 200},
    /* sync / async */
    {V_REPLICA_SYNC, "/sync", NULL, 200},
    {V_REPLICA_SYNC, "/synchronous", NULL, 200},
    {V_REPLICA_SYNC, "/async", NULL, 503},
    {V_REPLICA_SYNC, "/asynchronous", NULL, 503},
    {V_REPLICA_SYNC, "/read-only-sync", NULL, 200},
    {V_REPLICA_SYNC, "/replica", NULL, 200},
    {V_REPLICA_SYNC, "/sync", "lag=10", 503},
    {V_REPLICA_SYNC_NO_MODE, "/sync", NULL, 503},
    {V_REPLICA_SYNC_NO_MODE, "/async", NULL, 200},
    /* readiness wants streaming */
    {V_REPLICA_NOT_STREAMING, "/readiness", NULL, 503},
    {V_REPLICA_NOT_STREAMING, "/replica", NULL, 200},
    /* stopped replica */
    {V_REPLICA_STOPPED, "/replica", NULL, 503},
    {V_REPLICA_STOPPED, "/read-only", NULL, 503},
    {V_REPLICA_STOPPED, "/async", NULL, 503},
    {V_REPLICA_STOPPED, "/health", NULL, 503},
    {V_REPLICA_STOPPED, "/liveness", NULL, 200},
    {V_REPLICA_STOPPED, "/readiness", NULL, 503},
    {V_UNINITIALIZED, "/primary", NULL, 503},
    {V_UNINITIALIZED, "/replica", NULL, 503},
    {V_UNINITIALIZED, "/liveness", NULL, 200},
    /* not health checks */
    {V_PRIMARY, "/patroni", NULL, 404},
    {V_PRIMARY, "/cluster", NULL, 404},
    {V_PRIMARY, "/primaryx", NULL, 404},
    {V_PRIMARY, "/primary//", NULL, 404},
    {V_PRIMARY, "primary", NULL, 404},
    {V_PRIMARY, "", NULL, 404},
    {V_REPLICA, "/nope", "lag=1", 404},
};

static void test_health_table(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        NodeStatus st = make_status(cases[i].v);
        int got = rest_health_code(cases[i].path, cases[i].query, &st);
        if (got != cases[i].code) {
            print_error("case %zu: variant %d %s?%s: expected %d, got %d\n", i, (int)cases[i].v,
                        cases[i].path, cases[i].query ? cases[i].query : "", cases[i].code, got);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Every variant answers every path with 200/503 (never crashes, never another code). */
static void test_health_total(void **state)
{
    static const char *paths[] = {"/", "/primary", "/replica", "/read-only", "/sync", "/async",
                                  "/health", "/liveness", "/readiness", "/standby-leader"};
    static const char *queries[] = {NULL, "", "&&", "=", "lag=%", "lag=%zz", "tag_=x",
                                    "tag_nofailover=%00", "lag=1MB&&tag_nosync=false&"};
    for (int v = V_PRIMARY; v <= V_UNINITIALIZED; v++) {
        NodeStatus st = make_status((Variant)v);
        for (size_t p = 0; p < ARRAY_LEN(paths); p++)
            for (size_t q = 0; q < ARRAY_LEN(queries); q++) {
                int code = rest_health_code(paths[p], queries[q], &st);
                assert_true(code == 200 || code == 503);
            }
    }
    NodeStatus zero;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(rest_health_code("/primary", NULL, &zero), 503);
    assert_int_equal(rest_health_code("/replica", NULL, &zero), 503);
    assert_int_equal(rest_health_code(NULL, NULL, &zero), 404);
}

static json_t *parse_status(const NodeStatus *st)
{
    char *s = rest_status_json(st);
    assert_non_null(s);
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    if (!j)
        print_error("bad JSON: %s\n", s);
    free(s);
    assert_non_null(j);
    return j;
}

static void test_status_json_primary(void **state)
{
    NodeStatus st = make_status(V_PRIMARY);
    json_t *j = parse_status(&st);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(j, "role")), "primary");
    assert_string_equal(json_string_value(json_object_get(j, "postmaster_start_time")),
                        "2023-11-14 22:13:20.500000+00:00");
    assert_int_equal(json_integer_value(json_object_get(j, "server_version")), 150004);
    json_t *x = json_object_get(j, "xlog");
    assert_int_equal(json_integer_value(json_object_get(x, "location")), 0x3000060);
    assert_null(json_object_get(x, "replayed_location"));
    assert_int_equal(json_integer_value(json_object_get(j, "timeline")), 1);
    json_t *p = json_object_get(j, "patroni");
    assert_string_equal(json_string_value(json_object_get(p, "version")), PGVIGIL_VERSION);
    assert_string_equal(json_string_value(json_object_get(p, "scope")), "demo");
    assert_string_equal(json_string_value(json_object_get(p, "name")), "node1");
    assert_string_equal(json_string_value(json_object_get(j, "database_system_identifier")),
                        "7301234567890123456");
    assert_int_equal(json_integer_value(json_object_get(j, "dcs_last_seen")), 1700000000);
    /* flags and default tags are absent, not false */
    assert_null(json_object_get(j, "pause"));
    assert_null(json_object_get(j, "sync_standby"));
    assert_null(json_object_get(j, "pending_restart"));
    assert_null(json_object_get(j, "tags"));
    assert_null(json_object_get(j, "cluster_unlocked"));
    json_decref(j);
}

static void test_status_json_replica(void **state)
{
    NodeStatus st = make_status(V_REPLICA_TAGGED);
    st.paused = true;
    st.pending_restart = true;
    st.commit_guard = true;
    st.sync_mode = st.sync_standby = true;
    json_t *j = parse_status(&st);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "replica");
    json_t *x = json_object_get(j, "xlog");
    assert_null(json_object_get(x, "location"));
    assert_int_equal(json_integer_value(json_object_get(x, "received_location")), 0x3000060);
    assert_int_equal(json_integer_value(json_object_get(x, "replayed_location")), 0x3000000);
    assert_true(json_is_true(json_object_get(j, "pause")));
    assert_true(json_is_true(json_object_get(j, "pending_restart")));
    assert_true(json_is_true(json_object_get(j, "commit_guard")));
    assert_true(json_is_true(json_object_get(j, "sync_standby")));
    json_t *t = json_object_get(j, "tags");
    assert_true(json_is_true(json_object_get(t, "nofailover")));
    assert_true(json_is_true(json_object_get(t, "clonefrom")));
    assert_null(json_object_get(t, "nosync"));
    assert_int_equal(json_integer_value(json_object_get(t, "failover_priority")), 0);
    json_decref(j);
}

static void test_status_json_stopped(void **state)
{
    NodeStatus st = make_status(V_UNINITIALIZED);
    st.server_version = 0;
    st.timeline = 0;
    st.sysid[0] = '\0';
    json_t *j = parse_status(&st);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "stopped");
    assert_string_equal(json_string_value(json_object_get(j, "role")), "uninitialized");
    assert_null(json_object_get(j, "xlog"));
    assert_null(json_object_get(j, "postmaster_start_time"));
    assert_null(json_object_get(j, "server_version"));
    assert_null(json_object_get(j, "timeline"));
    assert_null(json_object_get(j, "database_system_identifier"));
    assert_true(json_is_true(json_object_get(j, "cluster_unlocked")));
    assert_null(json_object_get(j, "commit_guard")); /* said only of a running postgres */
    json_decref(j);

    /* all-zero snapshot and hostile names still give valid JSON */
    memset(&st, 0, sizeof(st));
    str_copy(st.name, sizeof(st.name), "a\"b\\c\n\x01");
    str_copy(st.scope, sizeof(st.scope), "bad\xff\xfeutf8");
    j = parse_status(&st);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "unknown");
    json_decref(j);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        print_error("missing: %s\n", needle);
        fail();
    }
}

static void test_metrics_primary(void **state)
{
    NodeStatus st = make_status(V_PRIMARY);
    st.failovers = 3;
    st.commit_guard = true;
    st.archive_on = true;
    st.archived_total = 42;
    st.archive_failures_total = 2;
    st.archive_ready = 5;
    st.archive_last_success = 1700000123.5;
    char *m = rest_metrics_text(&st);
    const char *lbl = "{scope=\"demo\",name=\"node1\"}";
    char line[256];
    assert_contains(m, "# TYPE pgvigil_version gauge\n");
    assert_contains(m, "pgvigil_version{scope=\"demo\",name=\"node1\",version=\"" PGVIGIL_VERSION "\"} 1\n");
    struct {
        const char *name;
        const char *value;
    } want[] = {
        {"pgvigil_postgres_running", "1"},        {"pgvigil_primary", "1"},
        {"pgvigil_replica", "0"},                 {"pgvigil_is_leader", "1"},
        {"pgvigil_xlog_location", "50331744"},    {"pgvigil_xlog_received_location", "0"},
        {"pgvigil_xlog_replayed_location", "0"},  {"pgvigil_replication_lag_bytes", "0"},
        {"pgvigil_timeline", "1"},                {"pgvigil_paused", "0"},
        {"pgvigil_sync_standby", "0"},            {"pgvigil_dcs_last_seen", "1700000000"},
        {"pgvigil_failovers_total", "3"},         {"pgvigil_postmaster_start_time", "1700000000"},
        {"pgvigil_commit_guard", "1"},            {"pgvigil_archive_files_total", "42"},
        {"pgvigil_archive_failures_total", "2"},  {"pgvigil_archive_ready_files", "5"},
        {"pgvigil_archive_last_success_time", "1700000123"},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        str_fmt(line, sizeof(line), "\n%s%s %s\n", want[i].name, lbl, want[i].value);
        assert_contains(m, line);
        str_fmt(line, sizeof(line), "# HELP %s ", want[i].name);
        assert_contains(m, line);
    }
    assert_contains(m, "# TYPE pgvigil_failovers_total counter\n");
    assert_contains(m, "# TYPE pgvigil_primary gauge\n");
    /* every non-comment line is "name{labels} number" */
    char *copy = str_dup(m), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#')
            continue;
        char *sp = strrchr(l, ' ');
        assert_non_null(sp);
        assert_non_null(strchr(l, '{'));
        char *end;
        (void)strtod(sp + 1, &end);
        assert_true(*end == '\0' && end != sp + 1);
    }
    free(copy);
    free(m);
}

static void test_metrics_replica_and_escaping(void **state)
{
    NodeStatus st = make_status(V_REPLICA_SYNC);
    str_copy(st.scope, sizeof(st.scope), "we\"ird\\sc\nope");
    char *m = rest_metrics_text(&st);
    assert_null(strstr(m, "pgvigil_archive_")); /* no archive service: no archive metrics */
    const char *lbl = "{scope=\"we\\\"ird\\\\sc\\nope\",name=\"node1\"}";
    char line[256];
    str_fmt(line, sizeof(line), "pgvigil_replica%s 1\n", lbl);
    assert_contains(m, line);
    str_fmt(line, sizeof(line), "pgvigil_primary%s 0\n", lbl);
    assert_contains(m, line);
    str_fmt(line, sizeof(line), "pgvigil_xlog_replayed_location%s 50331648\n", lbl);
    assert_contains(m, line);
    str_fmt(line, sizeof(line), "pgvigil_replication_lag_bytes%s 1000\n", lbl);
    assert_contains(m, line);
    str_fmt(line, sizeof(line), "pgvigil_sync_standby%s 1\n", lbl);
    assert_contains(m, line);
    free(m);

    st = make_status(V_REPLICA_LAG_UNKNOWN);
    m = rest_metrics_text(&st);
    assert_contains(m, "pgvigil_replication_lag_bytes{scope=\"demo\",name=\"node1\"} -1\n");
    free(m);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_table),
        cmocka_unit_test(test_health_total),
        cmocka_unit_test(test_status_json_primary),
        cmocka_unit_test(test_status_json_replica),
        cmocka_unit_test(test_status_json_stopped),
        cmocka_unit_test(test_metrics_primary),
        cmocka_unit_test(test_metrics_replica_and_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
