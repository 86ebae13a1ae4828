/* `pgvigil rewind`: pgvigil's own rewind of a stopped data directory from a running source
 * (rewind/rewind.h). The agent runs it before falling back to pg_rewind; operators can run it
 * by hand, or with --dry-run to see what it would copy. */
#include "common/common.h"
#include "cli/cli.h"
#include "common/proc.h"
#include "rewind/rewind.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

/* exit status when nothing was changed and the case is left to pg_rewind */
#define EXIT_REWIND_NOT_DONE 5

static void usage(FILE *out)
{
    fputs("usage: pgvigil rewind -D DATADIR --source-server CONNINFO [--restore-target-wal]\n"
          "                      [--pg-bin DIR] [--dry-run]\n\n"
          "Make the stopped, cleanly shut down DATADIR follow the running source server after a\n"
          "fork, copying only the blocks its WAL changed since the last checkpoint before the fork,\n"
          "the files that differ and the source's WAL from the fork on. Needs wal_log_hints or\n"
          "data checksums, like pg_rewind. --restore-target-wal fetches WAL DATADIR no longer has\n"
          "through its restore_command. Exit 0 when rewound, 5 when nothing was changed and the\n"
          "case is left to pg_rewind (the reason on stderr), 1 when it failed part way (the\n"
          "directory is marked with pgvigil.rewind_failed and must not be started).\n",
          out);
}

/* the target's restore_command, as its configuration sets it (what pg_rewind -c reads too) */
static bool target_restore_command(const RewindOptions *o, char **out, Err *err)
{
    char prog[4200];
    str_fmt(prog, sizeof(prog), "%s/postgres", o->pg_bin);
    const char *argv[] = {prog, "-D", o->data_dir, "-C", "restore_command", NULL};
    ProcOpts po = {.timeout_ms = 30000};
    char *text = NULL;
    int rc = proc_run(argv, &po, &text, err);
    if (rc != 0 || !text) {
        err_set(err, "postgres -C restore_command failed%s%s", text ? ": " : "", text ? text : "");
        free(text);
        return false;
    }
    text[strcspn(text, "\n")] = '\0';
    if (!text[0]) {
        err_set(err, "%s sets no restore_command", o->data_dir);
        free(text);
        return false;
    }
    *out = text;
    return true;
}

int cmd_rewind(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"pgdata", required_argument, NULL, 'D'}, {"source-server", required_argument, NULL, 's'},
        {"pg-bin", required_argument, NULL, 'b'}, {"dry-run", no_argument, NULL, 'n'},
        {"restore-target-wal", no_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    bool restore = false;
    RewindOptions o = {.pg_bin = "/usr/lib/postgresql/15/bin"};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "D:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'D': o.data_dir = optarg; break;
        case 's': o.source = optarg; break;
        case 'b': o.pg_bin = optarg; break;
        case 'n': o.dry_run = true; break;
        case 'r': restore = true; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (!o.data_dir || !o.source || optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    RewindStats st;
    Err err = {{0}};
    char *restore_command = NULL;
    if (restore && !target_restore_command(&o, &restore_command, &err)) {
        cli_error(NULL, "rewind of %s not done, nothing changed: %s", o.data_dir, err.msg);
        return EXIT_REWIND_NOT_DONE;
    }
    o.restore_command = restore_command;
    RewindResult r = block_rewind(&o, &st, &err);
    free(restore_command);
    if (r == REWIND_NOT_DONE) {
        cli_error(NULL, "rewind of %s not done, nothing changed: %s", o.data_dir, err.msg);
        return EXIT_REWIND_NOT_DONE;
    }
    char line[1024];
    rewind_stats_format(&st, o.dry_run, line, sizeof(line));
    if (r == REWIND_BROKEN) {
        cli_error(NULL, "rewind of %s failed part way (%s): %s", o.data_dir, line, err.msg);
        return EXIT_FAILED;
    }
    printf("pgvigil rewind: %s\n", line);
    return EXIT_OK;
}
