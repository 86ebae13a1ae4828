/* What a data directory has that the server it is about to be rewound from never had: the WAL
 * past the point where their timelines diverged, read with pg_waldump and summed up per
 * committed transaction (id, commit time, relations touched). pg_rewind throws that WAL away;
 * before it does, the agent writes this report (a JSON file beside the server log, a line in
 * its log, a summary in etcd), so no commit is lost without the operator knowing.
 * The parsers are pure (unit-tested); divergence_report() runs the programs. */
#ifndef PGVIGIL_DIVERGENCE_H
#define PGVIGIL_DIVERGENCE_H

#include "common/common.h"
#include "common/lsn.h"

#define DIV_REL_LEN 48      /* "1663/16384/16385" */
#define DIV_TXN_RELS 8

typedef struct DivTxn {
    uint32_t xid;
    char commit_time[40];   /* as pg_waldump prints it */
    Lsn commit_lsn;
    char rels[DIV_TXN_RELS][DIV_REL_LEN];
    int n_rels;             /* at most DIV_TXN_RELS listed */
} DivTxn;

typedef struct Divergence {
    bool diverged;          /* false: the rewind has nothing to throw away ("no rewind required") */
    int timeline;           /* the timeline the two servers shared last */
    Lsn fork_lsn;           /* where the source's timeline left it */
    Lsn first_lsn, last_lsn;/* the WAL records past the fork that this data directory has */
    int n_records;
    bool truncated;         /* pg_waldump's output was cut at its record limit */
    DivTxn *txns;           /* committed transactions past the fork, in commit order */
    int n_txns;
    int cap_txns;
    int n_aborted;
    char (*rels)[DIV_REL_LEN]; /* every relation those transactions touched */
    char (*rel_names)[128];    /* ... named on the source where it could ("public.orders"), else "" */
    int n_rels;
} Divergence;

void divergence_free(Divergence *d);

/* pg_rewind --dry-run's output: "servers diverged at WAL location 0/3000060 on timeline 1", or
 * "no rewind required". False when it says neither. */
bool divergence_parse_dry_run(const char *out, Divergence *d);
/* pg_waldump's records (from the fork on): fills first/last LSN, records, transactions; called
 * once per timeline, it adds to what earlier calls found. */
void divergence_parse_waldump(const char *out, Divergence *d);
/* The report as JSON (malloc'd). */
char *divergence_json(const Divergence *d, const char *member, const char *source);
/* One line for the log: "3 committed transactions (xids 741, 742, 745) on timeline 2 from 0/3000060
 * to 0/3001A28, relations public.t1, public.t2". */
void divergence_summary(const Divergence *d, char *buf, size_t sz);

#endif
