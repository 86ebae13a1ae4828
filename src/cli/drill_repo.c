/* `drill observe`'s look at the backup repository (see drill.h): could the standby site, or a
 * scratch restore, get every WAL segment from the newest backup on to what the primary writes? */
#include "common/common.h"
#include "backup/base_backup.h"
#include "backup/repo.h"
#include "backup/wal_chain.h"
#include "cli/drill.h"

bool drill_repo_wal(const Config *cfg, const char *primary_walfile, int max_behind, char *detail, size_t dsz)
{
    if (!cfg || !config_has_repository(&cfg->backup)) {
        str_fmt(detail, dsz, "not checked: no backup.repository in the file given with -c");
        return true;
    }
    Err err = {{0}};
    Repo *r = repo_open(&cfg->backup, &err);
    if (!r) {
        str_fmt(detail, dsz, "%s", err.msg);
        return false;
    }
    BackupInfo *b = NULL;
    int n = 0;
    WalChain ch;
    memset(&ch, 0, sizeof(ch));
    bool ok = false;
    if (!backup_list(r, &b, &n, &err) || !wal_chain_load(r, &ch, &err)) {
        str_fmt(detail, dsz, "%s", err.msg);
        goto out;
    }
    if (n == 0) {
        str_fmt(detail, dsz, "no complete backup in the repository");
        goto out;
    }
    const BackupInfo *newest = &b[n - 1];
    unsigned tli = (unsigned)newest->timeline;
    uint64_t start = newest->start_lsn / WAL_SEG_BYTES;
    char first[32];
    wal_seg_name(tli, start, first, sizeof(first));
    if (!wal_chain_has(&ch, tli, start)) {
        str_fmt(detail, dsz, "backup %s: its first WAL segment %s is not in the repository", newest->label, first);
        goto out;
    }
    unsigned end_tli;
    uint64_t end_seg;
    wal_chain_reach(&ch, tli, start, &end_tli, &end_seg);
    char last[32];
    wal_seg_name(end_tli, end_seg, last, sizeof(last));
    if (wal_chain_more_after(&ch, end_tli, end_seg)) {
        str_fmt(detail, dsz, "a gap in the WAL after %s (backup %s starts at %s): a restore stops there", last,
                newest->label, first);
        goto out;
    }
    WalSeg cur;
    if (!primary_walfile || !wal_seg_parse(primary_walfile, &cur)) {
        str_fmt(detail, dsz, "WAL contiguous from backup %s (%s) to %s; the primary's position is unknown",
                newest->label, first, last);
        goto out;
    }
    /* a newer timeline may have started in or right after the last stored segment: its history
     * file says so, and its own segments are not complete yet */
    bool tl_ok = cur.tli == end_tli;
    if (cur.tli > end_tli) {
        tl_ok = true;
        for (unsigned t = end_tli; t < cur.tli && tl_ok; t++) {
            uint64_t starts;
            tl_ok = wal_chain_next_timeline(&ch, t, &starts) && starts <= end_seg + 1;
        }
    }
    uint64_t behind = cur.segno > end_seg ? cur.segno - end_seg - 1 : 0;
    ok = tl_ok && end_seg + 1 + (uint64_t)max_behind >= cur.segno;
    if (!tl_ok)
        str_fmt(detail, dsz, "WAL contiguous from backup %s (%s) to %s, but the primary writes on timeline %u (%s) "
                "and the repository does not lead there", newest->label, first, last, cur.tli, primary_walfile);
    else
        str_fmt(detail, dsz, "WAL contiguous from backup %s (%s) to %s; the primary writes %s (%llu complete "
                "segment(s) not archived yet, at most %d)", newest->label, first, last, primary_walfile,
                (unsigned long long)behind, max_behind);
out:
    wal_chain_free(&ch);
    free(b);
    repo_free(r);
    return ok;
}
