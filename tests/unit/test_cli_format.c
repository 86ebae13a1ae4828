/* Unit tests for the pure parts of the operator CLI: the member table and its JSON, lag/role/
 * host/tag cells, the history table, config pretty-printing and diffs, --dcs-url parsing. */
#include "common/common.h"
#include "cli/cli_common.h"
#include "dcs/cluster.h"

#include <setjmp.h>

#include <cmocka.h>
#include <jansson.h>

#define MB 1048576

/* A cluster from (key, value) pairs, as one etcd range read would give it. */
static void make_cluster(Cluster *c, const char *const *pairs, int n)
{
    DcsKv *kvs = xcalloc((size_t)n, sizeof(DcsKv));
    for (int i = 0; i < n; i++) {
        kvs[i].key = (char *)pairs[2 * i];
        kvs[i].value = (char *)pairs[2 * i + 1];
        kvs[i].mod_revision = 10 + i;
        kvs[i].create_revision = 10 + i;
    }
    Err err = {{0}};
    assert_true(cluster_from_kvs(kvs, n, 100, c, &err));
    free(kvs);
}

static const char *const three_nodes[] = {
    "initialize", "7301234567890123456",
    "leader", "node1",
    "members/node1",
    "{\"conn_url\":\"postgres://postgres@127.0.0.1:5432/postgres\",\"api_url\":\"http://127.0.0.1:8008/patroni\","
    "\"state\":\"running\",\"role\":\"primary\",\"xlog_location\":50331744,\"timeline\":2}",
    "members/node2",
    "{\"conn_url\":\"postgres://127.0.0.1:5433/postgres\",\"api_url\":\"http://127.0.0.1:8009/patroni\","
    "\"state\":\"running\",\"role\":\"replica\",\"xlog_location\":48234592,\"timeline\":2}",
    "members/node3",
    "{\"conn_url\":\"postgres://127.0.0.1:5434/postgres\",\"api_url\":\"http://127.0.0.1:8010/patroni\","
    "\"state\":\"starting\",\"role\":\"replica\",\"timeline\":2,\"tags\":{\"nofailover\":true}}",
    "sync", "{\"leader\":\"node1\",\"sync_standby\":\"node2\"}",
    "config", "{\"ttl\":20,\"pause\":true}",
};

static void test_api_base(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"http://127.0.0.1:8008/patroni", "http://127.0.0.1:8008"},
        {"http://127.0.0.1:8008/patroni/", "http://127.0.0.1:8008"},
        {"https://db1:8443/", "https://db1:8443"},
        {"http://db1:8008", "http://db1:8008"},
        {"http://db1:8008/api/patroni", "http://db1:8008/api"},
        {"", ""},
        {NULL, ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *b = cli_api_base(cases[i].in);
        assert_string_equal(b, cases[i].out);
        free(b);
    }
}

static void test_member_host(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"postgres://127.0.0.1:5432/postgres", "127.0.0.1:5432"},
        {"postgres://repl:s3cr@t@10.0.0.7:5433/postgres?sslmode=require", "10.0.0.7:5433"},
        {"postgresql://db1", "db1"},
        {"postgres://[::1]:5432/x", "[::1]:5432"},
        {"host=10.1.1.1 port=6432 dbname=postgres", "10.1.1.1:6432"},
        {"host=/tmp dbname=postgres", "/tmp"},
        {"", ""},
        {NULL, ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char buf[64];
        cluster_member_host(cases[i].in, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].out);
    }
    char small[6];
    cluster_member_host("postgres://127.0.0.1:5432/", small, sizeof(small));
    assert_string_equal(small, "127.0");
}

