/* Fuzz the dynamic configuration: the etcd `config` key, a PATCH /config body merged into it
 * and an edit-config --set assignment, and the diff edit-config shows. What is accepted must
 * pass the range checks and round-trip through its JSON. */
#include "common/common.h"
#include "cli/cli_common.h"
#include "config/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void accepted_round_trips(const char *json)
{
    DynConfig dc;
    Err err = {{0}};
    if (!dynconfig_from_json(json, &dc, &err)) {
        FUZZ_CHECK(err.msg[0] != '\0');
        dynconfig_free(&dc);
        return;
    }
    FUZZ_CHECK(dynconfig_check(&dc, &err) == NULL);
    char *once = dynconfig_to_json(&dc);
    DynConfig again;
    FUZZ_CHECK(dynconfig_from_json(once, &again, &err));
    char *twice = dynconfig_to_json(&again);
    FUZZ_CHECK(strcmp(once, twice) == 0);
    DynConfig copy;
    memset(&copy, 0, sizeof(copy));
    dynconfig_copy(&copy, &again);
    char *thrice = dynconfig_to_json(&copy);
    FUZZ_CHECK(strcmp(once, thrice) == 0);
    free(once);
    free(twice);
    free(thrice);
    dynconfig_free(&dc);
    dynconfig_free(&again);
    dynconfig_free(&copy);
}

/* Input: config JSON 0x1E patch JSON 0x1E assignment */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *parts[3];
    int n = fuzz_split(data, size, 0x1E, parts, 3);
    accepted_round_trips(parts[0]);
    Err err = {{0}};
    if (n >= 2) {
        char *merged = dynconfig_json_merge(parts[0], parts[1], &err);
        if (merged) {
            accepted_round_trips(merged);
            /* what `pgvigil edit-config` shows before it asks */
            char *diff = cli_config_diff(parts[0], merged, "{}");
            FUZZ_CHECK(diff != NULL);
            free(diff);
            char *pretty = cli_json_pretty(merged, &err);
            FUZZ_CHECK(pretty != NULL);     /* merge output is valid JSON */
            free(pretty);
            free(merged);
        } else {
            FUZZ_CHECK(err.msg[0] != '\0');
        }
    }
    if (n >= 3) {
        char *set = dynconfig_json_set(parts[0], parts[2], &err);
        if (set) {
            accepted_round_trips(set);
            free(set);
        } else {
            FUZZ_CHECK(err.msg[0] != '\0');
        }
    }
    fuzz_parts_free(parts, n);
    return 0;
}
