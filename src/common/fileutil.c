/* File helpers with the durability rule of STYLE.md: temp file, fsync, rename, fsync dir. */
#include "common/common.h"
#include "common/fileutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

bool file_write_atomic(const char *path, const char *data, size_t len, int mode, Err *err)
{
    char tmp[4096];
    if (!str_fmt(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid())) {
        err_set(err, "path too long: %s", path);
        return false;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        err_set(err, "cannot create %s: %s", tmp, strerror(errno));
        return false;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err_set(err, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return false;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        err_set(err, "cannot fsync %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return false;
    }
    if (rename(tmp, path) != 0) {
        err_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return false;
    }
    char dcopy[4096];
    str_copy(dcopy, sizeof(dcopy), path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return true;
}

char *file_read_all(const char *path, size_t *len, Err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (cap - n < 2048) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        err_set(err, "cannot read %s", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool dir_is_empty_or_missing(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    closedir(d);
    return empty;
}

bool dir_make_all(const char *path, int mode, Err *err)
{
    char buf[4096];
    if (!str_copy(buf, sizeof(buf), path)) {
        err_set(err, "path too long: %s", path);
        return false;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) {
                err_set(err, "cannot create directory %s: %s", buf, strerror(errno));
                return false;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return true;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    /* gone meanwhile is as good as removed */
    return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

bool dir_remove_all(const char *path, Err *err)
{
    if (str_empty(path) || strcmp(path, "/") == 0) {
        err_set(err, "refusing to remove \"%s\"", path ? path : "");
        return false;
    }
    if (!file_exists(path))
        return true;
    if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0) {
        err_set(err, "cannot remove %s: %s", path, strerror(errno));
        return false;
    }
    return true;
}