static void test_roles_lag_tags(void **state)
{
    (void)state;
    Cluster c;
    make_cluster(&c, (const char *const *)three_nodes, (int)ARRAY_LEN(three_nodes) / 2);
    const Member *n1 = cluster_member(&c, "node1"), *n2 = cluster_member(&c, "node2"),
                 *n3 = cluster_member(&c, "node3");
    assert_non_null(n1);
    assert_non_null(n2);
    assert_non_null(n3);
    assert_string_equal(cli_member_role(&c, n1), "Leader");
    assert_string_equal(cli_member_role(&c, n2), "Sync Standby");
    assert_string_equal(cli_member_role(&c, n3), "Replica");

    char lag[32];
    assert_int_equal(cli_member_lag(&c, n1, lag, sizeof(lag)), -1);
    assert_string_equal(lag, "");
    assert_int_equal(cli_member_lag(&c, n2, lag, sizeof(lag)), 2 * MB);
    assert_string_equal(lag, "2.0");
    assert_int_equal(cli_member_lag(&c, n3, lag, sizeof(lag)), -1);   /* no xlog_location */
    assert_string_equal(lag, "unknown");

    /* rounding to one decimal, and a replica ahead of the leader's last report shows 0 */
    Member m = *n2;
    m.xlog_location = n1->xlog_location - (MB + MB / 20 + 1);   /* 1.05 MB + 1 byte */
    assert_int_equal(cli_member_lag(&c, &m, lag, sizeof(lag)), MB + MB / 20 + 1);
    assert_string_equal(lag, "1.1");
    m.xlog_location = n1->xlog_location - 1000;
    cli_member_lag(&c, &m, lag, sizeof(lag));
    assert_string_equal(lag, "0.0");
    m.xlog_location = n1->xlog_location + 5000;
    assert_int_equal(cli_member_lag(&c, &m, lag, sizeof(lag)), 0);
    assert_string_equal(lag, "0.0");

    /* no role published yet */
    str_copy(m.role, sizeof(m.role), "");
    str_copy(m.name, sizeof(m.name), "node9");
    assert_string_equal(cli_member_role(&c, &m), "Uninitialized");
    str_copy(m.role, sizeof(m.role), "uninitialized");
    assert_string_equal(cli_member_role(&c, &m), "Uninitialized");

    char tags[128];
    cli_member_tags(&n3->tags, tags, sizeof(tags));
    assert_string_equal(tags, "nofailover: true");
    cli_member_tags(&n1->tags, tags, sizeof(tags));
    assert_string_equal(tags, "");
    Tags t = {.nosync = true, .clonefrom = true, .failover_priority = 0};
    cli_member_tags(&t, tags, sizeof(tags));
    assert_string_equal(tags, "nosync: true, clonefrom: true, failover_priority: 0");

    /* without a leader (or the leader's member key), lag is unknown */
    c.leader[0] = '\0';
    assert_int_equal(cli_member_lag(&c, n2, lag, sizeof(lag)), -1);
    assert_string_equal(lag, "unknown");
    assert_string_equal(cli_member_role(&c, n1), "Replica");   /* role primary, but no lock */
    cluster_free(&c);
}

static void test_format_members(void **state)
{
    (void)state;
    Cluster c;
    make_cluster(&c, (const char *const *)three_nodes, (int)ARRAY_LEN(three_nodes) / 2);
    char *out = cli_format_members(&c, "demo");
    const char *want =
        "+ Cluster: demo (7301234567890123456) ---+----------+----+-----------+------------------+\n"
        "| Member | Host           | Role         | State    | TL | Lag in MB | Tags             |\n"
        "+--------+----------------+--------------+----------+----+-----------+------------------+\n"
        "| node1  | 127.0.0.1:5432 | Leader       | running  |  2 |           |                  |\n"
        "| node2  | 127.0.0.1:5433 | Sync Standby | running  |  2 |       2.0 |                  |\n"
        "| node3  | 127.0.0.1:5434 | Replica      | starting |  2 |   unknown | nofailover: true |\n"
        "+--------+----------------+--------------+----------+----+-----------+------------------+\n"
        " Maintenance mode: on\n";
    assert_string_equal(out, want);
    free(out);
    cluster_free(&c);
}

