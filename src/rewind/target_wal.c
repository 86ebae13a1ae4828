/* The target's WAL for a rewind (see target_wal.h). */
#include "rewind/target_wal.h"
#include "common/fileutil.h"
#include "common/proc.h"
#include "common/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void wal_segment_name(uint32_t tli, Lsn seg_start, uint32_t seg_size, char out[25])
{
    uint64_t segno = seg_start / seg_size, per_id = 0x100000000ULL / seg_size;
    snprintf(out, 25, "%08X%08X%08X", tli, (unsigned)(segno / per_id), (unsigned)(segno % per_id));
}

#define CHECKPOINT_SEARCH_SEGMENTS 256

/* Make sure pg_wal has the segment name, through the restore_command when it does not. */
static bool have_segment(TargetWal *w, const char *name, Err *err)
{
    char path[4200], tmp[4300];
    str_fmt(path, sizeof(path), "%s/%s", w->dir, name);
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size == (off_t)w->seg_size)
        return true;
    if (!w->restore_command || !w->restore_command[0]) {
        err_set(err, "%s is missing and there is no restore_command", path);
        return false;
    }
    /* %f the file name, %p where to put it, %r the oldest file to keep (this one), %% a % */
    str_fmt(tmp, sizeof(tmp), "%s.pgvigil-restore", path);
    StrBuf cmd = {0};
    for (const char *c = w->restore_command; *c; c++) {
        if (c[0] == '%' && c[1] == 'f') {
            strbuf_adds(&cmd, name);
            c++;
        } else if (c[0] == '%' && c[1] == 'p') {
            strbuf_adds(&cmd, tmp);
            c++;
        } else if (c[0] == '%' && c[1] == 'r') {
            strbuf_adds(&cmd, name);
            c++;
        } else if (c[0] == '%' && c[1] == '%') {
            strbuf_addc(&cmd, '%');
            c++;
        } else {
            strbuf_addc(&cmd, *c);
        }
    }
    const char *argv[] = {"/bin/sh", "-c", cmd.s, NULL};
    ProcOpts o = {.timeout_ms = 600 * 1000};
    char *out = NULL;
    int rc = proc_run(argv, &o, &out, err);
    free(out);
    strbuf_free(&cmd);
    if (rc != 0 || stat(tmp, &sb) != 0 || sb.st_size != (off_t)w->seg_size || rename(tmp, path) != 0) {
        unlink(tmp);
        err_set(err, "restore_command could not fetch %s (exit %d)", name, rc);
        return false;
    }
    /* it is in the archive: marked archived, as recovery marks what it restores, so that a
     * server started on this directory does not try to archive it again */
    char done[4300];
    str_fmt(done, sizeof(done), "%s/archive_status/%s.done", w->dir, name);
    if (!file_write_atomic(done, "", 0, 0600, err))
        return false;
    w->restored++;
    return true;
}

