/* pgvigil entry point: dispatch to a subcommand. */
#include "common/common.h"
#include "cli/cli.h"
#include "ha/fence.h"

typedef struct Command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;   /* NULL: started by pgvigil itself, not listed */
} Command;

static const Command commands[] = {
    {"agent", cmd_agent, "run the HA agent for one PostgreSQL node (-c node.yml)"},
    {"proxy", cmd_proxy, "route clients to the primary / replicas (-c proxy.yml)"},
    {"list", cmd_list, "show the cluster members, roles, states, timelines and lag"},
    {"switchover", cmd_switchover, "planned change of primary [--candidate X] [--force]"},
    {"failover", cmd_failover, "manual failover to --candidate X"},
    {"pause", cmd_pause, "maintenance mode: no automatic actions"},
    {"resume", cmd_resume, "leave maintenance mode"},
    {"restart", cmd_restart, "restart PostgreSQL on MEMBER"},
    {"reinit", cmd_reinit, "rebuild MEMBER from the primary"},
    {"history", cmd_history, "timeline history (failovers and switchovers)"},
    {"show-config", cmd_show_config, "print the dynamic cluster configuration"},
    {"edit-config", cmd_edit_config, "change dynamic configuration: --set key=value"},
    {"site", cmd_site, "site status|switchover|promote|rejoin: the primary site and its standby cluster (DR site)"},
    {"rescue", cmd_rescue, "rescue MEMBER --target-time T: open a delayed standby as it was at T, detached"},
    {"drill", cmd_drill, "drill observe|switchover: DR drills with a JSON report and a runbook"},
    {"demo", cmd_demo, "demo up|down|status: a local 3-node cluster on loopback"},
    {"backup", cmd_backup, "backup take|list: base backups in the repository (-c node.yml)"},
    {"restore", cmd_restore, "restore a backup into a directory, to the end of the archive or a target"},
    {"wal-fetch", cmd_wal_fetch, "restore one WAL file from the repository (restore_command)"},
    {"wal-push", cmd_wal_push, "store one WAL file in the repository"},
    {"wal-summary", cmd_wal_summary, "which relation blocks WAL segment files change"},
    {"aa", cmd_aa, "aa status|leader|switchover: an active-active group's apply, lag, conflicts and write leader"},
    {"rewind", cmd_rewind, "rewind a stopped data directory from a running source, copying only what differs"},
    {"fence", cmd_fence, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "pgvigil %s - high availability for PostgreSQL\n\nusage: pgvigil COMMAND [options]\n\ncommands:\n",
            PGVIGIL_VERSION);
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        if (commands[i].summary)
            fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nrun 'pgvigil COMMAND --help' for the options of one command.\n"
                 "exit codes: 0 ok, 1 failed, 2 usage, 3 config error, 4 etcd unreachable, 5 refused by cluster state\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("pgvigil %s\n", PGVIGIL_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command \"%s\"\nhint: run 'pgvigil --help' for the list of commands\n", argv[1]);
    return EXIT_USAGE;
}