static void test_format_members_empty_and_pending(void **state)
{
    (void)state;
    const char *const pairs[] = {
        "members/b", "{\"conn_url\":\"postgres://h2:5432/postgres\",\"state\":\"running\",\"role\":\"replica\","
                     "\"pending_restart\":true}",
        "members/a", "{\"conn_url\":\"postgres://h1:5432/postgres\",\"state\":\"stopped\"}",
        "failover", "{\"leader\":\"a\",\"member\":\"b\"}",
    };
    Cluster c;
    make_cluster(&c, pairs, (int)ARRAY_LEN(pairs) / 2);
    char *out = cli_format_members(&c, "x");
    const char *want =
        "+ Cluster: x ------+---------------+---------+----+-----------+-----------------+\n"
        "| Member | Host    | Role          | State   | TL | Lag in MB | Tags            |\n"
        "+--------+---------+---------------+---------+----+-----------+-----------------+\n"
        "| a      | h1:5432 | Uninitialized | stopped |    |   unknown |                 |\n"
        "| b      | h2:5432 | Replica       | running |    |   unknown | pending restart |\n"
        "+--------+---------+---------------+---------+----+-----------+-----------------+\n"
        " Switchover pending: a -> b\n";
    assert_string_equal(out, want);
    free(out);
    cluster_free(&c);

    cluster_init(&c);
    out = cli_format_members(&c, "a-very-long-cluster-name-indeed");
    want = "+ Cluster: a-very-long-cluster-name-indeed -----+------+\n"
           "| Member | Host | Role | State | TL | Lag in MB | Tags |\n"
           "+--------+------+------+-------+----+-----------+------+\n";
    assert_string_equal(out, want);
    free(out);
    /* a title wider than the table gets its own closing corner */
    out = cli_format_members(&c, "a-cluster-name-much-wider-than-the-empty-table");
    want = "+ Cluster: a-cluster-name-much-wider-than-the-empty-table +\n"
           "| Member | Host | Role | State | TL | Lag in MB | Tags |\n"
           "+--------+------+------+-------+----+-----------+------+\n";
    assert_string_equal(out, want);
    free(out);
    cluster_free(&c);
}

static void test_members_json(void **state)
{
    (void)state;
    Cluster c;
    make_cluster(&c, (const char *const *)three_nodes, (int)ARRAY_LEN(three_nodes) / 2);
    char *out = cli_members_json(&c, "demo");
    json_error_t jerr;
    json_t *arr = json_loads(out, 0, &jerr);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 3);
    json_t *m1 = json_array_get(arr, 0), *m2 = json_array_get(arr, 1), *m3 = json_array_get(arr, 2);
    assert_string_equal(json_string_value(json_object_get(m1, "Cluster")), "demo");
    assert_string_equal(json_string_value(json_object_get(m1, "Member")), "node1");
    assert_string_equal(json_string_value(json_object_get(m1, "Host")), "127.0.0.1:5432");
    assert_string_equal(json_string_value(json_object_get(m1, "Role")), "Leader");
    assert_string_equal(json_string_value(json_object_get(m1, "State")), "running");
    assert_int_equal(json_integer_value(json_object_get(m1, "TL")), 2);
    assert_null(json_object_get(m1, "Lag in MB"));
    assert_null(json_object_get(m1, "Tags"));
    assert_string_equal(json_string_value(json_object_get(m2, "Role")), "Sync Standby");
    assert_true(json_is_real(json_object_get(m2, "Lag in MB")));
    assert_true(json_real_value(json_object_get(m2, "Lag in MB")) == 2.0);
    assert_string_equal(json_string_value(json_object_get(m3, "Lag in MB")), "unknown");
    assert_true(json_is_true(json_object_get(json_object_get(m3, "Tags"), "nofailover")));
    json_decref(arr);
    free(out);
    cluster_free(&c);

    cluster_init(&c);
    out = cli_members_json(&c, "demo");
    assert_string_equal(out, "[]");
    free(out);
    cluster_free(&c);
}

