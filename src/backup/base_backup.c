/* Full base backups and restores (see base_backup.h). */
#include "backup/base_backup.h"
#include "backup/obj.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "pg/pg.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_FORMAT 1

/* ---- what a backup copies -------------------------------------------------------------------- */

/* Directories whose contents are not copied (PostgreSQL rebuilds or does not need them), and
 * files never copied: as pg_basebackup does. */
static const char *const skip_contents[] = {"pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial",
                                            "pg_snapshots", "pg_stat_tmp", "pg_subtrans"};
static const char *const skip_files[] = {"postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
                                         "standby.signal", "recovery.signal", "postgresql.auto.conf.tmp",
                                         "current_logfiles", "current_logfiles.tmp", PG_REWIND_FAILED_FILE};

typedef struct FileEntry {
    char *path;              /* relative to the data directory */
    int64_t size, stored;
    char sha256[65];
    bool gone;               /* vanished during the copy (a dropped relation): not in the backup */
    char err[256];
} FileEntry;

typedef struct FileList {
    char **dirs;
    int n_dirs, cap_dirs;
    FileEntry *files;
    int n_files, cap_files;
} FileList;

static void list_free(FileList *l)
{
    for (int i = 0; i < l->n_dirs; i++)
        free(l->dirs[i]);
    for (int i = 0; i < l->n_files; i++)
        free(l->files[i].path);
    free(l->dirs);
    free(l->files);
    memset(l, 0, sizeof(*l));
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool walk(const char *root, const char *rel, FileList *l, Err *err)
{
    char *dir = rel[0] ? str_printf("%s/%s", root, rel) : str_dup(root);
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, "cannot read %s: %s", dir, strerror(errno));
        free(dir);
        return false;
    }
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strncmp(name, "pgsql_tmp", 9) == 0 ||
            strcmp(name, "pg_internal.init") == 0 || (!rel[0] && in_list(name, skip_files, ARRAY_LEN(skip_files))))
            continue;
        char *child = rel[0] ? str_printf("%s/%s", rel, name) : str_dup(name);
        char *full = str_printf("%s/%s", root, child);
        struct stat st;
        if (lstat(full, &st) != 0) {
            free(full);
            free(child);
            continue; /* removed meanwhile */
        }
        free(full);
        if (S_ISLNK(st.st_mode) && strncmp(child, "pg_tblspc/", 10) == 0) {
            err_set(err, "tablespaces are not supported by pgvigil backups yet (%s)", child);
            free(child);
            ok = false;
        } else if (S_ISDIR(st.st_mode)) {
            if (l->n_dirs == l->cap_dirs) {
                l->cap_dirs = l->cap_dirs ? l->cap_dirs * 2 : 64;
                l->dirs = xrealloc(l->dirs, (size_t)l->cap_dirs * sizeof(char *));
            }
            l->dirs[l->n_dirs++] = str_dup(child);
            if (!(!rel[0] && in_list(name, skip_contents, ARRAY_LEN(skip_contents))))
                ok = walk(root, child, l, err);
            free(child);
        } else if (S_ISREG(st.st_mode)) {
            if (l->n_files == l->cap_files) {
                l->cap_files = l->cap_files ? l->cap_files * 2 : 256;
                l->files = xrealloc(l->files, (size_t)l->cap_files * sizeof(FileEntry));
            }
            FileEntry *f = &l->files[l->n_files++];
            memset(f, 0, sizeof(*f));
            f->path = child;
        } else {
            free(child);
        }
    }
    closedir(d);
    free(dir);
    return ok;
}

/* ---- parallel copy --------------------------------------------------------------------------- */

typedef struct CopyJob {
    pthread_mutex_t mu;
    int next;
    bool failed;
    char err[512];
    /* backup */
    const char *data_dir;
    Repo *repo;
    const char *prefix;      /* "backup/<label>/data/" */
    CompressKind compress;
    int level;
    FileList *list;
    /* restore */
    const char *target_dir;
} CopyJob;

static int take_next(CopyJob *j)
{
    pthread_mutex_lock(&j->mu);
    int i = j->failed || j->next >= j->list->n_files ? -1 : j->next++;
    pthread_mutex_unlock(&j->mu);
    return i;
}

