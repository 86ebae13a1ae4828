/* Tables for peer_from_status_json(), the parser of a peer's /patroni document during an
 * election: Patroni-shaped primary and replica answers, tags, stopped servers, and junk. */
#include "common/common.h"
#include "ha/peers.h"

#include <inttypes.h>
#include <setjmp.h>

#include <cmocka.h>

#define PRIMARY_DOC                                                                                 \
    "{\"state\": \"running\", \"postmaster_start_time\": \"2024-05-01 10:00:00.123456+00:00\","    \
    " \"role\": \"master\", \"server_version\": 150004, \"xlog\": {\"location\": 50331744},"        \
    " \"timeline\": 3, \"replication\": [{\"usename\": \"replicator\", \"application_name\":"       \
    " \"node2\", \"client_addr\": \"127.0.0.1\", \"state\": \"streaming\", \"sync_state\":"         \
    " \"sync\", \"sync_priority\": 1}], \"dcs_last_seen\": 1714557600,"                             \
    " \"database_system_identifier\": \"7301234567890123456\","                                     \
    " \"patroni\": {\"version\": \"3.2.0\", \"scope\": \"demo\", \"name\": \"node1\"}}"

#define REPLICA_DOC                                                                                 \
    "{\"state\": \"running\", \"postmaster_start_time\": \"2024-05-01 10:00:01.5+00:00\","         \
    " \"role\": \"replica\", \"server_version\": 150004, \"xlog\": {\"received_location\":"         \
    " 50331744, \"replayed_location\": 50331600, \"replayed_timestamp\": \"2024-05-01"              \
    " 10:05:00.1+00:00\", \"paused\": false}, \"timeline\": 3, \"replication_state\":"              \
    " \"streaming\", \"dcs_last_seen\": 1714557600, \"patroni\": {\"version\": \"3.2.0\","          \
    " \"scope\": \"demo\", \"name\": \"node2\"}}"

typedef struct Row {
    const char *what;
    const char *json;
    bool ok;
    bool running, primary;
    Lsn lsn;
    int timeline;
    bool nofailover, nosync;
    int priority;
    bool pre_nofailover;   /* the member key said nofailover (peers_fetch fills tags first) */
} Row;

/* What peers_fetch() puts in before parsing: the name and the member key's tags. */
static void prefill(PeerPos *p, bool nofailover)
{
    memset(p, 0, sizeof(*p));
    str_copy(p->name, sizeof(p->name), "node2");
    p->tags.failover_priority = 1;
    p->tags.nofailover = nofailover;
}

static bool run_row(const Row *r)
{
    PeerPos p, before;
    prefill(&p, r->pre_nofailover);
    before = p;
    bool ok = peer_from_status_json(r->json, &p);
    if (ok != r->ok) {
        print_error("row \"%s\": returned %d, want %d\n", r->what, ok, r->ok);
        return false;
    }
    if (!ok) {
        /* a document we cannot read changes nothing: the peer stays unreachable */
        if (memcmp(&p, &before, sizeof(p)) != 0) {
            print_error("row \"%s\": rejected, but the position was changed\n", r->what);
            return false;
        }
        return true;
    }
    bool good = p.reachable && p.pg_running == r->running && p.is_primary == r->primary && p.lsn == r->lsn &&
                p.timeline == r->timeline && p.tags.nofailover == r->nofailover && p.tags.nosync == r->nosync &&
                p.tags.failover_priority == r->priority && strcmp(p.name, "node2") == 0;
    if (!good)
        print_error("row \"%s\":\n  want running=%d primary=%d lsn=%" PRIX64 " tl=%d nofailover=%d nosync=%d prio=%d\n"
                    "  got  running=%d primary=%d lsn=%" PRIX64 " tl=%d nofailover=%d nosync=%d prio=%d"
                    " reachable=%d name=%s\n",
                    r->what, r->running, r->primary, r->lsn, r->timeline, r->nofailover, r->nosync, r->priority,
                    p.pg_running, p.is_primary, p.lsn, p.timeline, p.tags.nofailover, p.tags.nosync,
                    p.tags.failover_priority, p.reachable, p.name);
    return good;
}

static void run_table(const Row *rows, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        if (!run_row(&rows[i]))
            failed++;
    if (failed)
        fail_msg("%d of %zu rows failed", failed, n);
}