bool target_last_checkpoint(TargetWal *w, const char *waldump, uint32_t tli, Lsn tli_begin, Lsn fork, Lsn *checkpoint,
                            Lsn *redo, Err *err)
{
    *checkpoint = *redo = LSN_INVALID;
    Lsn first = fork - fork % w->seg_size, lowest = tli_begin - tli_begin % w->seg_size;
    for (int tries = 0; tries < CHECKPOINT_SEARCH_SEGMENTS; tries++) {
        char name[25];
        wal_segment_name(tli, first, w->seg_size, name);
        if (!have_segment(w, name, err))
            return false;
        char s[LSN_BUFSZ], e[LSN_BUFSZ], t[16];
        lsn_format(first, s);
        lsn_format(fork, e);
        str_fmt(t, sizeof(t), "%u", tli);
        const char *argv[] = {waldump, "-p", w->dir, "-t", t, "-s", s, "-e", e, "-r", "XLOG", NULL};
        ProcOpts o = {.timeout_ms = 600 * 1000, .env = (const char *const[]){"LC_ALL=C", NULL}};
        char *out = NULL;
        /* pg_waldump may end with an error where the WAL ends; what it printed counts */
        if (proc_run(argv, &o, &out, err) < 0 || !out) {
            free(out);
            err_prefix(err, "pg_waldump");
            return false;
        }
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const char *l = strstr(line, "lsn: "), *c = strstr(line, "desc: CHECKPOINT_");
            if (!l || !c)
                continue;
            const char *r = strstr(c, " redo "), *tl = strstr(c, "; tli ");
            char lbuf[LSN_BUFSZ], rbuf[LSN_BUFSZ];
            unsigned ctli;
            Lsn lsn, rlsn;
            if (!r || !tl || sscanf(l + 5, "%23[0-9A-Fa-f/]", lbuf) != 1 ||
                sscanf(r + 6, "%23[0-9A-Fa-f/]", rbuf) != 1 || sscanf(tl + 6, "%u", &ctli) != 1 ||
                !lsn_parse(lbuf, &lsn) || !lsn_parse(rbuf, &rlsn))
                continue;
            if (lsn < fork && ctli == tli && rlsn <= lsn) {
                *checkpoint = lsn;
                *redo = rlsn;
            }
        }
        free(out);
        if (*checkpoint != LSN_INVALID)
            return true;
        if (first <= lowest)
            break;
        first -= w->seg_size;
    }
    char f[LSN_BUFSZ];
    err_set(err, "no checkpoint of timeline %u before the fork at %s in %s", tli, lsn_format(fork, f), w->dir);
    return false;
}

bool target_changed_blocks(TargetWal *w, const TimelineHistory *h, Lsn from, Lsn need_end, WalSummary *out,
                           Err *err)
{
    const char *pg_wal_dir = w->dir;
    uint32_t seg_size = w->seg_size;
    memset(out, 0, sizeof(*out));
    bool have = false;
    for (Lsn seg = from - from % seg_size;; seg += seg_size) {
        uint32_t tli = timeline_of_segment(h, seg, seg_size);
        char name[25], path[4200];
        wal_segment_name(tli, seg, seg_size, name);
        str_fmt(path, sizeof(path), "%s/%s", pg_wal_dir, name);
        bool needed = seg < need_end;
        size_t n = 0;
        Err e = {{0}};
        if (needed && !have_segment(w, name, err)) {
            wal_summary_free(out);
            return false;
        }
        unsigned char *buf = file_exists(path) ? (unsigned char *)file_read_all(path, &n, &e) : NULL;
        WalSummary one;
        if (!buf || n != seg_size || !wal_summary_parse(buf, n, seg, 0, &one, &e)) {
            free(buf);
            if (!needed)
                break;   /* the WAL ended before this segment (or it is a recycled one) */
            wal_summary_free(out);
            err_set(err, "%s: %s", path, e.msg[0] ? e.msg : "missing or not a whole segment");
            return false;
        }
        free(buf);
        bool complete = one.complete;
        if (!have) {
            *out = one;
            have = true;
        } else {
            bool ok = wal_summary_merge(out, &one, &e);
            wal_summary_free(&one);
            if (!ok) {
                wal_summary_free(out);
                err_set(err, "%s: %s", path, e.msg);
                return false;
            }
        }
        if (!complete && seg + seg_size < need_end) {
            wal_summary_free(out);
            char u[LSN_BUFSZ];
            err_set(err, "%s: the records end before %s", path, lsn_format(need_end, u));
            return false;
        }
        if (!complete)
            break;   /* the records end in this segment */
    }
    /* every record up to the last one needed was read whole */
    if (!have || out->end < need_end) {
        char u[LSN_BUFSZ];
        wal_summary_free(out);
        err_set(err, "%s: the target's WAL could not be read up to %s", pg_wal_dir, lsn_format(need_end, u));
        return false;
    }
    return true;
}
