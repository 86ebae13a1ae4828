/* `pgvigil wal-summary`: which relation blocks WAL segment files change, as the archive records
 * it for incremental backups (backup/wal_summary.h). For operators who want to know what a stretch
 * of WAL touched, and for the tests, which compare it with pg_waldump's block references. */
#include "common/common.h"
#include "backup/wal_archive.h"
#include "backup/wal_summary.h"
#include "cli/cli.h"
#include "common/fileutil.h"

#include <stdlib.h>

static const char *const fork_names[] = {"main", "fsm", "vm", "init"};

static void usage(FILE *out)
{
    fputs("usage: pgvigil wal-summary [--blocks] SEGMENT-FILE...\n\n"
          "Summarize consecutive WAL segment files (named as in pg_wal): for each relation fork,\n"
          "how many blocks their records change, and where a relation was created or truncated.\n"
          "--blocks prints one line per block: tablespace/database/relation fork block.\n",
          out);
}

static int cmp_rel(const void *a, const void *b)
{
    const WalRelKey *x = &((const WalRelBlocks *)a)->key, *y = &((const WalRelBlocks *)b)->key;
    if (x->spc != y->spc)
        return x->spc < y->spc ? -1 : 1;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    if (x->rel != y->rel)
        return x->rel < y->rel ? -1 : 1;
    return x->fork < y->fork ? -1 : x->fork > y->fork;
}

static void print_summary(const WalSummary *s, bool blocks)
{
    WalRelBlocks *rels = xmalloc((s->n_rels + 1) * sizeof(WalRelBlocks));
    if (s->n_rels > 0)   /* (no relations: s->rels may be NULL) */
        memcpy(rels, s->rels, s->n_rels * sizeof(WalRelBlocks));
    qsort(rels, s->n_rels, sizeof(WalRelBlocks), cmp_rel);
    for (size_t i = 0; i < s->n_rels; i++) {
        const WalRelBlocks *r = &rels[i];
        const char *fork = r->key.fork < 4 ? fork_names[r->key.fork] : "?";
        if (blocks) {
            for (size_t b = 0; b < r->n; b++)
                printf("%u/%u/%u %s %u\n", r->key.spc, r->key.db, r->key.rel, fork, r->blocks[b]);
            continue;
        }
        printf("%u/%u/%u %s: %zu block(s)", r->key.spc, r->key.db, r->key.rel, fork, r->n);
        if (r->limit != WAL_SUMMARY_NO_LIMIT)
            printf(", created or cut to %u block(s)", r->limit);
        putchar('\n');
    }
    if (!blocks) {
        for (size_t i = 0; i < s->n_whole_dbs; i++)
            printf("database %u/%u copied whole\n", s->whole_dbs[i].spc, s->whole_dbs[i].db);
        printf("%llu record(s), %zu relation fork(s)%s\n", (unsigned long long)s->records, s->n_rels,
               s->complete ? "" : "; the last segment ends early");
    }
    free(rels);
}

int cmd_wal_summary(int argc, char **argv)
{
    bool blocks = false;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--blocks") == 0) {
            blocks = true;
        } else {
            usage(strcmp(argv[first], "-h") == 0 || strcmp(argv[first], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[first], "-h") == 0 || strcmp(argv[first], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
        }
    }
    if (first >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    WalSummary acc = {0};
    bool have = false;
    int rc = EXIT_OK;
    for (int i = first; i < argc && rc == EXIT_OK; i++) {
        const char *slash = strrchr(argv[i], '/');
        const char *name = slash ? slash + 1 : argv[i];
        unsigned tli, hi, lo;
        if (wal_file_kind(name) != WALFILE_SEGMENT || sscanf(name, "%8X%8X%8X", &tli, &hi, &lo) != 3) {
            cli_error(NULL, "%s: not a WAL segment file name", argv[i]);
            rc = EXIT_USAGE;
            break;
        }
        Err err = {{0}};
        size_t n = 0;
        unsigned char *seg = (unsigned char *)file_read_all(argv[i], &n, &err);
        WalSummary one;
        uint64_t start = ((uint64_t)hi << 32) + (uint64_t)lo * n;
        if (!seg || n == 0 || (0x100000000ULL % n) != 0 || !wal_summary_parse(seg, n, start, 0, &one, &err)) {
            cli_error(NULL, "%s: %s", argv[i], err.msg[0] ? err.msg : "not a WAL segment");
            free(seg);
            rc = EXIT_FAILED;
            break;
        }
        free(seg);
        if (!have) {
            acc = one;
            have = true;
        } else {
            bool ok = wal_summary_merge(&acc, &one, &err);
            wal_summary_free(&one);
            if (!ok) {
                cli_error(NULL, "%s", err.msg);
                rc = EXIT_FAILED;
            }
        }
    }
    if (rc == EXIT_OK)
        print_summary(&acc, blocks);
    wal_summary_free(&acc);
    return rc;
}
