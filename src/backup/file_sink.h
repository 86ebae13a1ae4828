/* Writing a restored file, or a large object into a repository directory. A large file goes to
 * disk with direct I/O (O_DIRECT) where the file system takes it: a restore or a backup writes
 * gigabytes that nobody reads soon, and copying them through the page cache costs more CPU than
 * decompressing them (measured: 1.8 s of system time per GB buffered against 0.3 s direct, on
 * ext4 in a VM). The unaligned tail of a file, a file system
 * without direct I/O and small files are written the usual way. Durability is the caller's (one
 * syncfs for the whole restore). */
#ifndef PGVIGIL_FILE_SINK_H
#define PGVIGIL_FILE_SINK_H

#include "common/common.h"

#define FILE_SINK_ALIGN 4096                  /* buffers, offsets and lengths for direct I/O */
#define FILE_SINK_DIRECT_MIN ((size_t)1 << 20) /* files smaller than this are written buffered */

typedef struct FileSink {
    int fd;
    bool direct;
    const char *path;         /* for messages */
    unsigned char *bounce;    /* FILE_SINK_ALIGN-aligned, bounce_n bytes: for unaligned input */
    size_t bounce_n;
} FileSink;

/* Open path with flags (O_WRONLY | O_CREAT ...; O_DIRECT added when size_hint makes it worth
 * it and the file system accepts it). bounce: an aligned buffer of bounce_n bytes (a multiple
 * of FILE_SINK_ALIGN) the sink may use until closed. */
bool file_sink_open(FileSink *s, const char *path, int flags, mode_t mode, uint64_t size_hint, unsigned char *bounce,
                    size_t bounce_n, Err *err);
/* The same on a file already open for writing at offset 0 (fd stays the caller's to close):
 * direct I/O is turned on with fcntl when size_hint makes it worth it. */
void file_sink_adopt(FileSink *s, int fd, const char *path, uint64_t size_hint, unsigned char *bounce, size_t bounce_n);
bool file_sink_write(FileSink *s, const void *p, size_t n, Err *err);
/* fchown to the server user where pgvigil runs as root (proc_run_as), then close */
bool file_sink_close(FileSink *s, Err *err);
/* close without a word (after a failure) */
void file_sink_abort(FileSink *s);

#endif