static void set_failed(CopyJob *j, const char *msg)
{
    pthread_mutex_lock(&j->mu);
    if (!j->failed)
        str_copy(j->err, sizeof(j->err), msg);
    j->failed = true;
    pthread_mutex_unlock(&j->mu);
}

static void *backup_worker(void *arg)
{
    CopyJob *j = arg;
    int i;
    while ((i = take_next(j)) >= 0) {
        FileEntry *f = &j->list->files[i];
        char *path = str_printf("%s/%s", j->data_dir, f->path);
        size_t n = 0;
        Err err = {{0}};
        char *raw = file_read_all(path, &n, &err);
        struct stat st;
        bool gone = !raw && stat(path, &st) != 0 && errno == ENOENT;
        free(path);
        if (gone) {
            f->gone = true; /* dropped meanwhile: WAL replay removes it anyway */
            continue;
        }
        if (!raw) {
            set_failed(j, err.msg);
            break;
        }
        unsigned char sum[32];
        sha256_buf(raw, n, sum);
        hex_encode(sum, 32, f->sha256);
        f->size = (int64_t)n;
        void *obj = NULL;
        size_t on = 0;
        bool ok = obj_encode(j->compress, j->level, raw, n, &obj, &on, &err);
        free(raw);
        char *key = str_printf("%s%s", j->prefix, f->path);
        ok = ok && repo_put(j->repo, key, obj, on, &err);
        free(key);
        free(obj);
        if (!ok) {
            set_failed(j, err.msg);
            break;
        }
        f->stored = (int64_t)on;
    }
    return NULL;
}

static bool run_workers(CopyJob *j, int workers, void *(*fn)(void *), Err *err)
{
    pthread_mutex_init(&j->mu, NULL);
    if (workers < 1)
        workers = 1;
    pthread_t *t = xcalloc((size_t)workers, sizeof(pthread_t));
    int started = 0;
    for (int i = 0; i < workers; i++)
        if (pthread_create(&t[i], NULL, fn, j) == 0)
            started++;
    if (started == 0)
        fn(j);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    pthread_mutex_destroy(&j->mu);
    if (j->failed) {
        err_set(err, "%s", j->err);
        return false;
    }
    return true;
}

/* ---- manifest -------------------------------------------------------------------------------- */

/* now, UTC, to the millisecond: "2026-12-05T02:03:00.123Z" */
static void iso_now(char *buf, size_t sz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[24];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    str_fmt(buf, sz, "%s.%03ldZ", s, ts.tv_nsec / 1000000L);
}

static char *manifest_json(const BackupInfo *b, const FileList *l, const char *label_file)
{
    char a[32], z[32];
    json_t *m = json_object();
    json_object_set_new(m, "format", json_integer(MANIFEST_FORMAT));
    json_object_set_new(m, "label", json_string(b->label));
    json_object_set_new(m, "type", json_string(b->type));
    json_object_set_new(m, "start_lsn", json_string(lsn_format(b->start_lsn, a)));
    json_object_set_new(m, "stop_lsn", json_string(lsn_format(b->stop_lsn, z)));
    json_object_set_new(m, "timeline", json_integer(b->timeline));
    json_object_set_new(m, "start_time", json_string(b->start_time));
    json_object_set_new(m, "stop_time", json_string(b->stop_time));
    json_object_set_new(m, "seconds", json_real(b->seconds));
    json_object_set_new(m, "system_identifier", json_string(b->sysid));
    json_object_set_new(m, "backup_label", json_string(label_file));
    json_t *dirs = json_array();
    for (int i = 0; i < l->n_dirs; i++)
        json_array_append_new(dirs, json_string(l->dirs[i]));
    json_object_set_new(m, "directories", dirs);
    json_t *files = json_array();
    for (int i = 0; i < l->n_files; i++) {
        const FileEntry *f = &l->files[i];
        if (f->gone)
            continue;
        json_array_append_new(files, json_pack("{s:s, s:I, s:s, s:I}", "path", f->path, "size", (json_int_t)f->size,
                                               "sha256", f->sha256, "stored", (json_int_t)f->stored));
    }
    json_object_set_new(m, "files", files);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return s;
}

