/* Retention: which backups to keep, and the WAL they need. Backups go first (the manifest
 * before the files, so a half-removed backup is never listed), then the WAL older than every
 * kept backup's start. History files stay: they are small and tie the timelines together. */
#include "backup/expire.h"
#include "backup/base_backup.h"
#include "backup/wal_archive.h"

#include <time.h>

#define SEGS_PER_XLOGID 256ULL
#define SEG_SIZE (16ULL * 1024 * 1024)

/* "2026-12-05T02:03:00.123Z" -> epoch seconds (0 when malformed) */
static time_t iso_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return timegm(&tm);
}

static bool remove_prefix(Repo *r, const char *prefix, int *n, Err *err)
{
    RepoKeys k;
    if (!r->ops->list(r, prefix, &k, err))
        return false;
    bool ok = true;
    for (int i = 0; i < k.n && ok; i++)
        if ((ok = r->ops->remove(r, k.keys[i], err)))
            (*n)++;
    repo_keys_free(&k);
    return ok;
}

/* Files of backups that never got their manifest (the backup failed, or was killed): never
 * listed or restored, only taking room. The caller holds the cluster's backup lock, so none of
 * them is a backup still running (and a backup checks its files are all there before it writes
 * its manifest). */
static bool remove_leftovers(Repo *r, bool dry_run, FILE *out, ExpireReport *rep, Err *err)
{
    RepoKeys k;
    if (!r->ops->list(r, "backup", &k, err))
        return false;
    bool ok = true;
    char done[64] = "";
    for (int i = 0; i < k.n && ok; i++) {
        /* backup/<label>/... */
        if (strncmp(k.keys[i], "backup/", 7) != 0)
            continue;
        const char *label = k.keys[i] + 7, *slash = strchr(label, '/');
        if (!slash || (size_t)(slash - label) >= sizeof(done))
            continue;
        char lab[64];
        str_fmt(lab, sizeof(lab), "%.*s", (int)(slash - label), label);
        if (strcmp(lab, done) == 0)
            continue;
        str_copy(done, sizeof(done), lab);
        char *mkey = str_printf("backup/%s/manifest", lab);
        bool exists = true;
        ok = r->ops->exists(r, mkey, &exists, err);
        free(mkey);
        if (!ok || exists)
            continue;
        int files = 0;
        char *prefix = str_printf("backup/%s", lab);
        if (!dry_run)
            ok = remove_prefix(r, prefix, &files, err);
        free(prefix);
        fprintf(out, "%s the files of %s, a backup that never completed\n", dry_run ? "would remove" : "removed", lab);
        rep->leftovers++;
    }
    repo_keys_free(&k);
    return ok;
}

bool backup_expire(Repo *r, const ExpirePolicy *p, bool dry_run, FILE *out, ExpireReport *rep, Err *err)
{
    memset(rep, 0, sizeof(*rep));
    if (!remove_leftovers(r, dry_run, out, rep, err))
        return false;
    if (p->keep_full <= 0 && p->keep_days <= 0) {
        fprintf(out, "no retention set (backup.retention_full, backup.retention_days): nothing expires\n");
        return true;
    }
    BackupInfo *b = NULL;
    int n = 0;
    if (!backup_list(r, &b, &n, err))
        return false;
    if (n == 0) {
        free(b);
        fprintf(out, "no complete backup: nothing expires (WAL is kept until there is one)\n");
        return true;
    }
    bool *keep = xcalloc((size_t)n, sizeof(bool));
    /* the newest N full backups, and every backup after the oldest of them */
    if (p->keep_full > 0) {
        int fulls = 0, from = 0;
        for (int i = n - 1; i >= 0; i--)
            if (strcmp(b[i].type, "full") == 0 && ++fulls == p->keep_full) {
                from = i;
                break;
            }
        for (int i = from; i < n; i++)
            keep[i] = true;
    }
    /* the window: every backup that ended inside it, and the newest one before it, from which
     * the start of the window is reached */
    if (p->keep_days > 0) {
        time_t start = time(NULL) - (time_t)p->keep_days * 86400;
        bool before_kept = false;
        for (int i = n - 1; i >= 0; i--) {
            if (iso_time(b[i].stop_time) >= start) {
                keep[i] = true;
            } else if (!before_kept) {
                keep[i] = true;
                before_kept = true;
            }
        }
    }
    keep[n - 1] = true; /* never the newest */
    /* and whatever a kept backup builds on, down to its full backup */
    for (bool more = true; more;) {
        more = false;
        for (int i = 0; i < n; i++) {
            if (!keep[i] || !b[i].reference[0])
                continue;
            for (int k = 0; k < n; k++)
                if (!keep[k] && strcmp(b[k].label, b[i].reference) == 0) {
                    keep[k] = true;
                    more = true;
                }
        }
    }
    uint64_t oldest_start = UINT64_MAX;
    for (int i = 0; i < n; i++)
        if (keep[i] && b[i].start_lsn / SEG_SIZE < oldest_start)
            oldest_start = b[i].start_lsn / SEG_SIZE;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        if (keep[i])
            continue;
        fprintf(out, "%s backup %s (ended %s)\n", dry_run ? "would expire" : "expired", b[i].label, b[i].stop_time);
        rep->backups++;
        if (dry_run)
            continue;
        char *mkey = str_printf("backup/%s/manifest", b[i].label);
        ok = r->ops->remove(r, mkey, err);
        free(mkey);
        char *prefix = str_printf("backup/%s", b[i].label);
        int files = 0;
        ok = ok && remove_prefix(r, prefix, &files, err);
        free(prefix);
    }
    /* WAL older than every kept backup's start, and the summaries of those segments */
    static const char *const prefixes[] = {"wal", "walsum"};
    for (size_t pi = 0; pi < ARRAY_LEN(prefixes) && ok; pi++) {
        RepoKeys k;
        if (!(ok = r->ops->list(r, prefixes[pi], &k, err)))
            break;
        for (int i = 0; i < k.n && ok; i++) {
            const char *slash = strrchr(k.keys[i], '/');
            const char *name = slash ? slash + 1 : k.keys[i];
            WalFileKind kind = wal_file_kind(name);
            unsigned tli, hi, lo;
            if (kind == WALFILE_HISTORY || kind == WALFILE_NONE || sscanf(name, "%8X%8X%8X", &tli, &hi, &lo) != 3)
                continue;
            uint64_t segno = (uint64_t)hi * SEGS_PER_XLOGID + lo;
            if (segno >= oldest_start)
                continue;
            if (pi == 0)
                rep->wal_files++;
            if (!dry_run)
                ok = r->ops->remove(r, k.keys[i], err);
        }
        repo_keys_free(&k);
    }
    if (ok)
        fprintf(out, "%s %d backup(s) and %d WAL file(s) older than the oldest kept backup; kept %d backup(s)\n",
                dry_run ? "would expire" : "expired", rep->backups, rep->wal_files, n - rep->backups);
    free(keep);
    free(b);
    return ok;
}