#define RUN(rows) run_table(rows, ARRAY_LEN(rows))

static void test_primary(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"Patroni 3 primary (role master)", PRIMARY_DOC, true, true, true, 50331744, 3, false, false, 1, false},
        {"Patroni 4 / pgvigil primary", "{\"state\":\"running\",\"role\":\"primary\",\"xlog\":{\"location\":83886080},"
         "\"timeline\":7}", true, true, true, 83886080, 7, false, false, 1, false},
        {"primary with receive positions too: the largest counts",
         "{\"state\":\"running\",\"role\":\"primary\",\"xlog\":{\"location\":100,\"received_location\":300,"
         "\"replayed_location\":200},\"timeline\":1}", true, true, true, 300, 1, false, false, 1, false},
        {"largest LSN JSON can carry", "{\"state\":\"running\",\"role\":\"primary\",\"xlog\":{\"location\":"
         "9223372036854775807}}", true, true, true, (Lsn)INT64_MAX, 0, false, false, 1, false},
        {"standby leader is no primary", "{\"state\":\"running\",\"role\":\"standby_leader\",\"xlog\":"
         "{\"received_location\":5000,\"replayed_location\":5000},\"timeline\":2}",
         true, true, false, 5000, 2, false, false, 1, false},
    };
    RUN(rows);
}

static void test_replica(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"Patroni replica: received ahead of replayed", REPLICA_DOC, true, true, false, 50331744, 3, false, false, 1,
         false},
        {"replayed ahead of received (walreceiver restarted)",
         "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"received_location\":4096,"
         "\"replayed_location\":8192},\"timeline\":3}", true, true, false, 8192, 3, false, false, 1, false},
        {"replayed only (archive recovery, no walreceiver)",
         "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"replayed_location\":8192,\"paused\":true},"
         "\"timeline\":3}", true, true, false, 8192, 3, false, false, 1, false},
        {"received null, replayed set", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"received_location\":"
         "null,\"replayed_location\":8192}}", true, true, false, 8192, 0, false, false, 1, false},
        {"positions as text are not positions", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":"
         "{\"received_location\":\"0/3000060\",\"replayed_location\":\"0/3000000\"},\"timeline\":3}",
         true, true, false, 0, 3, false, false, 1, false},
        {"negative positions count as none", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":"
         "{\"received_location\":-5,\"replayed_location\":-1},\"timeline\":3}", true, true, false, 0, 3, false, false, 1,
         false},
        {"xlog not an object", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":50331744,\"timeline\":3}",
         true, true, false, 0, 3, false, false, 1, false},
        {"timeline as text is ignored", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":"
         "{\"replayed_location\":10},\"timeline\":\"3\"}", true, true, false, 10, 0, false, false, 1, false},
        {"unknown keys are ignored", "{\"state\":\"running\",\"role\":\"replica\",\"xlog\":{\"replayed_location\":10,"
         "\"future\":[1,2]},\"timeline\":3,\"something_new\":{\"a\":1}}", true, true, false, 10, 3, false, false, 1,
         false},
    };
    RUN(rows);
}

static void test_not_running(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"stopped primary", "{\"state\":\"stopped\",\"role\":\"master\",\"timeline\":3}",
         true, false, false, 0, 3, false, false, 1, false},
        {"starting replica", "{\"state\":\"starting\",\"role\":\"replica\"}", true, false, false, 0, 0, false, false, 1,
         false},
        {"crashed, still says primary", "{\"state\":\"crashed\",\"role\":\"primary\",\"xlog\":{\"location\":700}}",
         true, false, false, 700, 0, false, false, 1, false},
        {"running custom bootstrap script", "{\"state\":\"running custom bootstrap script\",\"role\":\"master\"}",
         true, false, false, 0, 0, false, false, 1, false},
        {"creating replica", "{\"state\":\"creating replica\",\"role\":\"uninitialized\"}",
         true, false, false, 0, 0, false, false, 1, false},
        {"state in another case", "{\"state\":\"Running\",\"role\":\"primary\"}", true, false, false, 0, 0, false, false,
         1, false},
        {"no state", "{\"role\":\"primary\",\"xlog\":{\"location\":700}}", true, false, false, 700, 0, false, false, 1,
         false},
        {"state not a string", "{\"state\":true,\"role\":\"primary\"}", true, false, false, 0, 0, false, false, 1, false},
        {"role not a string", "{\"state\":\"running\",\"role\":1}", true, true, false, 0, 0, false, false, 1, false},
        {"empty object", "{}", true, false, false, 0, 0, false, false, 1, false},
    };
    RUN(rows);
}

