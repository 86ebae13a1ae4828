/* AWS Signature Version 4 for S3 requests, from AWS's documentation ("Authenticating Requests:
 * Using the Authorization Header"): the canonical request, the string to sign, the signing key
 * derived from the secret, and the Authorization header. Pure functions (no I/O, no clock): the
 * caller gives the time, the headers to sign and the payload's hash. */
#ifndef PGVIGIL_S3_SIGN_H
#define PGVIGIL_S3_SIGN_H

#include "common/common.h"

#include <time.h>

#define S3_SHA256_HEX_LEN 64
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* A query parameter or a header, as sent (not encoded). A NULL value is an empty one. */
typedef struct S3Pair {
    const char *name;
    const char *value;
} S3Pair;

typedef struct S3SignRequest {
    const char *method;          /* "GET", "PUT", ... */
    const char *path;            /* absolute, not encoded: "/bucket/wal/a b" (path style) or "/a b" */
    const S3Pair *params;        /* the query, not encoded */
    int n_params;
    const S3Pair *headers;       /* every header to sign, with host, x-amz-date, x-amz-content-sha256 */
    int n_headers;
    const char *payload_hash;    /* lowercase hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;        /* "20130524T000000Z": the x-amz-date header's value */
    const char *region;          /* "us-east-1" */
    const char *service;         /* "s3" */
    const char *access_key;
    const char *secret_key;
} S3SignRequest;

typedef struct S3Signature {
    char *canonical_request;
    char *string_to_sign;
    char *signed_headers;        /* "host;x-amz-content-sha256;x-amz-date" */
    char signature[S3_SHA256_HEX_LEN + 1];
    char *authorization;         /* the Authorization header's value */
} S3Signature;

/* Sign a request. False (err set) on a malformed amz_date or a missing field. */
bool s3_sign(const S3SignRequest *rq, S3Signature *out, Err *err);
void s3_signature_free(S3Signature *s);

/* AWS's UriEncode: every byte but A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex); '/' kept unless
 * encode_slash. Caller frees. */
char *s3_uri_encode(const char *s, bool encode_slash);
/* The canonical query string: names and values encoded, sorted by name then value, "a=1&b=".
 * The same string serves as the request's query. Caller frees. */
char *s3_canonical_query(const S3Pair *params, int n);
/* The canonical URI of an unencoded path ("/" when empty). Caller frees. */
char *s3_canonical_uri(const char *path);
/* Lowercase hex SHA-256 of n bytes. */
void s3_sha256_hex(const void *p, size_t n, char out[S3_SHA256_HEX_LEN + 1]);
/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
void s3_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                    unsigned char out[32]);
/* "YYYYMMDDTHHMMSSZ" for a time, in UTC. */
void s3_amz_date(time_t t, char out[17]);

#endif
