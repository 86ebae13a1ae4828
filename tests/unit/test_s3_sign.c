/* Unit tests for AWS Signature Version 4 (src/backup/s3_sign.c): the examples of AWS's S3
 * documentation ("Examples: Signature Calculations in AWS Signature Version 4": GET Object with a
 * Range, PUT Object, GET Bucket lifecycle, GET Bucket list objects, access key
 * AKIAIOSFODNN7EXAMPLE), then edge cases. Every expected value was computed apart from this code,
 * with Python's hmac and hashlib on the same inputs; the four examples' signatures are also the
 * ones AWS publishes. */
#include "common/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "backup/s3_sign.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EXAMPLE_DATE "20130524T000000Z"
#define EXAMPLE_HOST "examplebucket.s3.amazonaws.com"

static S3SignRequest example(const char *method, const char *path, const S3Pair *q, int nq, const S3Pair *h,
                             int nh, const char *payload_hash)
{
    S3SignRequest rq = {
        .method = method, .path = path, .params = q, .n_params = nq, .headers = h, .n_headers = nh,
        .payload_hash = payload_hash, .amz_date = EXAMPLE_DATE, .region = "us-east-1", .service = "s3",
        .access_key = AK, .secret_key = SK,
    };
    return rq;
}

static void test_signing_key(void **state)
{
    (void)state;
    unsigned char k[32];
    s3_signing_key(SK, "20130524", "us-east-1", "s3", k);
    char h[65];
    for (int i = 0; i < 32; i++)
        str_fmt(h + 2 * i, 3, "%02x", k[i]);
    assert_string_equal(h, "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378");
}

