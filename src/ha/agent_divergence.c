/* Before a data directory is rewound from a standby cluster's source (the old primary site
 * rejoining after a site failover), the agent keeps what the rewind throws away: the WAL
 * segments past the fork are copied beside the server log, and a report lists the committed
 * transactions in them (worker thread; see divergence.h). */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "ha/agent.h"
#include "ha/divergence.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#define WALDUMP_RECORD_LIMIT 200000

static bool copy_file(const char *from, const char *to, Err *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        err_set(err, "%s: %s", from, strerror(errno));
        return false;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        err_set(err, "%s: %s", to, strerror(errno));
        close(in);
        return false;
    }
    bool ok = true;
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0 || write(out, buf, (size_t)n) != n) {
            err_set(err, "copying %s: %s", from, strerror(errno));
            ok = false;
            break;
        }
    }
    if (ok && fsync(out) != 0) {
        err_set(err, "%s: %s", to, strerror(errno));
        ok = false;
    }
    close(out);
    close(in);
    return ok;
}

/* Copy pg_wal's segments of `timeline` from the one holding `from` on into dir. */
static int keep_segments(const char *data_dir, int timeline, Lsn from, int64_t seg_size, const char *dir, Err *err)
{
    char wal[4200], first[32];
    str_fmt(wal, sizeof(wal), "%s/pg_wal", data_dir);
    /* the name of the segment holding `from` */
    uint64_t segno = from / (uint64_t)seg_size, per_id = 0x100000000ull / (uint64_t)seg_size;
    str_fmt(first, sizeof(first), "%08X%08X%08X", (unsigned)timeline, (unsigned)(segno / per_id),
            (unsigned)(segno % per_id));
    DIR *d = opendir(wal);
    if (!d) {
        err_set(err, "%s: %s", wal, strerror(errno));
        return -1;
    }
    char prefix[9];
    str_fmt(prefix, sizeof(prefix), "%08X", (unsigned)timeline);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        /* a timeline's last segment is renamed *.partial at a promotion: kept too */
        size_t len = strlen(name);
        if (!(len == 24 || (len == 32 && strcmp(name + 24, ".partial") == 0)) || strncmp(name, prefix, 8) != 0 ||
            strncmp(name, first, 24) < 0)
            continue;
        char src[4300], dst[4300];
        str_fmt(src, sizeof(src), "%s/%s", wal, name);
        str_fmt(dst, sizeof(dst), "%s/%s", dir, name);
        if (!copy_file(src, dst, err)) {
            closedir(d);
            return -1;
        }
        n++;
    }
    closedir(d);
    return n;
}

/* Name the relations on the source: "1663/16384/16390" -> "public.orders" (best effort: a
 * relation rewritten or dropped since the fork keeps its number). */
static void name_relations(const Job *j, const Config *cfg, Divergence *d)
{
    for (int i = 0; i < d->n_rels; i++) {
        unsigned spc = 0, db = 0, node = 0;
        if (sscanf(d->rels[i], "%u/%u/%u", &spc, &db, &node) != 3)
            continue;
        char sql[256], datname[128] = "", name[128] = "";
        Err err = {{0}};
        str_fmt(sql, sizeof(sql), "SELECT datname FROM pg_database WHERE oid = %u", db);
        if (!pg_remote_value(j->host, j->port, NULL, &cfg->pg_rewind, sql, datname, sizeof(datname), &err) ||
            !datname[0])
            continue;
        str_fmt(sql, sizeof(sql),
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE pg_relation_filenode(c.oid) = %u",
                node);
        if (pg_remote_value(j->host, j->port, datname, &cfg->pg_rewind, sql, name, sizeof(name), &err) && name[0])
            str_fmt(d->rel_names[i], sizeof(d->rel_names[i]), "%s: %s", datname, name);
    }
}

/* Where timeline t began: the switch point in the last line of its history file ("parent <tab>
 * LSN <tab> reason"); 0 when the file is missing or malformed. */
static Lsn timeline_start(const char *data_dir, int t)
{
    char path[4200];
    str_fmt(path, sizeof(path), "%s/pg_wal/%08X.history", data_dir, (unsigned)t);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    Lsn last = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned parent;
        char lsn[64];
        Lsn l;
        if (line[0] != '#' && sscanf(line, "%u %63s", &parent, lsn) == 2 && lsn_parse(lsn, &l))
            last = l;
    }
    fclose(f);
    return last;
}

bool agent_divergence_report(Agent *a, PgNode *pg, Job *j, Err *err)
{
    const Config *cfg = a->cfg;
    char *out = NULL;
    Divergence d;
    memset(&d, 0, sizeof(d));
    bool ok = pg_finish_crash_recovery(pg, err) && pg_rewind_dry_run(pg, j->host, j->port, &out, err);
    if (ok && !divergence_parse_dry_run(out, &d)) {
        err_set(err, "pg_rewind --dry-run did not say where the servers diverged");
        ok = false;
    }
    free(out);
    if (!ok)
        return false;
    if (!d.diverged) {
        str_copy(j->divergence, sizeof(j->divergence), "no divergence: nothing to throw away");
        divergence_free(&d);
        return true;
    }
    /* keep the WAL itself first: whatever the report misses can still be read from it */
    char logdir[4096], dir[4300];
    str_copy(logdir, sizeof(logdir), pg->log_path);
    str_fmt(dir, sizeof(dir), "%s/pgvigil-divergence-%lld", dirname(logdir), (long long)wall_now());
    if (!dir_make_all(dir, 0700, err)) {
        divergence_free(&d);
        return false;
    }
    /* every timeline from the shared one to this directory's own (an internal failover after
     * the fork moved its writes to a newer one) */
    ControlInfo ci;
    if (!pg_controldata_info(pg, &ci, err)) {
        divergence_free(&d);
        return false;
    }
    int64_t seg = ci.wal_segment_size > 0 ? ci.wal_segment_size : 16 * 1024 * 1024;
    int kept = 0;
    for (int t = d.timeline; t <= ci.timeline && t < d.timeline + 64; t++) {
        Lsn from = t == d.timeline ? d.fork_lsn : timeline_start(cfg->pg_data_dir, t);
        if (!from)
            continue;
        int k = keep_segments(cfg->pg_data_dir, t, from, seg, dir, err);
        if (k < 0) {
            divergence_free(&d);
            return false;
        }
        kept += k;
        char *dump = NULL;
        Err we = {{0}};
        if (pg_waldump(pg, t, from, WALDUMP_RECORD_LIMIT, &dump, &we))
            divergence_parse_waldump(dump, &d);
        else
            log_warn("divergence report: %s (the WAL itself is kept in %s)", we.msg, dir);
        free(dump);
    }
    d.truncated = d.n_records >= WALDUMP_RECORD_LIMIT;
    name_relations(j, cfg, &d);
    char *json = divergence_json(&d, cfg->name, j->host);
    char path[4400];
    str_fmt(path, sizeof(path), "%s/report.json", dir);
    ok = file_write_atomic(path, json, strlen(json), 0600, err);
    free(json);
    char summary[900];
    divergence_summary(&d, summary, sizeof(summary));
    str_fmt(j->divergence, sizeof(j->divergence), "%s; %d WAL segment(s) and the report kept in %s", summary, kept, dir);
    log_warn("before pg_rewind: this data directory has what %s never had: %s", j->host, j->divergence);
    divergence_free(&d);
    return ok;
}
