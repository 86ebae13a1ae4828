/* Encrypted repositories: sealed objects (round trip, a nonce of their own, nothing of the
 * plaintext or its hash in the stored bytes, every damaged byte or a wrong key refused), the key
 * material (key file modes, the environment), and repo_open on a POSIX repository (repo.cipher
 * written once, a wrong key or a missing one named in one line, the repository untouched then,
 * unencrypted and encrypted repositories never mixed). */
#include "backup/cipher.h"
#include "backup/obj.h"
#include "backup/repo.h"
#include "backup/wal_archive.h"
#include "common/common.h"
#include "common/fileutil.h"
#include "config/config.h"

#include <setjmp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[64];
static const char marker[] = "pgvigil-plaintext-marker-4f1c9";

static int setup(void **state)
{
    (void)state;
    cipher_new_repo_iterations = 1000; /* fast tests; the count is read back from repo.cipher */
    unsetenv(CIPHER_KEY_ENV);
    str_copy(dir, sizeof(dir), "/tmp/pgvigil-test-cipher.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unsetenv(CIPHER_KEY_ENV);
    Err err;
    return dir_remove_all(dir, &err) ? 0 : -1;
}

/* n bytes holding the marker every 1000 bytes */
static unsigned char *sample(size_t n)
{
    unsigned char *p = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + 7);
    for (size_t i = 0; i + sizeof(marker) < n; i += 1000)
        memcpy(p + i, marker, sizeof(marker) - 1);
    return p;
}

static bool contains(const void *hay, size_t n, const void *needle, size_t nn)
{
    return memmem(hay, n, needle, nn) != NULL;
}

static ObjCipher *cipher_of(const char *material)
{
    unsigned char salt[32];
    memset(salt, 0x5a, sizeof(salt));
    Err err = {{0}};
    ObjCipher *c = obj_cipher_new(material, strlen(material), salt, 1000, &err);
    assert_non_null(c);
    return c;
}

static void test_sealed_objects(void **state)
{
    (void)state;
    ObjCipher *c = cipher_of("correct horse battery staple");
    ObjCipher *other = cipher_of("correct horse battery stapl3");
    size_t n = 100000;
    unsigned char *raw = sample(n);
    unsigned char sum[CHECKSUM_MAX_LEN];
    checksum_buf(CHECKSUM_NEW, raw, n, sum);
    void *obj = NULL, *obj2 = NULL, *back = NULL;
    size_t on = 0, on2 = 0, bn = 0;
    Err err = {{0}};

    /* round trip; the stored bytes hold neither the content nor its checksum */
    assert_true(obj_encode(c, COMPRESS_NONE, 0, raw, n, &obj, &on, &err));
    assert_int_equal(on, OBJ_SEALED_HEADER_LEN + CIPHER_OVERHEAD + OBJ_HEADER_LEN + n);
    assert_false(contains(obj, on, marker, strlen(marker)));
    assert_false(contains(obj, on, sum, checksum_len(CHECKSUM_NEW)));
    assert_true(obj_decode(c, obj, on, &back, &bn, &err));
    assert_int_equal(bn, n);
    assert_memory_equal(back, raw, n);
    free(back);
    back = NULL;
    ObjInfo info;
    assert_true(obj_read_header(c, obj, on, &info, &err));
    assert_int_equal(info.raw_size, n);
    assert_int_equal(info.compress, COMPRESS_NONE);
    assert_int_equal(info.sum_kind, CHECKSUM_NEW);
    assert_memory_equal(info.sum, sum, CHECKSUM_MAX_LEN);

    /* the same content again: another nonce, other bytes */
    assert_true(obj_encode(c, COMPRESS_NONE, 0, raw, n, &obj2, &on2, &err));
    assert_int_equal(on2, on);
    assert_memory_not_equal((unsigned char *)obj + OBJ_SEALED_HEADER_LEN,
                            (unsigned char *)obj2 + OBJ_SEALED_HEADER_LEN, CIPHER_NONCE_LEN);
    assert_memory_not_equal((unsigned char *)obj + 100, (unsigned char *)obj2 + 100, 64);
    free(obj2);

    /* a wrong key, no key */
    assert_false(obj_decode(other, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "decryption failed"));
    assert_null(back);
    assert_false(obj_read_header(other, obj, on, &info, &err));
    assert_false(obj_decode(NULL, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "encrypted (aes-256-gcm), and backup.encryption is not set"));
    assert_false(obj_read_header(NULL, obj, on, &info, &err));

    /* any byte changed (clear header, nonce, ciphertext, tag) or a short object: refused */
    size_t at[] = {10, 11, OBJ_SEALED_HEADER_LEN, OBJ_SEALED_HEADER_LEN + CIPHER_NONCE_LEN + 3, on / 2, on - 1};
    for (size_t i = 0; i < ARRAY_LEN(at); i++) {
        ((unsigned char *)obj)[at[i]] ^= 0x01;
        memset(&err, 0, sizeof(err));
        assert_false(obj_decode(c, obj, on, &back, &bn, &err));
        assert_null(back);
        assert_true(err.msg[0] != '\0');
        ((unsigned char *)obj)[at[i]] ^= 0x01;
    }
    ((unsigned char *)obj)[9] = 7; /* an unknown cipher */
    assert_false(obj_decode(c, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "unsupported"));
    ((unsigned char *)obj)[9] = OBJ_CIPHER_AES256GCM;
    assert_false(obj_decode(c, obj, on - 1, &back, &bn, &err));
    assert_false(obj_decode(c, obj, OBJ_SEALED_HEADER_LEN + 20, &back, &bn, &err));
    assert_true(obj_decode(c, obj, on, &back, &bn, &err)); /* all restored */
    free(back);
    back = NULL;
    free(obj);

    /* an object not encrypted, in an encrypted repository: refused (it could be planted) */
    assert_true(obj_encode(NULL, COMPRESS_NONE, 0, raw, n, &obj, &on, &err));
    assert_true(contains(obj, on, marker, strlen(marker)));
    assert_false(obj_decode(c, obj, on, &back, &bn, &err));
    assert_non_null(strstr(err.msg, "not encrypted"));
    assert_false(obj_read_header(c, obj, on, &info, &err));
    free(obj);

    /* compressed, and empty */
    assert_true(obj_encode(c, COMPRESS_ZSTD, 3, raw, n, &obj, &on, &err));
    assert_true(obj_decode(c, obj, on, &back, &bn, &err));
    assert_memory_equal(back, raw, n);
    free(back);
    free(obj);
    assert_true(obj_encode(c, COMPRESS_NONE, 0, raw, 0, &obj, &on, &err));
    assert_true(obj_decode(c, obj, on, &back, &bn, &err));
    assert_int_equal(bn, 0);
    free(back);
    free(obj);

    free(raw);
    obj_cipher_free(c);
    obj_cipher_free(other);
}