/* Read and parse backup/<label>/manifest; the caller json_decref's. */
static json_t *manifest_load(Repo *r, const char *label, Err *err)
{
    char *key = str_printf("backup/%s/manifest", label);
    void *stored = NULL, *raw = NULL;
    size_t sn = 0, rn = 0;
    bool missing = false;
    bool ok = r->ops->read_all(r, key, &stored, &sn, &missing, err) && obj_decode(stored, sn, &raw, &rn, err);
    free(stored);
    if (!ok) {
        err_prefix(err, "%s: backup %s", r->desc, label);
        free(key);
        return NULL;
    }
    json_error_t je;
    json_t *m = json_loadb(raw, rn, 0, &je);
    free(raw);
    if (!m || json_integer_value(json_object_get(m, "format")) != MANIFEST_FORMAT) {
        err_set(err, "%s: %s: not a manifest of this format", r->desc, key);
        json_decref(m);
        m = NULL;
    }
    free(key);
    return m;
}

static void info_from_json(const json_t *m, BackupInfo *b)
{
    memset(b, 0, sizeof(*b));
    str_copy(b->label, sizeof(b->label), json_string_value(json_object_get(m, "label")));
    str_copy(b->type, sizeof(b->type), json_string_value(json_object_get(m, "type")));
    const char *s = json_string_value(json_object_get(m, "start_lsn"));
    if (s)
        lsn_parse(s, &b->start_lsn);
    s = json_string_value(json_object_get(m, "stop_lsn"));
    if (s)
        lsn_parse(s, &b->stop_lsn);
    b->timeline = (int)json_integer_value(json_object_get(m, "timeline"));
    str_copy(b->start_time, sizeof(b->start_time), json_string_value(json_object_get(m, "start_time")));
    str_copy(b->stop_time, sizeof(b->stop_time), json_string_value(json_object_get(m, "stop_time")));
    b->seconds = json_number_value(json_object_get(m, "seconds"));
    str_copy(b->sysid, sizeof(b->sysid), json_string_value(json_object_get(m, "system_identifier")));
    json_t *files = json_object_get(m, "files");
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        b->files++;
        b->bytes += json_integer_value(json_object_get(f, "size"));
        b->stored += json_integer_value(json_object_get(f, "stored"));
    }
}

/* ---- backup ---------------------------------------------------------------------------------- */

static char *query_one(PgNode *pg, const char *sql, int timeout_ms, Err *err)
{
    PGresult *r = pg_query(pg, sql, timeout_ms, err);
    if (!r)
        return NULL;
    char *v = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? str_dup(PQgetvalue(r, 0, 0)) : NULL;
    if (!v)
        err_set(err, "no value from: %s", sql);
    PQclear(r);
    return v;
}