static void test_history(void **state)
{
    (void)state;
    Err err = {{0}};
    char *out = cli_format_history(NULL, &err);
    assert_string_equal(out, "no failovers or switchovers yet\n");
    free(out);
    out = cli_format_history("[]", &err);
    assert_string_equal(out, "no failovers or switchovers yet\n");
    free(out);

    /* Patroni's shape: [timeline, lsn, reason, timestamp, new leader]; older entries lack the
     * last fields; an LSN may also come as text. */
    out = cli_format_history("[[1,50331808,\"no recovery target specified\",\"2024-05-01T10:00:00.123+00:00\",\"node2\"],"
                             "[2,\"0/5000000\",\"switchover\"],\"junk\"]",
                             &err);
    assert_string_equal(
        out,
        "+----+-----------+------------------------------+-------------------------------+------------+\n"
        "| TL | LSN       | Reason                       | Timestamp                     | New Leader |\n"
        "+----+-----------+------------------------------+-------------------------------+------------+\n"
        "|  1 | 0/30000A0 | no recovery target specified | 2024-05-01T10:00:00.123+00:00 | node2      |\n"
        "|  2 | 0/5000000 | switchover                   |                               |            |\n"
        "+----+-----------+------------------------------+-------------------------------+------------+\n");
    free(out);

    /* a history entry appended by cluster.c reads back */
    char *h = history_append(NULL, 3, ((Lsn)0x16 << 32) | 0xB374D848, "failover", "node3");
    out = cli_format_history(h, &err);
    assert_non_null(strstr(out, "|  3 | 16/B374D848 | failover | "));
    assert_non_null(strstr(out, " | node3      |\n"));
    free(out);
    free(h);

    /* an LSN as a real: converted when it is a whole number in range, shown as it is otherwise
     * (a huge one, found by fuzz_cluster_json, made an out-of-range conversion) */
    out = cli_format_history("[[1,83886080.0,\"a\"],[2,5.5e58,\"b\"],[3,1.5,\"c\"]]", &err);
    assert_non_null(strstr(out, " 0/5000000 | a "));
    assert_non_null(strstr(out, "e58 | b "));
    assert_non_null(strstr(out, " 1.5 | c "));
    free(out);

    assert_null(cli_format_history("{\"a\":1}", &err));
    assert_non_null(strstr(err.msg, "history"));
    assert_null(cli_format_history("[1,", &err));
    assert_non_null(strstr(err.msg, "history"));
}

static void test_json_pretty(void **state)
{
    (void)state;
    Err err = {{0}};
    char *out = cli_json_pretty("{\"ttl\":20,\"postgresql\":{\"parameters\":{\"work_mem\":\"8MB\"}},\"loop_wait\":1}", &err);
    assert_string_equal(out, "{\n"
                             "  \"loop_wait\": 1,\n"
                             "  \"postgresql\": {\n"
                             "    \"parameters\": {\n"
                             "      \"work_mem\": \"8MB\"\n"
                             "    }\n"
                             "  },\n"
                             "  \"ttl\": 20\n"
                             "}\n");
    free(out);
    assert_null(cli_json_pretty("{\"ttl\":", &err));
    assert_non_null(strstr(err.msg, "line 1"));
    assert_null(cli_json_pretty(NULL, &err));
}

static void test_config_diff(void **state)
{
    (void)state;
    char *d = cli_config_diff("{\"ttl\":10,\"pause\":false,\"postgresql\":{\"parameters\":{\"a\":\"1\",\"b\":2}}}",
                              "{\"ttl\":20,\"pause\":false,\"postgresql\":{\"parameters\":{\"a\":\"1MB\",\"c\":true}}}",
                              NULL);
    assert_string_equal(d, "postgresql.parameters.a: 1 -> 1MB\n"
                           "postgresql.parameters.b: 2 -> (removed)\n"
                           "postgresql.parameters.c: (unset) -> true\n"
                           "ttl: 10 -> 20\n");
    free(d);
    /* a key absent before shows its default from the fallback document */
    d = cli_config_diff("{}", "{\"ttl\":20,\"x\":\"y\"}", "{\"ttl\":10,\"loop_wait\":1}");
    assert_string_equal(d, "ttl: 10 -> 20\nx: (unset) -> y\n");
    free(d);
    d = cli_config_diff("{\"ttl\":10}", "{\"ttl\":10}", NULL);
    assert_string_equal(d, "");
    free(d);
    d = cli_config_diff(NULL, "{\"pause\":true}", NULL);
    assert_string_equal(d, "pause: (unset) -> true\n");
    free(d);
}

