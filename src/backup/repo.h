/* The backup repository: where WAL segments and base backups are stored, behind a small storage
 * interface with one driver per kind (a POSIX directory, an S3 bucket). Keys are relative paths
 * with '/' separators ("wal/0000000100000000/000000010000000000000003"). A write becomes visible
 * only when committed, whole and durable: a crash or an error leaves either the old object or
 * none, never part of one. */
#ifndef PGVIGIL_REPO_H
#define PGVIGIL_REPO_H

#include "backup/cipher.h"
#include "common/common.h"

typedef struct Repo Repo;
typedef struct RepoWriter RepoWriter;

typedef struct RepoKeys {
    char **keys;   /* sorted */
    int n;
} RepoKeys;

typedef struct RepoOps {
    RepoWriter *(*write_open)(Repo *r, const char *key, Err *err);
    bool (*write)(RepoWriter *w, const void *p, size_t n, Err *err);
    /* make it durable and visible under its key (replacing one there), and free w */
    bool (*write_commit)(RepoWriter *w, Err *err);
    /* drop what was written, and free w */
    void (*write_abort)(RepoWriter *w);
    /* optional: visible under its key, whole or not at all, but not made durable (a crash may
     * leave it empty or gone); for what can be made again, such as WAL summaries */
    bool (*write_commit_lazy)(RepoWriter *w, Err *err);
    /* optional: durable and visible under its key only when no object is there; when one is,
     * *existed and nothing is written (frees w either way) */
    bool (*write_commit_new)(RepoWriter *w, bool *existed, Err *err);
    /* optional: make every object committed lazily so far durable (a POSIX directory: syncfs
     * of its file system); NULL where a commit is durable anyway (S3) */
    bool (*sync_all)(Repo *r, Err *err);
    /* the whole object; *missing (and false) when there is none */
    bool (*read_all)(Repo *r, const char *key, void **buf, size_t *n, bool *missing, Err *err);
    /* every key under prefix ("" = all), at any depth */
    bool (*list)(Repo *r, const char *prefix, RepoKeys *out, Err *err);
    /* a missing key is not an error */
    bool (*remove)(Repo *r, const char *key, Err *err);
    bool (*exists)(Repo *r, const char *key, bool *exists, Err *err);
    void (*free)(Repo *r);
} RepoOps;

struct Repo {
    const RepoOps *ops;
    char *desc;    /* for messages: "repository /var/lib/pgvigil/repo" */
    /* an encrypted repository's key, set by repo_open (NULL: not encrypted); freed with r. Every
     * obj_encode/obj_decode of its objects takes it. */
    ObjCipher *cipher;
};

/* A repository in a local or mounted directory (created when missing). */
Repo *repo_posix_new(const char *path, Err *err);

/* A repository in an S3-compatible bucket (which must exist): objects named by their keys, each
 * written by one PUT, or by a multipart upload when larger than part_size, so that it appears
 * whole or not at all. Requests are signed with AWS Signature Version 4. Safe to use from
 * several threads at once. */
typedef struct S3RepoConfig {
    const char *endpoint;     /* "http://127.0.0.1:9000", "https://s3.eu-west-3.amazonaws.com" */
    const char *bucket;
    const char *region;       /* NULL: us-east-1 */
    bool host_style;          /* bucket.host/key, else host/bucket/key */
    const char *access_key;
    const char *secret_key;
    size_t part_size;         /* 0: 16 MiB */
} S3RepoConfig;
Repo *repo_s3_new(const S3RepoConfig *c, Err *err);

/* The repository backup.repository describes (posix or s3), with its cipher when
 * backup.encryption is set: the key is checked here, so a wrong one fails before anything is
 * read or written. */
struct BackupConfig;
Repo *repo_open(const struct BackupConfig *bc, Err *err);
/* The driver alone, not read yet (no request to an S3 bucket): what the agent's loop creates
 * without waiting on the repository. repo_cipher_setup must run before its first object. */
Repo *repo_open_driver(const struct BackupConfig *bc, Err *err);

/* A key a driver accepts: relative, '/' separated, no empty, "." or ".." component. */
bool repo_key_valid(const char *key);

/* Write a whole object (open, write, commit). */
bool repo_put(Repo *r, const char *key, const void *p, size_t n, Err *err);
/* The same without making it durable where the driver can (write_commit_lazy): for objects whose
 * loss or damage after a crash is noticed (their checked header) and costs only speed. */
bool repo_put_lazy(Repo *r, const char *key, const void *p, size_t n, Err *err);
/* Write a whole object only where none is: *existed (and nothing written) when one is. Atomic
 * where the driver has write_commit_new; otherwise a check, then a put. */
bool repo_put_new(Repo *r, const char *key, const void *p, size_t n, bool *existed, Err *err);
/* Every object put lazily so far made durable (sync_all; nothing to do without one). */
bool repo_sync(Repo *r, Err *err);
void repo_keys_free(RepoKeys *k);
void repo_free(Repo *r);

#endif