bool backup_take(const Config *cfg, Repo *r, const BackupOptions *o, BackupInfo *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out->label, sizeof(out->label), "%Y%m%dT%H%M%SF", &tm);
    str_copy(out->type, sizeof(out->type), "full");
    bool exists = false;
    char *mkey = str_printf("backup/%s/manifest", out->label);
    if (!r->ops->exists(r, mkey, &exists, err)) {
        free(mkey);
        return false;
    }
    if (exists) {
        err_set(err, "a backup labelled %s exists already; start the next one a second later", out->label);
        free(mkey);
        return false;
    }
    PgNode pg;
    pg_node_init(&pg, cfg);
    int64_t t0 = mono_ms();
    iso_now(out->start_time, sizeof(out->start_time));
    /* notices (pg_backup_stop's "all required WAL segments have been archived") stay quiet */
    pg_exec(&pg, "SET client_min_messages TO warning", 10000, NULL);
    char *sysid = query_one(&pg, "SELECT system_identifier::text FROM pg_control_system()", 10000, err);
    char *sql = str_printf("SELECT pg_backup_start('pgvigil %s', true)::text", out->label);
    char *start = sysid ? query_one(&pg, sql, 600000, err) : NULL;
    free(sql);
    if (!start) {
        err_prefix(err, "backup: cannot start it on %s", cfg->pg_data_dir);
        free(sysid);
        free(mkey);
        pg_node_close(&pg);
        return false;
    }
    str_copy(out->sysid, sizeof(out->sysid), sysid);
    free(sysid);
    lsn_parse(start, &out->start_lsn);
    free(start);

    FileList list = {0};
    bool ok = walk(cfg->pg_data_dir, "", &list, err);
    char *prefix = str_printf("backup/%s/data/", out->label);
    if (ok) {
        CopyJob j = {.data_dir = cfg->pg_data_dir, .repo = r, .prefix = prefix, .compress = o->compress,
                     .level = o->level, .list = &list};
        ok = run_workers(&j, o->workers, backup_worker, err);
    }
    /* always end the backup mode, even after a failure */
    Err stop_err = {{0}};
    PGresult *res = pg_query(&pg, "SELECT lsn::text, labelfile FROM pg_backup_stop(true)", 3600000, &stop_err);
    pg_node_close(&pg);
    if (!res) {
        if (ok)
            err_set(err, "backup: pg_backup_stop: %s", stop_err.msg);
        ok = false;
    }
    char *label_file = NULL;
    if (res && PQntuples(res) == 1) {
        lsn_parse(PQgetvalue(res, 0, 0), &out->stop_lsn);
        label_file = str_dup(PQgetvalue(res, 0, 1));
        const char *tl = strstr(label_file, "START TIMELINE: ");
        out->timeline = tl ? atoi(tl + 16) : 0;
    }
    if (res)
        PQclear(res);
    if (ok && (!label_file || out->timeline <= 0)) {
        err_set(err, "backup: pg_backup_stop returned no usable backup label");
        ok = false;
    }
    iso_now(out->stop_time, sizeof(out->stop_time));
    out->seconds = (double)(mono_ms() - t0) / 1000.0;
    for (int i = 0; i < list.n_files; i++)
        if (!list.files[i].gone) {
            out->files++;
            out->bytes += list.files[i].size;
            out->stored += list.files[i].stored;
        }
    /* the manifest last: only now is the backup complete */
    if (ok) {
        char *json = manifest_json(out, &list, label_file);
        void *obj = NULL;
        size_t on = 0;
        ok = obj_encode(COMPRESS_ZSTD, 3, json, strlen(json), &obj, &on, err) && repo_put(r, mkey, obj, on, err);
        free(obj);
        free(json);
    }
    free(label_file);
    free(prefix);
    free(mkey);
    list_free(&list);
    return ok;
}

bool backup_list(Repo *r, BackupInfo **out, int *n, Err *err)
{
    *out = NULL;
    *n = 0;
    RepoKeys k;
    if (!r->ops->list(r, "backup", &k, err))
        return false;
    bool ok = true;
    for (int i = 0; i < k.n && ok; i++) {
        const char *key = k.keys[i];
        size_t len = strlen(key);
        if (len < 16 || strcmp(key + len - 9, "/manifest") != 0 || strchr(key + 7, '/') != key + len - 9)
            continue;
        char label[40];
        str_fmt(label, sizeof(label), "%.*s", (int)(len - 16), key + 7);
        json_t *m = manifest_load(r, label, err);
        if (!m) {
            ok = false;
            break;
        }
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof(BackupInfo));
        info_from_json(m, &(*out)[*n]);
        (*n)++;
        json_decref(m);
    }
    repo_keys_free(&k);
    if (!ok) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return ok;
}

/* ---- restore --------------------------------------------------------------------------------- */

/* "2026-12-05 02:03:00[.123][+00|Z]" or "2026-12-05T02:03:00.123Z": seconds since the epoch;
 * false for any other form or zone */
static bool parse_utc(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest || (*rest != ' ' && *rest != 'T'))
        return false;
    rest = strptime(rest + 1, "%H:%M:%S", &tm);
    if (!rest)
        return false;
    double frac = 0;
    if (*rest == '.') {
        double unit = 0.1;
        while (*++rest >= '0' && *rest <= '9') {
            frac += (*rest - '0') * unit;
            unit /= 10;
        }
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00") != 0 && strcmp(rest, "+00:00") != 0 && strcmp(rest, " UTC") != 0)
        return false;
    *out = (double)timegm(&tm) + frac;
    return true;
}