static void test_tags(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"nofailover", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":{\"nofailover\":true}}",
         true, true, false, 0, 0, true, false, 1, false},
        {"nosync", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":{\"nosync\":true}}",
         true, true, false, 0, 0, false, true, 1, false},
        {"failover_priority 0", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":{\"failover_priority\":0}}",
         true, true, false, 0, 0, false, false, 0, false},
        {"failover_priority 5 with others", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":"
         "{\"failover_priority\":5,\"noloadbalance\":true,\"clonefrom\":true,\"nofailover\":false}}",
         true, true, false, 0, 0, false, false, 5, false},
        {"booleans as text are not true", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":"
         "{\"nofailover\":\"true\",\"nosync\":1,\"failover_priority\":\"0\"}}", true, true, false, 0, 0, false, false, 1,
         false},
        {"tags not an object", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":[\"nofailover\"]}",
         true, true, false, 0, 0, false, false, 1, false},
        /* the document only lists tags away from their defaults: without a tags object, what
         * the member key said (filled in by peers_fetch) stays */
        {"no tags: the member key's nofailover stays", "{\"state\":\"running\",\"role\":\"replica\"}",
         true, true, false, 0, 0, true, false, 1, true},
        {"tags object: the document decides", "{\"state\":\"running\",\"role\":\"replica\",\"tags\":{}}",
         true, true, false, 0, 0, false, false, 1, true},
    };
    RUN(rows);
}

static void test_junk(void **state)
{
    (void)state;
    static const Row rows[] = {
        {"empty body", "", false, false, false, 0, 0, false, false, 1, false},
        {"not JSON", "Service Unavailable", false, false, false, 0, 0, false, false, 1, false},
        {"HTML error page", "<html><body>502 Bad Gateway</body></html>", false, false, false, 0, 0, false, false, 1,
         false},
        {"cut short", "{\"state\": \"running\", \"role\": \"master\", \"xlog\": {\"loc", false, false, false, 0, 0,
         false, false, 1, false},
        {"trailing garbage", "{\"state\":\"running\",\"role\":\"master\"} x", false, false, false, 0, 0, false, false,
         1, false},
        {"two documents", "{\"state\":\"running\"}{\"state\":\"running\"}", false, false, false, 0, 0, false, false, 1,
         false},
        {"array", "[{\"state\":\"running\",\"role\":\"master\"}]", false, false, false, 0, 0, false, false, 1, false},
        {"empty array", "[]", false, false, false, 0, 0, false, false, 1, false},
        {"string", "\"running\"", false, false, false, 0, 0, false, false, 1, false},
        {"number", "42", false, false, false, 0, 0, false, false, 1, false},
        {"null", "null", false, false, false, 0, 0, false, false, 1, false},
        {"true", "true", false, false, false, 0, 0, false, false, 1, false},
        {"bad UTF-8", "{\"state\":\"run\xff\xfeing\"}", false, false, false, 0, 0, false, false, 1, false},
    };
    RUN(rows);

    PeerPos p, before;
    prefill(&p, false);
    before = p;
    assert_false(peer_from_status_json(NULL, &p));
    assert_memory_equal(&p, &before, sizeof(p));
}

/* The whole document, then every prefix of it: each either parses or leaves the peer as it was. */
static void test_truncations(void **state)
{
    (void)state;
    static const char *const docs[] = {PRIMARY_DOC, REPLICA_DOC};
    for (size_t d = 0; d < ARRAY_LEN(docs); d++) {
        size_t len = strlen(docs[d]);
        for (size_t n = 0; n < len; n++) {
            char *cut = xmalloc(n + 1);
            memcpy(cut, docs[d], n);
            cut[n] = '\0';
            PeerPos p, before;
            prefill(&p, false);
            before = p;
            bool ok = peer_from_status_json(cut, &p);
            free(cut);
            if (ok)
                fail_msg("document %zu cut at %zu bytes parsed", d, n);
            assert_memory_equal(&p, &before, sizeof(p));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary),
        cmocka_unit_test(test_replica),
        cmocka_unit_test(test_not_running),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_junk),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
