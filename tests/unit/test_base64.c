/* Unit tests for the base64 codec used on etcd's JSON gateway: RFC 4648 vectors, binary
 * round trips and rejection of everything that is not canonical padded base64. */
#include "common/common.h"

#include <setjmp.h>
#include <cmocka.h>

#include "dcs/base64.h"

static void check_encode(const char *in, const char *want)
{
    char *got = base64_encode(in, strlen(in));
    assert_string_equal(got, want);
    size_t len = 99;
    char *back = base64_decode(got, &len);
    assert_non_null(back);
    assert_int_equal(len, strlen(in));
    assert_memory_equal(back, in, len);
    assert_int_equal(back[len], '\0');
    free(got);
    free(back);
}

static void test_rfc4648_vectors(void **state)
{
    check_encode("", "");
    check_encode("f", "Zg==");
    check_encode("fo", "Zm8=");
    check_encode("foo", "Zm9v");
    check_encode("foob", "Zm9vYg==");
    check_encode("fooba", "Zm9vYmE=");
    check_encode("foobar", "Zm9vYmFy");
    check_encode("/service/demo/", "L3NlcnZpY2UvZGVtby8=");
}

static void test_binary_round_trip(void **state)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof(all); n++) {
        char *enc = base64_encode(all, n);
        assert_int_equal(strlen(enc), (n + 2) / 3 * 4);
        size_t len;
        char *dec = base64_decode(enc, &len);
        assert_non_null(dec);
        assert_int_equal(len, n);
        assert_memory_equal(dec, all, n);
        free(enc);
        free(dec);
    }
    /* both alphabet ends */
    char *dec = base64_decode("+/+/", NULL);
    assert_non_null(dec);
    assert_memory_equal(dec, "\xfb\xff\xbf", 3);
    free(dec);
}

static void test_rejects_invalid(void **state)
{
    static const char *bad[] = {
        "Zg",        /* missing padding */
        "Zg=",       /* short */
        "Zm9v!A==",  /* bad character */
        "Zm 9v",     /* whitespace */
        "Zm9v\n",
        "Z===",      /* too much padding */
        "=Zg=",
        "Zg==Zm9v",  /* padding in the middle */
        "Zh==",      /* stray bits under the padding */
        "Zm9=",
        "Zm-_",      /* URL-safe alphabet is not etcd's */
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        size_t len = 7;
        char *dec = base64_decode(bad[i], &len);
        if (dec)
            fail_msg("accepted invalid base64 \"%s\"", bad[i]);
        assert_int_equal(len, 7);   /* untouched on failure */
    }
    assert_null(base64_decode(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_binary_round_trip),
        cmocka_unit_test(test_rejects_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
