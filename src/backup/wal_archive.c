/* Archive push and fetch of single WAL files. */
#include "backup/wal_archive.h"
#include "backup/obj.h"
#include "backup/wal_summary_store.h"
#include "common/fileutil.h"
#include "common/log.h"

#include "common/proc.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || islower((unsigned char)s[i]))
            return false;
    return true;
}

WalFileKind wal_file_kind(const char *name)
{
    if (!name)
        return WALFILE_NONE;
    size_t n = strlen(name);
    if (n == 24 && all_hex(name, 24))
        return WALFILE_SEGMENT;
    if (n == 24 + 8 && all_hex(name, 24) && strcmp(name + 24, ".partial") == 0)
        return WALFILE_PARTIAL;
    if (n == 8 + 8 && all_hex(name, 8) && strcmp(name + 8, ".history") == 0)
        return WALFILE_HISTORY;
    if (n == 24 + 1 + 8 + 7 && all_hex(name, 24) && name[24] == '.' && all_hex(name + 25, 8) &&
        strcmp(name + 33, ".backup") == 0)
        return WALFILE_BACKUP;
    return WALFILE_NONE;
}

bool wal_file_key(const char *name, char *key, size_t sz)
{
    if (wal_file_kind(name) == WALFILE_NONE)
        return false;
    return str_fmt(key, sz, "wal/%.8s/%s", name, name);
}

struct WalPushBuffers {
    char *buf;
    size_t cap;
    ObjEncoder *enc;
};

WalPushBuffers *wal_push_buffers_new(void)
{
    WalPushBuffers *b = xcalloc(1, sizeof(*b));
    b->enc = obj_encoder_new();
    return b;
}

void wal_push_buffers_free(WalPushBuffers *b)
{
    if (!b)
        return;
    free(b->buf);
    obj_encoder_free(b->enc);
    free(b);
}

/* wal_file_read into b's buffer (grown as needed, kept) */
static char *read_into(const char *path, WalPushBuffers *b, size_t *n, Err *err);

char *wal_file_read(const char *path, size_t *n, Err *err)
{
    return read_into(path, NULL, n, err);
}

static char *read_into(const char *path, WalPushBuffers *b, size_t *n, Err *err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, "archive: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uid_t uid;
    bool owner_ok = !proc_run_as(&uid, NULL) || (fstat(fd, &st) == 0 && st.st_uid == uid);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)1 << 30 || !owner_ok) {
        err_set(err, "archive: %s is not a WAL file of the server (a regular file of its user, at most 1 GB)", path);
        close(fd);
        return NULL;
    }
    char *buf;
    if (b) {
        if (b->cap < (size_t)st.st_size + 1) {
            free(b->buf);
            b->cap = (size_t)st.st_size + 1;
            b->buf = xmalloc(b->cap);
        }
        buf = b->buf;
    } else {
        buf = xmalloc((size_t)st.st_size + 1);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            err_set(err, "archive: reading %s: %s", path, k < 0 ? strerror(errno) : "it shrank while read");
            close(fd);
            if (!b)
                free(buf);
            return NULL;
        }
        got += (size_t)k;
    }
    close(fd);
    buf[got] = '\0';
    *n = got;
    return buf;
}

bool wal_push(Repo *r, CompressKind k, int level, const char *path, const char *name, bool standby, WalPushResult *res,
              Err *err)
{
    WalPushBuffers *b = wal_push_buffers_new();
    bool ok = wal_push_with(r, k, level, path, name, standby, b, res, err);
    wal_push_buffers_free(b);
    return ok;
}