typedef struct RestoreFile {
    const char *path, *sha256;
    int64_t size;
} RestoreFile;

typedef struct RestoreJob {
    CopyJob c;
    RestoreFile *files;
    int n;
    const char *label;
} RestoreJob;

static void *restore_worker(void *arg)
{
    RestoreJob *rj = arg;
    CopyJob *j = &rj->c;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int i = j->failed || j->next >= rj->n ? -1 : j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i < 0)
            break;
        const RestoreFile *f = &rj->files[i];
        char *key = str_printf("backup/%s/data/%s", rj->label, f->path);
        void *stored = NULL, *raw = NULL;
        size_t sn = 0, rn = 0;
        bool missing = false;
        Err err = {{0}};
        bool ok = j->repo->ops->read_all(j->repo, key, &stored, &sn, &missing, &err) &&
                  obj_decode(stored, sn, &raw, &rn, &err);
        free(stored);
        char sum[65] = "";
        if (ok) {
            unsigned char bin[32];
            sha256_buf(raw, rn, bin);
            hex_encode(bin, 32, sum);
            if ((int64_t)rn != f->size || strcmp(sum, f->sha256) != 0) {
                err_set(&err, "content differs from the manifest");
                ok = false;
            }
        }
        if (!ok) {
            char msg[512];
            str_fmt(msg, sizeof(msg), "%s: %s: %s", j->repo->desc, key, err.msg);
            set_failed(j, msg);
            free(key);
            free(raw);
            break;
        }
        free(key);
        char *path = str_printf("%s/%s", j->target_dir, f->path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        bool wrote = fd >= 0 && (rn == 0 || write(fd, raw, rn) == (ssize_t)rn) && fsync(fd) == 0;
        int saved = errno;
        if (fd >= 0)
            close(fd);
        if (wrote)
            proc_chown_run_as(path, NULL);
        free(raw);
        if (!wrote) {
            char msg[512];
            str_fmt(msg, sizeof(msg), "cannot write %s: %s", path, strerror(saved));
            set_failed(j, msg);
            free(path);
            break;
        }
        free(path);
    }
    return NULL;
}

static bool append_conf(const char *path, const char *text, Err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
    if (!ok)
        err_set(err, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return ok;
}

/* 'value' with quotes doubled, as postgresql.conf wants */
static char *conf_quote(const char *v)
{
    size_t n = strlen(v);
    char *q = xmalloc(2 * n + 3);
    size_t k = 0;
    q[k++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\'')
            q[k++] = '\'';
        q[k++] = v[i];
    }
    q[k++] = '\'';
    q[k] = '\0';
    return q;
}