static void test_dcs_urls(void **state)
{
    (void)state;
    char **hosts, *user, *password;
    int n;
    Err err = {{0}};
    assert_true(cli_parse_dcs_urls("http://127.0.0.1:2379", &hosts, &n, &user, &password, &err));
    assert_int_equal(n, 1);
    assert_string_equal(hosts[0], "127.0.0.1:2379");
    assert_null(user);
    assert_null(password);
    cli_strv_free(hosts, n);

    assert_true(cli_parse_dcs_urls("http://root:pw@10.0.0.1:2379/, 10.0.0.2:2380,http://etcd3,[::1]",
                                   &hosts, &n, &user, &password, &err));
    assert_int_equal(n, 4);
    assert_string_equal(hosts[0], "10.0.0.1:2379");
    assert_string_equal(hosts[1], "10.0.0.2:2380");
    assert_string_equal(hosts[2], "etcd3:2379");
    assert_string_equal(hosts[3], "[::1]:2379");
    assert_string_equal(user, "root");
    assert_string_equal(password, "pw");
    cli_strv_free(hosts, n);
    free(user);
    free(password);

    assert_true(cli_parse_dcs_urls("http://a:1,https://u@b:2/x,https://c", &hosts, &n, &user, &password, &err));
    assert_int_equal(n, 3);
    assert_string_equal(hosts[0], "a:1");
    assert_string_equal(hosts[1], "https://b:2");
    assert_string_equal(hosts[2], "https://c:2379");
    assert_string_equal(user, "u");
    assert_null(password);
    cli_strv_free(hosts, n);
    free(user);

    assert_false(cli_parse_dcs_urls("http://a:1,unix://b", &hosts, &n, &user, &password, &err));
    assert_non_null(strstr(err.msg, "unix://b"));
    assert_null(hosts);
    assert_null(user);
    assert_false(cli_parse_dcs_urls("http://a:1,,", &hosts, &n, &user, &password, &err));
    assert_non_null(strstr(err.msg, "no host"));
    assert_false(cli_parse_dcs_urls("", &hosts, &n, &user, &password, &err));
}

static void test_parse_int_and_table(void **state)
{
    (void)state;
    int v = -1;
    assert_true(cli_parse_int("60", 0, 100, &v));
    assert_int_equal(v, 60);
    assert_true(cli_parse_int("0", 0, 100, &v));
    assert_int_equal(v, 0);
    assert_false(cli_parse_int("101", 0, 100, &v));
    assert_false(cli_parse_int("-1", 0, 100, &v));
    assert_false(cli_parse_int("1s", 0, 100, &v));
    assert_false(cli_parse_int("", 0, 100, &v));
    assert_false(cli_parse_int("99999999999999999999", 0, 100, &v));
    assert_false(cli_parse_int("3", 5, 100, &v));

    const char *headers[] = {"A", "Num"};
    const bool right[] = {false, true};
    const char *cells[] = {"long cell", "1", NULL, "22"};
    char *t = cli_table(NULL, headers, right, 2, cells, 2);
    assert_string_equal(t, "+-----------+-----+\n"
                           "| A         | Num |\n"
                           "+-----------+-----+\n"
                           "| long cell |   1 |\n"
                           "|           |  22 |\n"
                           "+-----------+-----+\n");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_base),
        cmocka_unit_test(test_member_host),
        cmocka_unit_test(test_roles_lag_tags),
        cmocka_unit_test(test_format_members),
        cmocka_unit_test(test_format_members_empty_and_pending),
        cmocka_unit_test(test_members_json),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_json_pretty),
        cmocka_unit_test(test_config_diff),
        cmocka_unit_test(test_dcs_urls),
        cmocka_unit_test(test_parse_int_and_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
