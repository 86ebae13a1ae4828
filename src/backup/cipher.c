/* AES-256-GCM for the repository's objects, the key material and repo.cipher. repo.cipher is
 * JSON, in the clear:
 *   {"format": 1, "cipher": "aes-256-gcm", "kdf": "pbkdf2-sha256", "iterations": N,
 *    "salt": "<32 bytes, hex>", "check": "<nonce || sealed known block || tag, hex>"}
 * The check value is a known block sealed with the repository key: a key that does not open it
 * is the wrong one, found before anything is read or written. */
#include "backup/cipher.h"
#include "backup/obj.h"
#include "backup/repo.h"

#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX 4096
#define REPO_CIPHER_FORMAT 1
#define CHECK_AAD "pgvigil repo.cipher 1"
/* the known block of the key check (32 bytes, with the terminating zero and padding) */
static const unsigned char check_block[32] = "pgvigil repository key check v1";

/* PBKDF2 rounds for a new repository (about 50 ms here): a guess of the key costs as much. The
 * count is stored in repo.cipher, so that changing it leaves older repositories readable. */
int cipher_new_repo_iterations = 200000;

struct ObjCipher {
    unsigned char key[32];
};

ObjCipher *obj_cipher_new(const void *material, size_t n, const unsigned char salt[32], int iterations, Err *err)
{
    ObjCipher *c = xcalloc(1, sizeof(*c));
    if (n > INT32_MAX || iterations < 1 ||
        PKCS5_PBKDF2_HMAC(material, (int)n, salt, 32, iterations, EVP_sha256(), (int)sizeof(c->key), c->key) != 1) {
        err_set(err, "cannot derive the encryption key (PBKDF2 failed)");
        obj_cipher_free(c);
        return NULL;
    }
    return c;
}

void obj_cipher_free(ObjCipher *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->key, sizeof(c->key));
    free(c);
}

/* EVP takes int lengths: objects may be larger, so feed them in pieces */
#define PIECE ((size_t)1 << 30)

bool cipher_seal(const ObjCipher *c, const void *aad, size_t aad_n, const void *in, size_t n, unsigned char *out,
                 Err *err)
{
    unsigned char *nonce = out, *ct = out + CIPHER_NONCE_LEN;
    if (RAND_bytes(nonce, CIPHER_NONCE_LEN) != 1) {
        err_set(err, "encryption: no random nonce (RAND_bytes failed)");
        return false;
    }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CIPHER_NONCE_LEN, NULL) == 1 &&
              EVP_EncryptInit_ex(ctx, NULL, NULL, c->key, nonce) == 1 &&
              (aad_n == 0 || EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_n) == 1);
    for (size_t off = 0; ok && off < n; off += PIECE) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        ok = EVP_EncryptUpdate(ctx, ct + off, &len, (const unsigned char *)in + off, (int)k) == 1 && (size_t)len == k;
    }
    ok = ok && EVP_EncryptFinal_ex(ctx, ct + n, &len) == 1 && len == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CIPHER_TAG_LEN, ct + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        err_set(err, "encryption failed (OpenSSL AES-256-GCM)");
    return ok;
}

bool cipher_open(const ObjCipher *c, const void *aad, size_t aad_n, const void *in, size_t in_n, unsigned char *out,
                 Err *err)
{
    if (in_n < CIPHER_OVERHEAD) {
        err_set(err, "encrypted object too short (%zu bytes)", in_n);
        return false;
    }
    const unsigned char *nonce = in, *ct = (const unsigned char *)in + CIPHER_NONCE_LEN;
    size_t n = in_n - CIPHER_OVERHEAD;
    unsigned char tag[CIPHER_TAG_LEN];
    memcpy(tag, ct + n, CIPHER_TAG_LEN);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CIPHER_NONCE_LEN, NULL) == 1 &&
              EVP_DecryptInit_ex(ctx, NULL, NULL, c->key, nonce) == 1 &&
              (aad_n == 0 || EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_n) == 1);
    for (size_t off = 0; ok && off < n; off += PIECE) {
        size_t k = n - off < PIECE ? n - off : PIECE;
        ok = EVP_DecryptUpdate(ctx, out + off, &len, ct + off, (int)k) == 1 && (size_t)len == k;
    }
    bool setup = ok;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CIPHER_TAG_LEN, tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, out + n, &len) > 0;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        if (n > 0)
            OPENSSL_cleanse(out, n); /* unauthenticated: nobody uses it */
        err_set(err, setup ? "decryption failed: the object is damaged or was modified, or another key encrypted it"
                           : "decryption failed (OpenSSL AES-256-GCM)");
    }
    return ok;
}

void cipher_material_free(char *material, size_t n)
{
    if (!material)
        return;
    OPENSSL_cleanse(material, n);
    free(material);
}

