/* Lines of /proc/net/tcp{,6}: which are established connections to a local port (tcp_peers.c). */
#include "common/common.h"
#include "ha/tcp_peers.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_lines(void **state)
{
    (void)state;
    int rport = 0;
    /* 127.0.0.1:5432 <- 127.0.0.1:38334, established */
    assert_true(tcp_line_established_on(
        "   1: 0100007F:1538 0100007F:95BE 01 00000000:00000000 00:00000000 00000000   108        0 1 1 0", 5432, &rport));
    assert_int_equal(rport, 38334);
    /* listening (0A), another port, time-wait (06): not */
    assert_false(tcp_line_established_on(
        "   0: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1", 5432, &rport));
    assert_false(tcp_line_established_on(
        "   1: 0100007F:1539 0100007F:95BE 01 00000000:00000000 00:00000000 00000000   108        0 1", 5432, &rport));
    assert_false(tcp_line_established_on(
        "   1: 0100007F:1538 0100007F:95BE 06 00000000:00000000 00:00000000 00000000   108        0 1", 5432, &rport));
    /* IPv6 */
    assert_true(tcp_line_established_on("   2: 00000000000000000000000001000000:1538 00000000000000000000000001000000:C350 01 "
                                        "00000000:00000000 00:00000000 00000000 108 0 1",
                                        5432, &rport));
    assert_int_equal(rport, 50000);
    /* the header and garbage */
    assert_false(tcp_line_established_on("  sl  local_address rem_address   st tx_queue", 5432, &rport));
    assert_false(tcp_line_established_on("   1: 0100007F:ZZZZ 0100007F:95BE 01", 5432, &rport));
    assert_false(tcp_line_established_on("", 5432, &rport));
    assert_false(tcp_line_established_on("   1: 0100007F:1538", 5432, &rport));
}

static void test_reads_proc(void **state)
{
    (void)state;
    int ports[16];
    /* (whatever this machine has: the files are there and read) */
    assert_true(tcp_peers_on_port(1, ports, 16) >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_reads_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
