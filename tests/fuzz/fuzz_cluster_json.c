/* Fuzz the readers of what other processes write: the values under the cluster prefix in etcd
 * (member records, config, sync, failover, history, status), as the agent reads them and as
 * the CLI prints them, and the /patroni document an agent reads from its peers during an
 * election. Every codec must round-trip what it accepts. */
#include "common/common.h"
#include "cli/cli_common.h"
#include "common/log.h"
#include "dcs/cluster.h"
#include "fuzz_util.h"
#include "ha/peers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);   /* skipped members are logged as warnings */
    return 0;
}

static void member_round_trip(const char *json)
{
    Member m;
    Err err = {{0}};
    if (!member_from_json("m", json, &m, &err)) {
        FUZZ_CHECK(err.msg[0] != '\0');
        return;
    }
    char *once = member_to_json(&m);
    Member again;
    FUZZ_CHECK(member_from_json("m", once, &again, &err));
    char *twice = member_to_json(&again);
    FUZZ_CHECK(strcmp(once, twice) == 0);
    free(once);
    free(twice);
}

static void sync_round_trip(const char *json)
{
    SyncState s;
    Err err = {{0}};
    if (!sync_from_json(json, &s, &err))
        return;
    FUZZ_CHECK(s.n_members >= 0 && s.n_members <= MAX_SYNC);
    char *once = sync_to_json(&s);
    SyncState again;
    FUZZ_CHECK(sync_from_json(once, &again, &err));
    char *twice = sync_to_json(&again);
    FUZZ_CHECK(strcmp(once, twice) == 0);
    free(once);
    free(twice);
}

static void failover_round_trip(const char *json)
{
    FailoverReq f;
    Err err = {{0}};
    if (!failover_from_json(json, &f, &err))
        return;
    char *once = failover_to_json(&f);
    FailoverReq again;
    FUZZ_CHECK(failover_from_json(once, &again, &err));
    char *twice = failover_to_json(&again);
    FUZZ_CHECK(strcmp(once, twice) == 0);
    free(once);
    free(twice);
}

/* Input: values separated by 0x1E, given in turn to the keys below in one range read. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {
        "initialize", "leader", "members/node1", "members/node2", "config",
        "sync", "failover", "history", "status", "members/",
    };
    enum { N = ARRAY_LEN(keys) };
    char *parts[N];
    int n = fuzz_split(data, size, 0x1E, parts, N);

    DcsKv kvs[N];
    for (int i = 0; i < n; i++) {
        kvs[i] = (DcsKv){.key = (char *)keys[i], .value = parts[i], .mod_revision = i + 1,
                         .create_revision = 1, .lease = i};
    }
    Cluster c;
    Err err = {{0}};
    if (cluster_from_kvs(kvs, n, 100, &c, &err)) {
        FUZZ_CHECK(c.n_members >= 0 && c.n_members <= 2);
        for (int i = 0; i < c.n_members; i++)
            FUZZ_CHECK(cluster_member(&c, c.members[i].name) != NULL);
        FUZZ_CHECK(c.sync.n_members >= 0 && c.sync.n_members <= MAX_SYNC);
        char *h = history_append(c.history_json, c.history_timeline + 1, 0x3000000, "fuzz",
                                 c.leader);
        FUZZ_CHECK(h != NULL);
        free(h);
        /* what `pgvigil list` and `pgvigil history` print of it */
        char *table = cli_format_members(&c, "fuzz");
        FUZZ_CHECK(table != NULL);
        free(table);
        char *hist = cli_format_history(c.history_json, &err);
        if (!hist)
            FUZZ_CHECK(err.msg[0] != '\0');
        free(hist);
    }
    cluster_free(&c);

    member_round_trip(parts[0]);
    sync_round_trip(parts[0]);
    failover_round_trip(parts[0]);
    PeerPos pos = {0};
    (void)peer_from_status_json(parts[0], &pos);
    fuzz_parts_free(parts, n);
    return 0;
}