bool cipher_material_load(const char *key_file, char **material, size_t *n, char *source, size_t source_sz, Err *err)
{
    *material = NULL;
    *n = 0;
    if (!key_file) {
        str_copy(source, source_sz, CIPHER_KEY_ENV);
        const char *env = getenv(CIPHER_KEY_ENV);
        if (str_empty(env)) {
            err_set(err, "backup.encryption_key_file: required with backup.encryption aes-256-gcm (or set %s in the "
                         "environment)", CIPHER_KEY_ENV);
            return false;
        }
        size_t len = strlen(env);
        if (len < CIPHER_MATERIAL_MIN) {
            err_set(err, "%s: the key is too short (%zu bytes, at least %d: a random one, such as `openssl rand "
                         "-base64 32`)", CIPHER_KEY_ENV, len, CIPHER_MATERIAL_MIN);
            return false;
        }
        *material = xmalloc(len + 1);
        memcpy(*material, env, len + 1);
        *n = len;
        return true;
    }
    str_fmt(source, source_sz, "backup.encryption_key_file %s", key_file);
    int fd = open(key_file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        err_set(err, "backup.encryption_key_file %s: cannot open it: %s", key_file, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, "backup.encryption_key_file %s: not a regular file", key_file);
        close(fd);
        return false;
    }
    if (st.st_mode & 077) {
        err_set(err, "backup.encryption_key_file %s: group or others may access it (mode %04o); allow its owner "
                     "only (chmod 600)", key_file, (unsigned)(st.st_mode & 07777));
        close(fd);
        return false;
    }
    if (st.st_size > KEY_FILE_MAX) {
        err_set(err, "backup.encryption_key_file %s: too large for a key (%lld bytes, at most %d)", key_file,
                (long long)st.st_size, KEY_FILE_MAX);
        close(fd);
        return false;
    }
    char *buf = xmalloc(KEY_FILE_MAX + 1);
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, buf + got, KEY_FILE_MAX + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            err_set(err, "backup.encryption_key_file %s: reading it: %s", key_file, strerror(errno));
            close(fd);
            cipher_material_free(buf, KEY_FILE_MAX + 1);
            return false;
        }
        if (k == 0 || (got += (size_t)k) > KEY_FILE_MAX)
            break;
    }
    close(fd);
    if (got > KEY_FILE_MAX) {
        err_set(err, "backup.encryption_key_file %s: too large for a key (at most %d bytes)", key_file, KEY_FILE_MAX);
        cipher_material_free(buf, KEY_FILE_MAX + 1);
        return false;
    }
    size_t len = got;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len < CIPHER_MATERIAL_MIN) {
        err_set(err, "backup.encryption_key_file %s: the key is too short (%zu bytes, at least %d: a random one, "
                     "such as `openssl rand -base64 32`)", key_file, len, CIPHER_MATERIAL_MIN);
        cipher_material_free(buf, KEY_FILE_MAX + 1);
        return false;
    }
    buf[len] = '\0';
    /* past len, the line break at most: wiped now, so that freeing wipes len bytes */
    OPENSSL_cleanse(buf + len, KEY_FILE_MAX + 1 - len);
    *material = buf;
    *n = len;
    return true;
}

static bool hex_decode(const char *s, unsigned char *out, size_t n)
{
    if (!s || strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < 2 * n; i++) {
        int c = (unsigned char)s[i], v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] << 4) | v : v);
    }
    return true;
}

#define CHECK_LEN (sizeof(check_block) + CIPHER_OVERHEAD)

/* The key repo.cipher's text describes, checked against material. */
static ObjCipher *cipher_from_settings(const Repo *r, const void *text, size_t n, const char *material, size_t mn,
                                       const char *source, Err *err)
{
    json_error_t je;
    json_t *root = json_loadb(text, n, 0, &je);
    unsigned char salt[32], check[CHECK_LEN], opened[sizeof(check_block)];
    json_int_t iterations = json_integer_value(json_object_get(root, "iterations"));
    const char *cipher = json_string_value(json_object_get(root, "cipher"));
    const char *kdf = json_string_value(json_object_get(root, "kdf"));
    if (!root || json_integer_value(json_object_get(root, "format")) != REPO_CIPHER_FORMAT || !cipher ||
        strcmp(cipher, "aes-256-gcm") != 0 || !kdf || strcmp(kdf, "pbkdf2-sha256") != 0 || iterations < 1000 ||
        iterations > 100000000 || !hex_decode(json_string_value(json_object_get(root, "salt")), salt, sizeof(salt)) ||
        !hex_decode(json_string_value(json_object_get(root, "check")), check, sizeof(check))) {
        err_set(err, "%s: %s is not cipher settings this pgvigil reads (format %d, aes-256-gcm, pbkdf2-sha256)",
                r->desc, CIPHER_REPO_KEY, REPO_CIPHER_FORMAT);
        json_decref(root);
        return NULL;
    }
    json_decref(root);
    ObjCipher *c = obj_cipher_new(material, mn, salt, (int)iterations, err);
    if (!c)
        return NULL;
    Err e = {{0}};
    if (!cipher_open(c, CHECK_AAD, strlen(CHECK_AAD), check, sizeof(check), opened, &e) ||
        memcmp(opened, check_block, sizeof(check_block)) != 0) {
        err_set(err, "wrong encryption key for %s (%s)", r->desc, source);
        obj_cipher_free(c);
        return NULL;
    }
    return c;
}