static void write_key(const char *path, const char *text, mode_t mode)
{
    Err err = {{0}};
    unlink(path);
    assert_true(file_write_atomic(path, text, strlen(text), mode, &err));
    assert_int_equal(chmod(path, mode), 0);
}

static void expect_material_error(const char *key_file, const char *want)
{
    char *m = NULL, source[256];
    size_t n = 0;
    Err err = {{0}};
    assert_false(cipher_material_load(key_file, &m, &n, source, sizeof(source), &err));
    assert_null(m);
    if (!strstr(err.msg, want))
        fail_msg("want '%s', got '%s'", want, err.msg);
    assert_null(strchr(err.msg, '\n'));
}

static void test_key_material(void **state)
{
    (void)state;
    char path[128], msg[256];
    str_fmt(path, sizeof(path), "%s/key", dir);
    char *m = NULL, source[256];
    size_t n = 0;
    Err err = {{0}};

    write_key(path, "a-long-enough-passphrase\n", 0600);
    assert_true(cipher_material_load(path, &m, &n, source, sizeof(source), &err));
    assert_int_equal(n, strlen("a-long-enough-passphrase"));
    assert_memory_equal(m, "a-long-enough-passphrase", n);
    str_fmt(msg, sizeof(msg), "backup.encryption_key_file %s", path);
    assert_string_equal(source, msg);
    cipher_material_free(m, n);
    /* the file wins over the environment */
    setenv(CIPHER_KEY_ENV, "the-environment-key-material", 1);
    assert_true(cipher_material_load(path, &m, &n, source, sizeof(source), &err));
    assert_memory_equal(m, "a-long-enough-passphrase", n);
    cipher_material_free(m, n);
    /* without a file, the environment */
    assert_true(cipher_material_load(NULL, &m, &n, source, sizeof(source), &err));
    assert_string_equal(source, CIPHER_KEY_ENV);
    assert_int_equal(n, strlen("the-environment-key-material"));
    cipher_material_free(m, n);
    setenv(CIPHER_KEY_ENV, "short", 1);
    expect_material_error(NULL, "PGVIGIL_BACKUP_KEY: the key is too short (5 bytes, at least 16");
    unsetenv(CIPHER_KEY_ENV);
    expect_material_error(NULL, "backup.encryption_key_file: required with backup.encryption aes-256-gcm (or set "
                                "PGVIGIL_BACKUP_KEY in the environment)");

    /* open to the group or others: refused, naming the file and its mode */
    static const mode_t open_modes[] = {0640, 0644, 0604, 0620, 0660};
    for (size_t i = 0; i < ARRAY_LEN(open_modes); i++) {
        write_key(path, "a-long-enough-passphrase\n", open_modes[i]);
        str_fmt(msg, sizeof(msg), "backup.encryption_key_file %s: group or others may access it (mode %04o)", path,
                (unsigned)open_modes[i]);
        expect_material_error(path, msg);
    }
    write_key(path, "a-long-enough-passphrase", 0400);
    assert_true(cipher_material_load(path, &m, &n, source, sizeof(source), &err));
    cipher_material_free(m, n);
    write_key(path, "short\n", 0600);
    str_fmt(msg, sizeof(msg), "backup.encryption_key_file %s: the key is too short (5 bytes", path);
    expect_material_error(path, msg);
    unlink(path);
    str_fmt(msg, sizeof(msg), "backup.encryption_key_file %s: cannot open it", path);
    expect_material_error(path, msg);
    expect_material_error(dir, "not a regular file");
}

