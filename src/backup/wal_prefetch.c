/* WAL prefetching for restore_command (see wal_prefetch.h). */
#include "backup/wal_prefetch.h"

#include "backup/wal_archive.h"
#include "backup/wal_chain.h"
#include "common/fileutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

char *wal_prefetch_spool(const char *dest)
{
    const char *slash = strrchr(dest, '/');
    if (!slash)
        return str_dup(WAL_PREFETCH_DIR);
    return str_printf("%.*s/%s", (int)(slash - dest), dest, WAL_PREFETCH_DIR);
}

bool wal_prefetch_take(const char *spool, const char *name, const char *dest)
{
    if (wal_file_kind(name) != WALFILE_SEGMENT)
        return false;
    char *path = str_printf("%s/%s", spool, name);
    bool ok = rename(path, dest) == 0;
    free(path);
    return ok;
}

bool wal_next_segment(const char *name, char *out, size_t sz)
{
    WalSeg s;
    if (wal_file_kind(name) != WALFILE_SEGMENT || !wal_seg_parse(name, &s))
        return false;
    wal_seg_name(s.tli, s.segno + 1, out, sz);
    return true;
}

/* Spool entries named before name (consumed, or of an older timeline), and temporary files left
 * by a prefetcher that died, go. */
static void prune(const char *spool, const char *name)
{
    DIR *d = opendir(spool);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        bool tmp = strstr(e->d_name, ".tmp") != NULL;
        if (e->d_name[0] == '.' || (!tmp && strcmp(e->d_name, name) >= 0))
            continue;
        char *p = str_printf("%s/%s", spool, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

void wal_prefetch_run(Repo *r, const char *spool, const char *name, int count)
{
    if (count <= 0 || wal_file_kind(name) != WALFILE_SEGMENT)
        return;
    if (mkdir(spool, 0700) != 0 && errno != EEXIST)
        return;
    char *lock = str_printf("%s/.lock", spool);
    int fd = open(lock, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    free(lock);
    if (fd < 0)
        return;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd); /* another prefetcher fills this spool */
        return;
    }
    prune(spool, name);
    char cur[32];
    str_copy(cur, sizeof(cur), name);
    for (int i = 0; i < count; i++) {
        char next[32];
        if (!wal_next_segment(cur, next, sizeof(next)))
            break;
        str_copy(cur, sizeof(cur), next);
        char *path = str_printf("%s/%s", spool, next);
        struct stat st;
        bool have = stat(path, &st) == 0;
        bool missing = false, damaged = false;
        Err err = {{0}};
        /* wal_fetch writes a temporary file beside path and renames it: whole or absent */
        bool ok = have || wal_fetch(r, next, path, &missing, &damaged, &err);
        free(path);
        if (!ok)
            break; /* the end of the archive, or a problem the request itself will report */
    }
    close(fd);
}

void wal_prefetch_clear(const char *spool)
{
    Err err;
    dir_remove_all(spool, &err);
}