/* The first keys under wal/ and backup/: a repository with one of them is in use. */
static bool repo_in_use(Repo *r, char **first, Err *err)
{
    static const char *const prefixes[] = {"wal", "backup"};
    *first = NULL;
    for (size_t i = 0; i < ARRAY_LEN(prefixes) && !*first; i++) {
        RepoKeys k;
        if (!r->ops->list(r, prefixes[i], &k, err))
            return false;
        if (k.n > 0)
            *first = str_dup(k.keys[0]);
        repo_keys_free(&k);
    }
    return true;
}

/* A new repository's repo.cipher: a random salt and the check value, written only where none is
 * (two agents that start on a new repository at once: the first one's stays, and the other
 * takes it), then read back (a store that cannot create only where none is may have let another
 * process's replace it: the one stored is the one everybody uses). */
static ObjCipher *cipher_create(Repo *r, const char *material, size_t mn, const char *source, Err *err)
{
    char *first = NULL;
    if (!repo_in_use(r, &first, err))
        return NULL;
    if (first) {
        err_set(err, "%s holds unencrypted objects (%s, ...) and no %s: encryption needs a new, empty repository",
                r->desc, first, CIPHER_REPO_KEY);
        free(first);
        return NULL;
    }
    unsigned char salt[32], check[CHECK_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        err_set(err, "%s: no random salt (RAND_bytes failed)", r->desc);
        return NULL;
    }
    ObjCipher *c = obj_cipher_new(material, mn, salt, cipher_new_repo_iterations, err);
    if (!c || !cipher_seal(c, CHECK_AAD, strlen(CHECK_AAD), check_block, sizeof(check_block), check, err)) {
        obj_cipher_free(c);
        return NULL;
    }
    char salt_hex[2 * sizeof(salt) + 1], check_hex[2 * sizeof(check) + 1];
    hex_encode(salt, sizeof(salt), salt_hex);
    hex_encode(check, sizeof(check), check_hex);
    json_t *root = json_pack("{s:i, s:s, s:s, s:i, s:s, s:s}", "format", REPO_CIPHER_FORMAT, "cipher", "aes-256-gcm",
                             "kdf", "pbkdf2-sha256", "iterations", cipher_new_repo_iterations, "salt", salt_hex,
                             "check", check_hex);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    size_t tn = strlen(text);
    text = xrealloc(text, tn + 2);
    text[tn++] = '\n';
    text[tn] = '\0';
    void *back = NULL;
    size_t bn = 0;
    bool missing = false;
    bool existed = false;
    bool ok = repo_put_new(r, CIPHER_REPO_KEY, text, tn, &existed, err) &&
              r->ops->read_all(r, CIPHER_REPO_KEY, &back, &bn, &missing, err);
    if (ok && (bn != tn || memcmp(back, text, tn) != 0)) {
        obj_cipher_free(c);
        c = cipher_from_settings(r, back, bn, material, mn, source, err);
    }
    free(text);
    free(back);
    if (!ok) {
        err_prefix(err, "writing %s", CIPHER_REPO_KEY);
        obj_cipher_free(c);
        return NULL;
    }
    return c;
}

bool repo_cipher_setup(Repo *r, const char *encryption, const char *key_file, Err *err)
{
    bool encrypt = encryption && strcmp(encryption, "aes-256-gcm") == 0;
    void *text = NULL;
    size_t n = 0;
    bool missing = false;
    Err e = {{0}};
    if (!r->ops->read_all(r, CIPHER_REPO_KEY, &text, &n, &missing, &e) && !missing) {
        err_set(err, "%s", e.msg);
        return false;
    }
    if (!encrypt) {
        free(text);
        if (missing)
            return true;
        err_set(err, "%s is encrypted (it has %s): set backup.encryption: aes-256-gcm and its key "
                     "(backup.encryption_key_file, or %s in the environment)",
                r->desc, CIPHER_REPO_KEY, CIPHER_KEY_ENV);
        return false;
    }
    char source[4200];
    char *material = NULL;
    size_t mn = 0;
    if (!cipher_material_load(key_file, &material, &mn, source, sizeof(source), err)) {
        free(text);
        return false;
    }
    r->cipher = missing ? cipher_create(r, material, mn, source, err)
                        : cipher_from_settings(r, text, n, material, mn, source, err);
    cipher_material_free(material, mn);
    free(text);
    return r->cipher != NULL;
}