/* every file under root with its content, to show nothing changed */
static char *snapshot(const char *root)
{
    Err err = {{0}};
    Repo *r = repo_posix_new(root, &err);
    assert_non_null(r);
    RepoKeys k;
    assert_true(r->ops->list(r, "", &k, &err));
    size_t cap = 1, len = 0;
    char *out = xmalloc(cap);
    for (int i = 0; i < k.n; i++) {
        void *buf = NULL;
        size_t n = 0;
        bool missing = false;
        assert_true(r->ops->read_all(r, k.keys[i], &buf, &n, &missing, &err));
        unsigned char sum[CHECKSUM_MAX_LEN];
        char hex[CHECKSUM_HEX_LEN];
        checksum_buf(CHECKSUM_SHA256, buf, n, sum);
        checksum_hex(CHECKSUM_SHA256, sum, hex);
        free(buf);
        char *line = str_printf("%s %zu %s\n", k.keys[i], n, hex);
        out = xrealloc(out, cap += strlen(line));
        memcpy(out + len, line, strlen(line));
        len += strlen(line);
        free(line);
    }
    out[len] = '\0';
    repo_keys_free(&k);
    repo_free(r);
    return out;
}

static bool file_has(const char *path, const char *needle)
{
    size_t n = 0;
    Err err = {{0}};
    char *buf = file_read_all(path, &n, &err);
    assert_non_null(buf);
    bool has = contains(buf, n, needle, strlen(needle));
    free(buf);
    return has;
}