/* AWS's example: GET /test.txt with Range: bytes=0-9 */
static void test_aws_get_object(void **state)
{
    (void)state;
    const S3Pair h[] = {
        {"Host", EXAMPLE_HOST},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", S3_EMPTY_SHA256},
        {"x-amz-date", EXAMPLE_DATE},
    };
    S3SignRequest rq = example("GET", "/test.txt", NULL, 0, h, 4, S3_EMPTY_SHA256);
    S3Signature s;
    Err err = {{0}};
    assert_true(s3_sign(&rq, &s, &err));
    assert_string_equal(s.canonical_request,
                        "GET\n"
                        "/test.txt\n"
                        "\n"
                        "host:examplebucket.s3.amazonaws.com\n"
                        "range:bytes=0-9\n"
                        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                        "x-amz-date:20130524T000000Z\n"
                        "\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n"
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(s.string_to_sign,
                        "AWS4-HMAC-SHA256\n"
                        "20130524T000000Z\n"
                        "20130524/us-east-1/s3/aws4_request\n"
                        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    assert_string_equal(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    assert_string_equal(s.authorization,
                        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    s3_signature_free(&s);
}

/* AWS's example: PUT /test$file.text with a body, a Date and a storage class */
static void test_aws_put_object(void **state)
{
    (void)state;
    const char *body = "Welcome to Amazon S3.";
    char ph[65];
    s3_sha256_hex(body, strlen(body), ph);
    assert_string_equal(ph, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    const S3Pair h[] = {
        {"Host", EXAMPLE_HOST},
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", EXAMPLE_DATE},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", ph},
    };
    S3SignRequest rq = example("PUT", "/test$file.text", NULL, 0, h, 5, ph);
    S3Signature s;
    assert_true(s3_sign(&rq, &s, NULL));
    assert_non_null(strstr(s.canonical_request, "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"));
    assert_string_equal(s.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
    assert_string_equal(s.string_to_sign + strlen(s.string_to_sign) - 64,
                        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
    assert_string_equal(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    s3_signature_free(&s);
}

/* AWS's examples: GET ?lifecycle (a parameter without a value) and GET ?max-keys=2&prefix=J */
static void test_aws_bucket_requests(void **state)
{
    (void)state;
    const S3Pair h[] = {
        {"Host", EXAMPLE_HOST},
        {"x-amz-date", EXAMPLE_DATE},
        {"x-amz-content-sha256", S3_EMPTY_SHA256},
    };
    const S3Pair lifecycle[] = {{"lifecycle", NULL}};
    S3SignRequest rq = example("GET", "/", lifecycle, 1, h, 3, S3_EMPTY_SHA256);
    S3Signature s;
    assert_true(s3_sign(&rq, &s, NULL));
    assert_non_null(strstr(s.canonical_request, "GET\n/\nlifecycle=\nhost:"));
    assert_string_equal(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    s3_signature_free(&s);

    const S3Pair list[] = {{"prefix", "J"}, {"max-keys", "2"}};   /* given unsorted */
    rq = example("GET", "/", list, 2, h, 3, S3_EMPTY_SHA256);
    assert_true(s3_sign(&rq, &s, NULL));
    assert_non_null(strstr(s.canonical_request, "GET\n/\nmax-keys=2&prefix=J\nhost:"));
    assert_string_equal(s.string_to_sign + strlen(s.string_to_sign) - 64,
                        "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
    assert_string_equal(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    s3_signature_free(&s);
}

static void check_encode(const char *in, bool slash, const char *want)
{
    char *got = s3_uri_encode(in, slash);
    assert_string_equal(got, want);
    free(got);
}

static void test_uri_encoding(void **state)
{
    (void)state;
    check_encode("", true, "");
    check_encode("AZaz09-._~", true, "AZaz09-._~");
    check_encode("a b+c/d", false, "a%20b%2Bc/d");
    check_encode("a b+c/d", true, "a%20b%2Bc%2Fd");
    check_encode("*()!'$&=,;:@?#%", true, "%2A%28%29%21%27%24%26%3D%2C%3B%3A%40%3F%23%25");
    check_encode("\xc3\xbc\x7f\x01", true, "%C3%BC%7F%01");
    char *u = s3_canonical_uri("");
    assert_string_equal(u, "/");
    free(u);
    u = s3_canonical_uri("/b//c/./d");   /* S3: never normalized */
    assert_string_equal(u, "/b//c/./d");
    free(u);
}

static void test_query_sorting(void **state)
{
    (void)state;
    char *q = s3_canonical_query(NULL, 0);
    assert_string_equal(q, "");
    free(q);
    /* by encoded name, then value; names and values encoded, '/' too; an empty value keeps '=' */
    const S3Pair p[] = {
        {"prefix", "wal/0001 x"}, {"list-type", "2"}, {"continuation-token", "a+b/c=="}, {"uploads", NULL},
    };
    q = s3_canonical_query(p, 4);
    assert_string_equal(q, "continuation-token=a%2Bb%2Fc%3D%3D&list-type=2&prefix=wal%2F0001%20x&uploads=");
    free(q);
    const S3Pair dup[] = {{"b", "2"}, {"a", "1"}, {"a", "0"}, {"A", "z"}, {"a-b", ""}};
    q = s3_canonical_query(dup, 5);
    assert_string_equal(q, "A=z&a=0&a=1&a-b=&b=2");   /* byte order: 'A' < 'a'; "a" < "a-b" */
    free(q);
}

/* A key with spaces, '+', '*', parentheses and UTF-8, in another region */
static void test_special_key(void **state)
{
    (void)state;
    const S3Pair h[] = {
        {"host", "127.0.0.1:9000"},
        {"x-amz-content-sha256", S3_EMPTY_SHA256},
        {"x-amz-date", "20260101T120000Z"},
    };
    S3SignRequest rq = example("PUT", "/my-bucket/wal/a b+c/\xc3\xbc~x*(1).txt", NULL, 0, h, 3, S3_EMPTY_SHA256);
    rq.amz_date = "20260101T120000Z";
    rq.region = "eu-west-3";
    S3Signature s;
    assert_true(s3_sign(&rq, &s, NULL));
    assert_non_null(strstr(s.canonical_request, "PUT\n/my-bucket/wal/a%20b%2Bc/%C3%BC~x%2A%281%29.txt\n\n"));
    assert_string_equal(s.string_to_sign,
                        "AWS4-HMAC-SHA256\n20260101T120000Z\n20260101/eu-west-3/s3/aws4_request\n"
                        "2523ab25e9046895c46be906f0326a2c954f7257822cd53836d16c02f27fcce0");
    assert_string_equal(s.signature, "a4e254152572c7f68c1fddbeaefe9ac9d2bbec810249dce3161f1b04687a01a2");
    s3_signature_free(&s);
}

/* The query of a ListObjectsV2 continuation, and an empty payload */
static void test_list_continuation(void **state)
{
    (void)state;
    const S3Pair h[] = {
        {"host", "127.0.0.1:9000"},
        {"x-amz-content-sha256", S3_EMPTY_SHA256},
        {"x-amz-date", "20260101T120000Z"},
    };
    const S3Pair q[] = {
        {"prefix", "wal/0001 x"}, {"list-type", "2"}, {"continuation-token", "a+b/c=="}, {"uploads", NULL},
    };
    S3SignRequest rq = example("GET", "/bkt", q, 4, h, 3, S3_EMPTY_SHA256);
    rq.amz_date = "20260101T120000Z";
    S3Signature s;
    assert_true(s3_sign(&rq, &s, NULL));
    assert_string_equal(s.string_to_sign + strlen(s.string_to_sign) - 64,
                        "138844f835b930348a57692f2550e3d5ab94c389002611483cea2ee783845c64");
    assert_string_equal(s.signature, "d23c6694ba67fd36c2e0ba861ed9887d044a01cecd5e73277b9f9ffc03e92ef7");
    s3_signature_free(&s);
}

/* Header names in any case, values trimmed with runs of spaces as one; repeated parameters */
static void test_header_canonicalization(void **state)
{
    (void)state;
    const S3Pair h[] = {
        {"Host", "h"},
        {"X-Amz-Meta-Note", "  two   spaces  here "},
        {"x-amz-content-sha256", S3_EMPTY_SHA256},
        {"x-amz-date", "20260101T120000Z"},
    };
    const S3Pair q[] = {{"b", "2"}, {"a", "1"}, {"a", "0"}};
    S3SignRequest rq = example("GET", "/bkt/k", q, 3, h, 4, S3_EMPTY_SHA256);
    rq.amz_date = "20260101T120000Z";
    S3Signature s;
    assert_true(s3_sign(&rq, &s, NULL));
    assert_non_null(strstr(s.canonical_request, "\na=0&a=1&b=2\n"));
    assert_non_null(strstr(s.canonical_request, "\nx-amz-meta-note:two spaces here\n\n"));
    assert_string_equal(s.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-meta-note");
    assert_string_equal(s.signature, "b6e84cd1b9e60fbf57e9f78c087479568e15477887f5a1ad6881f76c745688b3");
    s3_signature_free(&s);

    /* one header given twice: one line, values joined by a comma in the given order */
    const S3Pair twice[] = {{"x-amz-meta-a", "1"}, {"Host", "h"}, {"X-Amz-Meta-A", " 2 "}};
    rq = example("GET", "/", NULL, 0, twice, 3, S3_EMPTY_SHA256);
    assert_true(s3_sign(&rq, &s, NULL));
    assert_string_equal(s.canonical_request, "GET\n/\n\nhost:h\nx-amz-meta-a:1,2\n\nhost;x-amz-meta-a\n" S3_EMPTY_SHA256);
    s3_signature_free(&s);
}

static void test_empty_payload_and_dates(void **state)
{
    (void)state;
    char h[65];
    s3_sha256_hex("", 0, h);
    assert_string_equal(h, S3_EMPTY_SHA256);
    s3_sha256_hex(NULL, 0, h);
    assert_string_equal(h, S3_EMPTY_SHA256);
    char d[17];
    s3_amz_date(1369353600, d);   /* 2013-05-24 00:00:00 UTC */
    assert_string_equal(d, EXAMPLE_DATE);
    s3_amz_date(0, d);
    assert_string_equal(d, "19700101T000000Z");

    const S3Pair hd[] = {{"host", "h"}};
    S3SignRequest rq = example("GET", "/", NULL, 0, hd, 1, S3_EMPTY_SHA256);
    S3Signature s;
    Err err = {{0}};
    rq.amz_date = "2013-05-24T00:00:00Z";
    assert_false(s3_sign(&rq, &s, &err));
    assert_non_null(strstr(err.msg, "bad x-amz-date \"2013-05-24T00:00:00Z\""));
    rq.amz_date = EXAMPLE_DATE;
    rq.access_key = "";
    assert_false(s3_sign(&rq, &s, &err));
    assert_non_null(strstr(err.msg, "access key"));
    s3_signature_free(&s);

    /* a different secret gives another signature for the same request */
    const S3Pair hh[] = {{"Host", EXAMPLE_HOST}, {"x-amz-date", EXAMPLE_DATE}, {"x-amz-content-sha256", S3_EMPTY_SHA256}};
    rq = example("GET", "/", NULL, 0, hh, 3, S3_EMPTY_SHA256);
    rq.secret_key = "wrong";
    assert_true(s3_sign(&rq, &s, NULL));
    assert_string_not_equal(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    assert_int_equal(strlen(s.signature), 64);
    s3_signature_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_aws_get_object),
        cmocka_unit_test(test_aws_put_object),
        cmocka_unit_test(test_aws_bucket_requests),
        cmocka_unit_test(test_uri_encoding),
        cmocka_unit_test(test_query_sorting),
        cmocka_unit_test(test_special_key),
        cmocka_unit_test(test_list_continuation),
        cmocka_unit_test(test_header_canonicalization),
        cmocka_unit_test(test_empty_payload_and_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
