/* Client-side encryption of the repository (backup.encryption: aes-256-gcm). Every stored object
 * is sealed with AES-256-GCM under one repository key and a random 96-bit nonce of its own, so
 * that a wrong key, a damaged or a modified object fails the tag check instead of giving wrong
 * data. The key comes from the key material (backup.encryption_key_file, else
 * $PGVIGIL_BACKUP_KEY) through PBKDF2-HMAC-SHA-256 with the repository's salt. The salt, the
 * iteration count and a key check value are in the repository's one clear object, "repo.cipher",
 * written at first use: a wrong key is named when the repository is opened. */
#ifndef PGVIGIL_CIPHER_H
#define PGVIGIL_CIPHER_H

#include "common/common.h"

#define CIPHER_KEY_ENV "PGVIGIL_BACKUP_KEY"
#define CIPHER_REPO_KEY "repo.cipher"   /* the repository key of the cipher settings */
#define CIPHER_NONCE_LEN 12
#define CIPHER_TAG_LEN 16
#define CIPHER_OVERHEAD (CIPHER_NONCE_LEN + CIPHER_TAG_LEN)
#define CIPHER_MATERIAL_MIN 16          /* bytes of key material, at least */

typedef struct ObjCipher ObjCipher;

/* PBKDF2 rounds written into a new repository's repo.cipher (tests lower it) */
extern int cipher_new_repo_iterations;

/* The key derived from material and a 32-byte salt (PBKDF2-HMAC-SHA-256, iterations rounds). */
ObjCipher *obj_cipher_new(const void *material, size_t n, const unsigned char salt[32], int iterations, Err *err);
/* Wipes the key. NULL is fine. */
void obj_cipher_free(ObjCipher *c);

/* out (n + CIPHER_OVERHEAD bytes) = nonce || ciphertext || tag, aad authenticated too. out + 12
 * may be in itself (in place). */
bool cipher_seal(const ObjCipher *c, const void *aad, size_t aad_n, const void *in, size_t n, unsigned char *out,
                 Err *err);
/* in = nonce || ciphertext || tag; out gets in_n - CIPHER_OVERHEAD bytes, nothing usable when the
 * tag does not match (false then). */
bool cipher_open(const ObjCipher *c, const void *aad, size_t aad_n, const void *in, size_t in_n, unsigned char *out,
                 Err *err);

/* The key material: key_file's content (a final line break dropped), or without key_file the
 * environment's $PGVIGIL_BACKUP_KEY. A key file must be a regular file no one but its owner may
 * read or write (mode 0600 or 0400). *material is malloc'd: wipe and free it with
 * cipher_material_free. source (for messages, never the key) names where it came from. */
bool cipher_material_load(const char *key_file, char **material, size_t *n, char *source, size_t source_sz, Err *err);
void cipher_material_free(char *material, size_t n);

/* Before the first object of r is read or written (repo_open does it): with encryption
 * "aes-256-gcm", load the key material (key_file, else the environment's), read the repository's
 * repo.cipher (or write it, in a repository still empty), check the key and set r->cipher.
 * Without encryption (NULL or "none"), refuse a repository that has a repo.cipher. The errors
 * are one line and name the repository and the key's source, never the key. */
struct Repo;
bool repo_cipher_setup(struct Repo *r, const char *encryption, const char *key_file, Err *err);

#endif
