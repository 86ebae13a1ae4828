/* Choosing the backup a new replica restores (see restore_pick.h). */
#include "backup/restore_pick.h"

#include <ctype.h>

int timeline_history_parse(const char *text, TimelineFork *out, int max)
{
    int n = 0;
    const char *line = text;
    while (line && *line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *p = line;
        while (p < line + len && isspace((unsigned char)*p))
            p++;
        if (p < line + len && *p != '#') {
            char buf[128];
            size_t k = (size_t)(line + len - p) < sizeof(buf) ? (size_t)(line + len - p) : sizeof(buf) - 1;
            memcpy(buf, p, k);
            buf[k] = '\0';
            unsigned tli = 0;
            char pos[64];
            Lsn end = 0;
            if (n >= max || sscanf(buf, "%u %63s", &tli, pos) != 2 || tli == 0 || tli > INT32_MAX ||
                !lsn_parse(pos, &end))
                return -1;
            out[n].tli = (int)tli;
            out[n].end = end;
            n++;
        }
        line = eol ? eol + 1 : NULL;
    }
    return n;
}

/* Can recovery from a backup of timeline t that stopped at stop follow the history to tli? */
static bool on_history(int t, Lsn stop, int tli, const TimelineFork *hist, int n_hist)
{
    if (t == tli)
        return true;
    for (int i = 0; i < n_hist; i++)
        if (hist[i].tli == t)
            return stop <= hist[i].end;
    return false;
}

int backup_pick_for_timeline(const BackupInfo *b, int n, const char *sysid, int tli, const TimelineFork *hist,
                             int n_hist, char *why, size_t why_sz)
{
    int ours = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (strcmp(b[i].sysid, sysid) != 0)
            continue;
        ours++;
        if (on_history(b[i].timeline, b[i].stop_lsn, tli, hist, n_hist))
            return i;
    }
    if (n == 0)
        str_fmt(why, why_sz, "no complete backup");
    else if (ours == 0)
        str_fmt(why, why_sz, "no backup of system identifier %s (%d of other clusters)", sysid, n);
    else
        str_fmt(why, why_sz, "none of the %d backup(s) of system identifier %s lies on the history of timeline %d",
                ours, sysid, tli);
    return -1;
}