bool wal_push_with(Repo *r, CompressKind k, int level, const char *path, const char *name, bool standby,
                   WalPushBuffers *b, WalPushResult *res, Err *err)
{
    if (!b)
        return wal_push(r, k, level, path, name, standby, res, err);
    memset(res, 0, sizeof(*res));
    char key[128];
    if (!wal_file_key(name, key, sizeof(key))) {
        err_set(err, "archive: \"%s\" is not a WAL file name", name ? name : "");
        return false;
    }
    Err e = {{0}};
    size_t n = 0;
    char *raw = read_into(path, b, &n, err);
    if (!raw)
        return false;
    res->raw_size = n;

    /* stored before? Same content: done (PostgreSQL retries after a crash); other content: a
     * second timeline or a second cluster writing here, never overwrite */
    bool exists = false;
    if (!r->ops->exists(r, key, &exists, err)) {
        return false;
    }
    if (exists) {
        void *old = NULL;
        size_t old_n = 0;
        bool missing = false;
        ObjInfo info;
        bool same = false;
        if (r->ops->read_all(r, key, &old, &old_n, &missing, &e)) {
            same = obj_read_header(r->cipher, old, old_n, &info, &e) && info.raw_size == n;
            if (same) {
                unsigned char sum[CHECKSUM_MAX_LEN];
                checksum_buf(info.sum_kind, raw, n, sum);
                same = memcmp(info.sum, sum, sizeof(sum)) == 0;
            }
            res->stored_size = old_n;
            free(old);
        } else if (missing) {
            exists = false; /* removed meanwhile: store it */
        }
        if (exists) {
            if (same) {
                /* a push that stopped between the summary and the segment left no summary */
                bool have = false;
                bool ok = wal_summary_stored(r, name, &have, err) &&
                          (have || wal_summary_store(r, name, (unsigned char *)raw, n, err));
                res->already = ok;
                return ok;
            }
            if (standby) {
                /* a standby's copy backs the primary's up; the first stored stays. A standby that
                 * followed a failover closes the old timeline's last segment early (its tail is
                 * not the old primary's): retrying for ever would only fill its pg_wal */
                log_warn("archive: %s is already in the %s with other content (%s); this standby's copy is not "
                         "stored, the one there stays",
                         name, r->desc, e.msg[0] ? e.msg : "another hash");
                res->already = true;
                return true;
            }
            err_set(err, "archive: %s is already in the %s with other content (%s); not replaced", name, r->desc,
                    e.msg[0] ? e.msg : "another hash");
            return false;
        }
    }
    /* the summary first: a stored segment always has one, unless it could not be read */
    if (!wal_summary_store(r, name, (unsigned char *)raw, n, err))
        return false;
    const void *stored = NULL;
    size_t stored_n = 0;
    ChecksumKind kind;
    unsigned char sum[CHECKSUM_MAX_LEN];
    if (!obj_encoder_begin(b->enc, r->cipher, k, level, err) || !obj_encoder_feed(b->enc, raw, n, err) ||
        !obj_encoder_finish(b->enc, &stored, &stored_n, &kind, sum, err)) {
        err_prefix(err, "archive: %s", name);
        return false;
    }
    bool ok = repo_put(r, key, stored, stored_n, err);
    if (ok)
        res->stored_size = stored_n;
    return ok;
}

bool wal_fetch(Repo *r, const char *name, const char *dest, bool *missing, bool *damaged, Err *err)
{
    *missing = false;
    *damaged = false;
    char key[128];
    if (!wal_file_key(name, key, sizeof(key))) {
        err_set(err, "restore: \"%s\" is not a WAL file name", name ? name : "");
        return false;
    }
    void *stored = NULL;
    size_t stored_n = 0;
    if (!r->ops->read_all(r, key, &stored, &stored_n, missing, err))
        return false;
    void *raw = NULL;
    size_t raw_n = 0;
    bool ok = obj_decode(r->cipher, stored, stored_n, &raw, &raw_n, err);
    free(stored);
    if (!ok) {
        err_prefix(err, "%s: %s", r->desc, key);
        *damaged = true;
        return false;
    }
    ok = file_write_atomic(dest, raw, raw_n, 0600, err);
    free(raw);
    return ok;
}

bool wal_history_read(Repo *r, int tli, char **text, bool *missing, Err *err)
{
    *text = NULL;
    *missing = false;
    char name[32], key[128];
    str_fmt(name, sizeof(name), "%08X.history", (unsigned)tli);
    if (!wal_file_key(name, key, sizeof(key))) {
        err_set(err, "timeline %d: no history file name", tli);
        return false;
    }
    void *stored = NULL, *raw = NULL;
    size_t stored_n = 0, raw_n = 0;
    if (!r->ops->read_all(r, key, &stored, &stored_n, missing, err))
        return false;
    bool ok = obj_decode(r->cipher, stored, stored_n, &raw, &raw_n, err);
    free(stored);
    if (!ok) {
        err_prefix(err, "%s: %s", r->desc, key);
        return false;
    }
    char *t = xmalloc(raw_n + 1);
    memcpy(t, raw, raw_n);
    t[raw_n] = '\0';
    free(raw);
    *text = t;
    return true;
}
