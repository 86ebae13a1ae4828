/* AWS Signature Version 4, written from AWS's description of the algorithm:
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
 *                      SignedHeaders \n HashedPayload
 *   StringToSign     = "AWS4-HMAC-SHA256" \n amz-date \n date/region/service/aws4_request \n
 *                      hex(SHA256(CanonicalRequest))
 *   Signature        = hex(HMAC(kSigning, StringToSign))
 *
 * S3 differs from the other services in one point: the URI path is encoded once, as sent, and
 * never normalized ("a//b" and "." stay). */
#include "backup/s3_sign.h"
#include "common/strbuf.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static void sb_encoded(StrBuf *b, const char *s, bool encode_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (*p == '/' && !encode_slash)) {
            strbuf_addc(b, (char)*p);
        } else {
            char e[3] = {'%', digits[*p >> 4], digits[*p & 15]};
            strbuf_add(b, e, 3);
        }
    }
}

char *s3_uri_encode(const char *s, bool encode_slash)
{
    StrBuf b = {0};
    sb_encoded(&b, s ? s : "", encode_slash);
    return strbuf_take(&b);
}

char *s3_canonical_uri(const char *path)
{
    if (str_empty(path))
        return str_dup("/");
    return s3_uri_encode(path, false);
}

typedef struct EncPair {
    char *name;
    char *value;
} EncPair;

static int cmp_enc_pair(const void *a, const void *b)
{
    const EncPair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

char *s3_canonical_query(const S3Pair *params, int n)
{
    if (n <= 0)
        return str_dup("");
    EncPair *e = xcalloc((size_t)n, sizeof(*e));
    for (int i = 0; i < n; i++) {
        e[i].name = s3_uri_encode(params[i].name, true);
        e[i].value = s3_uri_encode(params[i].value ? params[i].value : "", true);
    }
    qsort(e, (size_t)n, sizeof(*e), cmp_enc_pair);
    StrBuf b = {0};
    for (int i = 0; i < n; i++) {
        if (i)
            strbuf_addc(&b, '&');
        strbuf_adds(&b, e[i].name);
        strbuf_addc(&b, '=');
        strbuf_adds(&b, e[i].value);
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    return strbuf_take(&b);
}

void s3_sha256_hex(const void *p, size_t n, char out[S3_SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(p ? p : "", n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        /* only on a broken libcrypto: a hash nobody can match, never a silent empty one */
        memset(out, '0', S3_SHA256_HEX_LEN);
        out[S3_SHA256_HEX_LEN] = '\0';
        return;
    }
    hex(md, 32, out);
}

static void hmac_sha256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len))
        memset(out, 0, 32);
}

void s3_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                    unsigned char out[32])
{
    char *k0 = str_printf("AWS4%s", secret ? secret : "");
    unsigned char k1[32], k2[32], k3[32];
    hmac_sha256(k0, strlen(k0), date8, k1);
    hmac_sha256(k1, 32, region, k2);
    hmac_sha256(k2, 32, service, k3);
    hmac_sha256(k3, 32, "aws4_request", out);
    OPENSSL_cleanse(k0, strlen(k0));
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    free(k0);
}

void s3_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

typedef struct CanonHeader {
    char *name;   /* lower case */
    char *value;  /* trimmed, runs of spaces as one */
} CanonHeader;

static int cmp_header(const void *a, const void *b)
{
    return strcmp(((const CanonHeader *)a)->name, ((const CanonHeader *)b)->name);
}

static char *lower(const char *s)
{
    char *l = str_dup(s);
    for (char *p = l; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return l;
}

static char *trimmed(const char *s)
{
    StrBuf b = {0};
    bool space = false;
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == ' ' || *p == '\t') {
            space = b.len > 0;
            continue;
        }
        if (space)
            strbuf_addc(&b, ' ');
        space = false;
        strbuf_addc(&b, *p);
    }
    return strbuf_take(&b);
}

static bool amz_date_ok(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return false;
    return true;
}

bool s3_sign(const S3SignRequest *rq, S3Signature *out, Err *err)
{
    memset(out, 0, sizeof(*out));
    if (str_empty(rq->method) || str_empty(rq->region) || str_empty(rq->service) || str_empty(rq->access_key) ||
        !rq->secret_key || str_empty(rq->payload_hash)) {
        err_set(err, "signing: method, region, service, access key, secret and payload hash are required");
        return false;
    }
    if (!amz_date_ok(rq->amz_date)) {
        err_set(err, "signing: bad x-amz-date \"%s\" (expected YYYYMMDDTHHMMSSZ)", rq->amz_date ? rq->amz_date : "");
        return false;
    }

    /* canonical headers: names in lower case, sorted; one header given twice is one line with
     * its values joined by commas, in the order given */
    int n = rq->n_headers;
    CanonHeader *h = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*h));
    for (int i = 0; i < n; i++) {
        h[i].name = lower(rq->headers[i].name);
        h[i].value = trimmed(rq->headers[i].value);
    }
    /* stable: a merge keeps the given order of equal names */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && cmp_header(&h[j - 1], &h[j]) > 0; j--) {
            CanonHeader t = h[j - 1];
            h[j - 1] = h[j];
            h[j] = t;
        }
    StrBuf headers = {0}, signed_headers = {0};
    for (int i = 0; i < n; i++) {
        if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
            /* the previous line continues: drop its newline */
            headers.len--;
            strbuf_addc(&headers, ',');
        } else {
            if (signed_headers.len)
                strbuf_addc(&signed_headers, ';');
            strbuf_adds(&signed_headers, h[i].name);
            strbuf_adds(&headers, h[i].name);
            strbuf_addc(&headers, ':');
        }
        strbuf_adds(&headers, h[i].value);
        strbuf_addc(&headers, '\n');
    }
    for (int i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);

    char *uri = s3_canonical_uri(rq->path);
    char *query = s3_canonical_query(rq->params, rq->n_params);
    char *hdrs = strbuf_take(&headers);
    out->signed_headers = strbuf_take(&signed_headers);
    out->canonical_request = str_printf("%s\n%s\n%s\n%s\n%s\n%s", rq->method, uri, query, hdrs,
                                        out->signed_headers, rq->payload_hash);
    free(uri);
    free(query);
    free(hdrs);

    char date8[9];
    memcpy(date8, rq->amz_date, 8);
    date8[8] = '\0';
    char *scope = str_printf("%s/%s/%s/aws4_request", date8, rq->region, rq->service);
    char creq_hash[S3_SHA256_HEX_LEN + 1];
    s3_sha256_hex(out->canonical_request, strlen(out->canonical_request), creq_hash);
    out->string_to_sign = str_printf("AWS4-HMAC-SHA256\n%s\n%s\n%s", rq->amz_date, scope, creq_hash);

    unsigned char key[32], sig[32];
    s3_signing_key(rq->secret_key, date8, rq->region, rq->service, key);
    hmac_sha256(key, sizeof(key), out->string_to_sign, sig);
    OPENSSL_cleanse(key, sizeof(key));
    hex(sig, sizeof(sig), out->signature);
    out->authorization = str_printf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                                    rq->access_key, scope, out->signed_headers, out->signature);
    free(scope);
    return true;
}

void s3_signature_free(S3Signature *s)
{
    if (!s)
        return;
    free(s->canonical_request);
    free(s->string_to_sign);
    free(s->signed_headers);
    free(s->authorization);
    memset(s, 0, sizeof(*s));
}
