/* Restored files written with direct I/O where it pays (see file_sink.h). */
#include "backup/file_sink.h"

#include "common/proc.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

bool file_sink_open(FileSink *s, const char *path, int flags, mode_t mode, uint64_t size_hint, unsigned char *bounce,
                    size_t bounce_n, Err *err)
{
    /* opened plainly, direct I/O turned on afterwards: an open with O_CREAT | O_DIRECT that the
     * file system refuses (EINVAL) has created the file already */
    int fd = open(path, flags, mode);
    if (fd < 0) {
        memset(s, 0, sizeof(*s));
        s->fd = -1;
        err_set(err, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    file_sink_adopt(s, fd, path, size_hint, bounce, bounce_n);
    return true;
}

void file_sink_adopt(FileSink *s, int fd, const char *path, uint64_t size_hint, unsigned char *bounce, size_t bounce_n)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->path = path;
    s->bounce = bounce;
    s->bounce_n = bounce_n - bounce_n % FILE_SINK_ALIGN;
    int fl;
    if (size_hint >= FILE_SINK_DIRECT_MIN && bounce && s->bounce_n > 0 && ((uintptr_t)bounce % FILE_SINK_ALIGN) == 0 &&
        (fl = fcntl(fd, F_GETFL)) >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
        s->direct = true;
}

static bool write_all(FileSink *s, const unsigned char *p, size_t n, Err *err)
{
    while (n > 0) {
        ssize_t w = write(s->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err_set(err, "cannot write %s: %s", s->path, w < 0 ? strerror(errno) : "short write");
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* the rest of the file the usual way (a tail that is not a whole number of blocks) */
static bool stop_direct(FileSink *s, Err *err)
{
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) != 0) {
        err_set(err, "cannot write %s: %s", s->path, strerror(errno));
        return false;
    }
    s->direct = false;
    return true;
}

bool file_sink_write(FileSink *s, const void *p, size_t n, Err *err)
{
    const unsigned char *in = p;
    while (s->direct && n >= FILE_SINK_ALIGN) {
        size_t take = n - n % FILE_SINK_ALIGN;
        const unsigned char *src = in;
        if ((uintptr_t)in % FILE_SINK_ALIGN != 0) {
            /* direct I/O reads from aligned memory only */
            if (take > s->bounce_n)
                take = s->bounce_n;
            memcpy(s->bounce, in, take);
            src = s->bounce;
        }
        if (!write_all(s, src, take, err))
            return false;
        in += take;
        n -= take;
    }
    if (n == 0)
        return true;
    if (s->direct && !stop_direct(s, err))
        return false;
    return write_all(s, in, n, err);
}

bool file_sink_close(FileSink *s, Err *err)
{
    uid_t uid;
    gid_t gid;
    bool ok = true;
    if (proc_run_as(&uid, &gid) && fchown(s->fd, uid, gid) != 0) {
        err_set(err, "cannot write %s: %s", s->path, strerror(errno));
        ok = false;
    }
    if (close(s->fd) != 0 && ok) {
        err_set(err, "cannot write %s: %s", s->path, strerror(errno));
        ok = false;
    }
    s->fd = -1;
    return ok;
}

void file_sink_abort(FileSink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
