/* Standard base64 (RFC 4648, "+/" alphabet, "=" padding) for etcd's JSON gateway, which carries
 * keys and values as base64 byte strings. */
#ifndef PGVIGIL_BASE64_H
#define PGVIGIL_BASE64_H

#include "common/common.h"

/* Encode len bytes; returns a malloc'd NUL-terminated string the caller frees. */
char *base64_encode(const void *data, size_t len);

/* Decode text (padding required, no whitespace). Returns a malloc'd buffer with a NUL after the
 * *len decoded bytes (so text values can be used as C strings), or NULL when text is not valid
 * base64. len may be NULL. */
char *base64_decode(const char *text, size_t *len);

#endif