static void test_encrypted_repository(void **state)
{
    (void)state;
    char root[128], plain_root[128], key[128], wrong[128], seg[128], out[128], obj_path[256], msg[512];
    str_fmt(root, sizeof(root), "%s/enc", dir);
    str_fmt(plain_root, sizeof(plain_root), "%s/plain", dir);
    str_fmt(key, sizeof(key), "%s/repo.key", dir);
    str_fmt(wrong, sizeof(wrong), "%s/wrong.key", dir);
    str_fmt(seg, sizeof(seg), "%s/segment", dir);
    str_fmt(out, sizeof(out), "%s/fetched", dir);
    write_key(key, "the right key material, long enough\n", 0600);
    write_key(wrong, "some other key material, as long\n", 0600);
    size_t n = 1 << 20;
    unsigned char *raw = sample(n);
    Err err = {{0}};
    assert_true(file_write_atomic(seg, (const char *)raw, n, 0600, &err));
    const char *name = "000000010000000000000001";
    str_fmt(obj_path, sizeof(obj_path), "%s/wal/00000001/%s", root, name);

    BackupConfig bc = {0};
    bc.repo_path = root;
    bc.encryption = (char *)"aes-256-gcm";
    bc.encryption_key_file = key;

    /* first use: repo.cipher written; WAL stored encrypted, fetched back whole */
    Repo *r = repo_open(&bc, &err);
    assert_non_null(r);
    assert_non_null(r->cipher);
    WalPushResult res;
    assert_true(wal_push(r, COMPRESS_NONE, 0, seg, name, false, &res, &err));
    assert_false(res.already);
    assert_false(file_has(obj_path, marker));
    /* PostgreSQL's retry of the same file: recognized through the encrypted header */
    assert_true(wal_push(r, COMPRESS_NONE, 0, seg, name, false, &res, &err));
    assert_true(res.already);
    raw[5] ^= 1;
    assert_true(file_write_atomic(seg, (const char *)raw, n, 0600, &err));
    assert_false(wal_push(r, COMPRESS_NONE, 0, seg, name, false, &res, &err));
    assert_non_null(strstr(err.msg, "other content"));
    raw[5] ^= 1;
    repo_free(r);

    char cipher_path[160];
    str_fmt(cipher_path, sizeof(cipher_path), "%s/%s", root, CIPHER_REPO_KEY);
    assert_true(file_has(cipher_path, "\"aes-256-gcm\""));
    assert_false(file_has(cipher_path, "the right key"));

    /* opened again (the salt is the stored one): fetched whole */
    r = repo_open(&bc, &err);
    assert_non_null(r);
    bool missing = false, damaged = false;
    assert_true(wal_fetch(r, name, out, &missing, &damaged, &err));
    size_t got_n = 0;
    char *got = file_read_all(out, &got_n, &err);
    assert_non_null(got);
    assert_int_equal(got_n, n);
    assert_memory_equal(got, raw, n);
    free(got);
    unlink(out);
    repo_free(r);

    /* the same key from the environment */
    bc.encryption_key_file = NULL;
    setenv(CIPHER_KEY_ENV, "the right key material, long enough", 1);
    r = repo_open(&bc, &err);
    assert_non_null(r);
    repo_free(r);

    /* a wrong key, from the environment or a file: one line naming both, and nothing touched */
    char *before = snapshot(root);
    setenv(CIPHER_KEY_ENV, "not the right key material at all", 1);
    assert_null(repo_open(&bc, &err));
    str_fmt(msg, sizeof(msg), "wrong encryption key for repository %s (PGVIGIL_BACKUP_KEY)", root);
    assert_string_equal(err.msg, msg);
    unsetenv(CIPHER_KEY_ENV);
    bc.encryption_key_file = wrong;
    memset(&err, 0, sizeof(err));
    assert_null(repo_open(&bc, &err));
    str_fmt(msg, sizeof(msg), "wrong encryption key for repository %s (backup.encryption_key_file %s)", root, wrong);
    assert_string_equal(err.msg, msg);
    /* no key at all; no encryption configured */
    bc.encryption_key_file = NULL;
    assert_null(repo_open(&bc, &err));
    assert_non_null(strstr(err.msg, "backup.encryption_key_file: required"));
    bc.encryption = (char *)"none";
    assert_null(repo_open(&bc, &err));
    str_fmt(msg, sizeof(msg), "repository %s is encrypted (it has repo.cipher): set backup.encryption: aes-256-gcm",
            root);
    assert_non_null(strstr(err.msg, msg));
    char *after = snapshot(root);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* a damaged object: fetch says damaged and writes nothing */
    bc.encryption = (char *)"aes-256-gcm";
    bc.encryption_key_file = key;
    r = repo_open(&bc, &err);
    assert_non_null(r);
    size_t sn = 0;
    char *stored = file_read_all(obj_path, &sn, &err);
    assert_non_null(stored);
    stored[sn / 2] ^= 0x10;
    assert_true(file_write_atomic(obj_path, stored, sn, 0600, &err));
    free(stored);
    assert_false(wal_fetch(r, name, out, &missing, &damaged, &err));
    assert_false(missing);
    assert_true(damaged);
    assert_non_null(strstr(err.msg, "decryption failed"));
    assert_false(file_exists(out));
    repo_free(r);

    /* damaged cipher settings: named */
    size_t cn = 0;
    char *text = file_read_all(cipher_path, &cn, &err);
    assert_non_null(text);
    char *s = strstr(text, "\"salt\": \"");
    assert_non_null(s);
    s[9] = 'x';
    assert_true(file_write_atomic(cipher_path, text, cn, 0600, &err));
    free(text);
    assert_null(repo_open(&bc, &err));
    assert_non_null(strstr(err.msg, "repo.cipher is not cipher settings this pgvigil reads"));

    /* a repository already in use without encryption: encryption is refused, nothing written */
    BackupConfig plain = {0};
    plain.repo_path = plain_root;
    plain.encryption = (char *)"none";
    r = repo_open(&plain, &err);
    assert_non_null(r);
    assert_null(r->cipher);
    assert_true(wal_push(r, COMPRESS_NONE, 0, seg, name, false, &res, &err));
    repo_free(r);
    char plain_obj[256];
    str_fmt(plain_obj, sizeof(plain_obj), "%s/wal/00000001/%s", plain_root, name);
    assert_true(file_has(plain_obj, marker)); /* what encryption hides */
    plain.encryption = (char *)"aes-256-gcm";
    plain.encryption_key_file = key;
    assert_null(repo_open(&plain, &err));
    str_fmt(msg, sizeof(msg), "repository %s holds unencrypted objects (wal/00000001/%s, ...) and no repo.cipher",
            plain_root, name);
    assert_non_null(strstr(err.msg, msg));
    str_fmt(cipher_path, sizeof(cipher_path), "%s/%s", plain_root, CIPHER_REPO_KEY);
    assert_false(file_exists(cipher_path));
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_objects),
        cmocka_unit_test(test_key_material),
        cmocka_unit_test(test_encrypted_repository),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