bool backup_restore(const Config *cfg, Repo *r, const RestoreOptions *o, BackupInfo *used, Err *err)
{
    if (!dir_is_empty_or_missing(o->target_dir)) {
        err_set(err, "restore: %s is not empty (restore into an empty or missing directory)", o->target_dir);
        return false;
    }
    /* which backup: the one named, else the newest (the newest that ended before a target
     * time given in UTC; with a time in another form, the oldest, which reaches any target the
     * archive covers) */
    char label[40] = "";
    if (o->label) {
        str_copy(label, sizeof(label), o->label);
    } else {
        BackupInfo *all = NULL;
        int n = 0;
        if (!backup_list(r, &all, &n, err))
            return false;
        double target = 0, stop = 0;
        bool by_time = o->target_time != NULL;
        bool target_utc = by_time && parse_utc(o->target_time, &target);
        for (int i = 0; i < n; i++) {
            if (!by_time || (target_utc && parse_utc(all[i].stop_time, &stop) && stop < target))
                str_copy(label, sizeof(label), all[i].label);
            else if (by_time && !target_utc && !label[0])
                str_copy(label, sizeof(label), all[i].label);
        }
        free(all);
        if (!label[0]) {
            err_set(err, "restore: the %s holds no complete backup", r->desc);
            return false;
        }
    }
    json_t *m = manifest_load(r, label, err);
    if (!m)
        return false;
    info_from_json(m, used);
    if (dir_make_all(o->target_dir, 0700, err))
        proc_chown_run_as(o->target_dir, NULL);
    else {
        json_decref(m);
        return false;
    }
    chmod(o->target_dir, 0700);
    bool ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(m, "directories"), i, v) {
        const char *d = json_string_value(v);
        if (!d || strstr(d, "..")) {
            err_set(err, "restore: backup %s: bad directory entry in the manifest", label);
            ok = false;
            break;
        }
        char *p = str_printf("%s/%s", o->target_dir, d);
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            err_set(err, "restore: cannot create %s: %s", p, strerror(errno));
            ok = false;
        } else {
            proc_chown_run_as(p, NULL);
        }
        free(p);
        if (!ok)
            break;
    }
    json_t *files = json_object_get(m, "files");
    RestoreJob rj = {.label = label};
    rj.n = (int)json_array_size(files);
    rj.files = xcalloc((size_t)rj.n + 1, sizeof(RestoreFile));
    json_array_foreach(files, i, v) {
        rj.files[i].path = json_string_value(json_object_get(v, "path"));
        rj.files[i].sha256 = json_string_value(json_object_get(v, "sha256"));
        rj.files[i].size = json_integer_value(json_object_get(v, "size"));
        if (!rj.files[i].path || !rj.files[i].sha256 || strstr(rj.files[i].path, "..")) {
            err_set(err, "restore: backup %s: bad file entry in the manifest", label);
            ok = false;
        }
    }
    if (ok) {
        rj.c.repo = r;
        rj.c.target_dir = o->target_dir;
        FileList dummy = {0};
        dummy.n_files = rj.n;
        rj.c.list = &dummy;
        ok = run_workers(&rj.c, o->workers, restore_worker, err);
        if (!ok)
            err_prefix(err, "restore");
    }
    free(rj.files);
    /* recovery: the backup label, a recovery signal, and how to get WAL and where to stop */
    if (ok) {
        const char *lf = json_string_value(json_object_get(m, "backup_label"));
        char *p = str_printf("%s/backup_label", o->target_dir);
        ok = lf && file_write_atomic(p, lf, strlen(lf), 0600, err);
        if (ok)
            proc_chown_run_as(p, NULL);
        free(p);
    }
    if (ok) {
        char *p = str_printf("%s/recovery.signal", o->target_dir);
        ok = file_write_atomic(p, "", 0, 0600, err);
        if (ok)
            proc_chown_run_as(p, NULL);
        free(p);
    }
    if (ok) {
        char *cmd = str_printf("%s %%f %%p", o->wal_fetch_cmd);
        char *qcmd = conf_quote(cmd);
        char *text = str_printf("\n# added by pgvigil restore of backup %s\n"
                                "restore_command = %s\n"
                                "recovery_target_action = 'promote'\n"
                                "recovery_target_inclusive = %s\n"
                                /* a restored copy must not archive into the cluster's repository,
                                 * nor read the commit guard lease of the node it was taken from */
                                "archive_mode = off\n"
                                "pgvigil_guard.lease_file = ''\n",
                                label, qcmd, o->exclusive ? "off" : "on");
        free(qcmd);
        free(cmd);
        const char *keys[] = {"recovery_target_time", "recovery_target_lsn", "recovery_target_xid",
                              "recovery_target_name"};
        const char *vals[] = {o->target_time, o->target_lsn, o->target_xid, o->target_name};
        for (size_t k = 0; k < ARRAY_LEN(keys); k++)
            if (vals[k]) {
                char *q = conf_quote(vals[k]);
                char *t2 = str_printf("%s%s = %s\n", text, keys[k], q);
                free(q);
                free(text);
                text = t2;
            }
        char *p = str_printf("%s/postgresql.auto.conf", o->target_dir);
        ok = append_conf(p, text, err);
        if (ok)
            proc_chown_run_as(p, NULL);
        free(p);
        free(text);
    }
    json_decref(m);
    return ok;
}
