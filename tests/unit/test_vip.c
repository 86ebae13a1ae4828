/* Floating IP (net/vip.c) and the fence's removal of it (ha/fence.c). Validation runs in the
 * test process; the network tests run in a forked child moved to a fresh network namespace with
 * a veth pair, which reports through its exit code and a pipe so every assertion stays here. */
#include "common/common.h"
#include "common/timeutil.h"
#include "ha/fence.h"
#include "net/vip.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#define SKIP_CODE 77
#define TEST_VIP "192.0.2.10"

static void test_config_errors(void **state)
{
    (void)state;
    static const struct { const char *addr, *ifname; int arp; const char *msg; } rows[] = {
        {"10.0.0", "eth0", 3, "vip.address: invalid IPv4 address \"10.0.0\""},
        {"10.0.0/24", "eth0", 3, "vip.address: invalid IPv4 address \"10.0.0\""},
        {"10.0.0.256", "eth0", 3, "vip.address: invalid IPv4 address \"10.0.0.256\""},
        {"fe80::1/64", "eth0", 3, "vip.address: invalid IPv4 address \"fe80::1\""},
        {"/24", "eth0", 3, "vip.address: invalid IPv4 address \"/24\""},
        {"", "eth0", 3, "vip.address: required"},
        {NULL, "eth0", 3, "vip.address: required"},
        {"10.0.0.1/33", "eth0", 3, "vip.address: invalid prefix length \"33\" in \"10.0.0.1/33\" (expected 1 to 32)"},
        {"10.0.0.1/", "eth0", 3, "vip.address: invalid prefix length \"\" in \"10.0.0.1/\" (expected 1 to 32)"},
        {"10.0.0.1/0", "eth0", 3, "vip.address: invalid prefix length \"0\" in \"10.0.0.1/0\" (expected 1 to 32)"},
        {"10.0.0.1/2x", "eth0", 3, "vip.address: invalid prefix length \"2x\" in \"10.0.0.1/2x\" (expected 1 to 32)"},
        {"10.0.0.1/-8", "eth0", 3, "vip.address: invalid prefix length \"-8\" in \"10.0.0.1/-8\" (expected 1 to 32)"},
        {"127.0.0.5/8", "lo", 3, "vip.address: \"127.0.0.5\" is not a unicast address"},
        {"224.0.0.1", "eth0", 3, "vip.address: \"224.0.0.1\" is not a unicast address"},
        {"0.0.0.0/8", "eth0", 3, "vip.address: \"0.0.0.0\" is not a unicast address"},
        {"10.0.0.1/24", NULL, 3, "vip.interface: required when vip.address is set"},
        {"10.0.0.1/24", "", 3, "vip.interface: required when vip.address is set"},
        {"10.0.0.1/24", "a-very-long-interface", 3, "vip.interface: invalid interface name \"a-very-long-interface\""},
        {"10.0.0.1/24", "eth0:1", 3, "vip.interface: invalid interface name \"eth0:1\""},
        {"10.0.0.1/24", "a/b", 3, "vip.interface: invalid interface name \"a/b\""},
        {"10.0.0.1/24", "eth0", -1, "vip.arp_count: must not be negative"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        VipConfig c = {.address = (char *)rows[i].addr, .interface = (char *)rows[i].ifname, .arp_count = rows[i].arp};
        Err err = {{0}};
        Vip *v = vip_new(&c, &err);
        if (v)
            fail_msg("row %zu (%s on %s) accepted", i, rows[i].addr ? rows[i].addr : "NULL", rows[i].ifname ? rows[i].ifname : "NULL");
        assert_string_equal(err.msg, rows[i].msg);
    }
}

static void test_describe(void **state)
{
    (void)state;
    static const struct { const char *addr, *desc; } rows[] = {
        {"192.0.2.10/24", "192.0.2.10/24 on eth0"},
        {"192.0.2.10", "192.0.2.10/32 on eth0"},
        {"10.1.2.3/32", "10.1.2.3/32 on eth0"},
        {"10.1.2.3/8", "10.1.2.3/8 on eth0"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        VipConfig c = {.address = (char *)rows[i].addr, .interface = "eth0", .arp_count = 3};
        Err err = {{0}};
        Vip *v = vip_new(&c, &err);
        assert_non_null(v);
        assert_string_equal(vip_describe(v), rows[i].desc);
        vip_free(v);
    }
    vip_free(NULL);
}

/* a missing interface: add fails naming it; remove has nothing to do; not present */
static void test_no_such_interface(void **state)
{
    (void)state;
    VipConfig c = {.address = TEST_VIP "/24", .interface = "pgvnosuch0", .arp_count = 3};
    Err err = {{0}};
    Vip *v = vip_new(&c, &err);
    assert_non_null(v);
    bool changed = true;
    assert_false(vip_add(v, &changed, &err));
    assert_false(changed);
    assert_string_equal(err.msg, "vip.interface: no such interface \"pgvnosuch0\"");
    changed = true;
    assert_true(vip_remove(v, &changed, &err));
    assert_false(changed);
    assert_false(vip_present(v));
    vip_free(v);
}

/* ---- network namespace child ------------------------------------------------------------ */

static int report_fd = -1;

/* child side: explain the failure on the pipe, exit with the step number */
static void child_fail(int step, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void child_fail(int step, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n > 0) {
        ssize_t w = write(report_fd, msg, strlen(msg));
        (void)w;
    }
    _exit(step);
}

#define CHECK(step, cond, ...) do { if (!(cond)) child_fail(step, __VA_ARGS__); } while (0)

/* The child enters a new network namespace, where it may create links freely. */
static void child_enter_netns(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        _exit(SKIP_CODE);
    if (system("ip link add vt0 type veth peer name vt1 >/dev/null 2>&1 && ip link set vt0 up && "
               "ip link set vt1 up && ip link set lo up") != 0)
        child_fail(1, "cannot create the veth pair vt0/vt1 in the namespace");
}

/* `ip -o -4 addr show dev IFNAME` contains "inet ADDR " */
static bool ip_shows(const char *ifname, const char *addr)
{
    char cmd[128], want[64], line[512];
    str_fmt(cmd, sizeof(cmd), "ip -o -4 addr show dev %s", ifname);
    str_fmt(want, sizeof(want), "inet %s ", addr);
    FILE *p = popen(cmd, "r");
    if (!p)
        return false;
    bool found = false;
    while (fgets(line, sizeof(line), p))
        if (strstr(line, want))
            found = true;
    pclose(p);
    return found;
}

static int arp_listener(const char *ifname)
{
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_ARP));
    if (fd < 0)
        return -1;
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP),
                              .sll_ifindex = (int)if_nametoindex(ifname)};
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool if_mac(const char *ifname, unsigned char mac[ETH_ALEN])
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    str_copy(ifr.ifr_name, sizeof(ifr.ifr_name), ifname);
    bool ok = fd >= 0 && ioctl(fd, SIOCGIFHWADDR, &ifr) == 0;
    if (ok)
        memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Gratuitous ARPs for ip seen on fd within wait_ms (stops early once want are seen); each one
 * must be a broadcast request with sender IP = target IP = ip from mac. */
static int count_garps(int fd, const char *ip, const unsigned char mac[ETH_ALEN], int want, int wait_ms, char *bad,
                       size_t badsz)
{
    struct in_addr a;
    inet_pton(AF_INET, ip, &a);
    int seen = 0;
    int64_t deadline = mono_ms() + wait_ms;
    bad[0] = '\0';
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0 || seen >= want)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        unsigned char buf[256];
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 28)
            continue;
        const struct arphdr *h = (const struct arphdr *)buf;
        const unsigned char *sha = buf + 8, *spa = buf + 14, *tpa = buf + 24;
        if (memcmp(spa, &a, 4) != 0)
            continue;
        if (ntohs(h->ar_op) != ARPOP_REQUEST || memcmp(tpa, &a, 4) != 0 || memcmp(sha, mac, ETH_ALEN) != 0 ||
            from.sll_pkttype != PACKET_BROADCAST)
            str_fmt(bad, badsz, "a malformed gratuitous ARP: op %d, pkttype %d", ntohs(h->ar_op), from.sll_pkttype);
        else
            seen++;
    }
    return seen;
}

static void drain(int fd)
{
    unsigned char buf[256];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

static void child_add_remove(void)
{
    child_enter_netns();
    int lfd = arp_listener("vt1");
    CHECK(2, lfd >= 0, "cannot listen for ARP on vt1: %s", strerror(errno));
    unsigned char mac[ETH_ALEN];
    CHECK(3, if_mac("vt0", mac), "cannot read the MAC of vt0");

    VipConfig c = {.address = TEST_VIP "/24", .interface = "vt0", .arp_count = 3};
    Err err = {{0}};
    Vip *v = vip_new(&c, &err);
    CHECK(4, v, "vip_new: %s", err.msg);
    CHECK(5, !vip_present(v), "present before the add");
    CHECK(5, !ip_shows("vt0", TEST_VIP "/24"), "ip shows the address before the add");

    bool changed = false;
    int64_t t0 = mono_ms();
    CHECK(6, vip_add(v, &changed, &err), "first add: %s", err.msg);
    int64_t took = mono_ms() - t0;
    CHECK(6, changed, "first add: added=false");
    /* a bound that is the point: the agent adds the VIP inside its tick, so the add and its ARPs
     * must not wait (listed in the README) */
    CHECK(6, took < 500, "vip_add took %lld ms", (long long)took);
    CHECK(7, vip_present(v), "not present after the add");
    CHECK(7, ip_shows("vt0", TEST_VIP "/24"), "ip does not show " TEST_VIP "/24 on vt0 after the add");

    char bad[128];
    int n = count_garps(lfd, TEST_VIP, mac, 3, 2000, bad, sizeof(bad));
    CHECK(8, bad[0] == '\0', "%s", bad);
    CHECK(8, n == 3, "%d gratuitous ARPs seen on the peer, expected 3", n);

    changed = true;
    CHECK(9, vip_add(v, &changed, &err), "second add: %s", err.msg);
    CHECK(9, !changed, "second add: added=true");
    CHECK(9, vip_present(v), "not present after the second add");
    n = count_garps(lfd, TEST_VIP, mac, 1, 300, bad, sizeof(bad));
    CHECK(9, n == 0, "%d gratuitous ARPs after an add of a present address", n);

    changed = false;
    CHECK(10, vip_remove(v, &changed, &err), "remove: %s", err.msg);
    CHECK(10, changed, "remove: removed=false");
    CHECK(11, !vip_present(v), "present after the remove");
    CHECK(11, !ip_shows("vt0", TEST_VIP "/24"), "ip shows the address after the remove");
    changed = true;
    CHECK(12, vip_remove(v, &changed, &err), "second remove: %s", err.msg);
    CHECK(12, !changed, "second remove: removed=true");

    /* the same address with another prefix is another address: not ours to report or remove */
    CHECK(13, system("ip addr add " TEST_VIP "/32 dev vt0") == 0, "ip addr add /32 failed");
    CHECK(13, !vip_present(v), "a /32 counted as our /24");
    CHECK(13, vip_remove(v, &changed, &err) && !changed, "remove touched the /32");
    CHECK(13, ip_shows("vt0", TEST_VIP "/32"), "the /32 is gone");
    CHECK(13, system("ip addr del " TEST_VIP "/32 dev vt0") == 0, "ip addr del /32 failed");

    /* arp_count 0: added silently */
    VipConfig c0 = {.address = TEST_VIP "/24", .interface = "vt0", .arp_count = 0};
    Vip *v0 = vip_new(&c0, &err);
    CHECK(14, v0, "vip_new: %s", err.msg);
    drain(lfd);
    CHECK(14, vip_add(v0, &changed, &err) && changed, "add with arp_count 0: %s", err.msg);
    n = count_garps(lfd, TEST_VIP, mac, 1, 300, bad, sizeof(bad));
    CHECK(14, n == 0, "%d gratuitous ARPs with arp_count 0", n);
    CHECK(14, vip_remove(v0, &changed, &err) && changed, "remove: %s", err.msg);
    vip_free(v0);

    /* an interface that is down: the address is added, no ARP, no error */
    CHECK(15, system("ip link set vt0 down") == 0, "ip link set vt0 down failed");
    CHECK(15, vip_add(v, &changed, &err) && changed, "add on a down interface: %s", err.msg);
    CHECK(15, vip_present(v), "not present after an add on a down interface");
    CHECK(15, vip_remove(v, &changed, &err) && changed, "remove on a down interface: %s", err.msg);

    /* the interface goes away: add names it, remove has nothing to do */
    CHECK(16, system("ip link del vt0") == 0, "ip link del vt0 failed");
    CHECK(16, !vip_add(v, &changed, &err), "add on a deleted interface succeeded");
    CHECK(16, strcmp(err.msg, "vip.interface: no such interface \"vt0\"") == 0, "add error: %s", err.msg);
    CHECK(16, vip_remove(v, &changed, &err) && !changed, "remove on a deleted interface: %s", err.msg);

    vip_free(v);
    close(lfd);
    _exit(0);
}

/* The fence removes the VIP when its deadline passes (postgres: a data dir without a server). */
static void child_fence(void)
{
    child_enter_netns();
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
        dup2(devnull, STDERR_FILENO); /* the fence logs what it does; failures come through the pipe */
    VipConfig c = {.address = TEST_VIP "/24", .interface = "vt0", .arp_count = 1};
    Err err = {{0}};
    Vip *v = vip_new(&c, &err);
    CHECK(20, v, "vip_new: %s", err.msg);

    /* the fence is `pgvigil fence`: the binary built beside this test (BUILD/tests/..) */
    static char prog[4096];
    ssize_t pn = readlink("/proc/self/exe", prog, sizeof(prog) - 20);
    CHECK(20, pn > 0, "readlink /proc/self/exe");
    prog[pn] = '\0';
    char *slash = strrchr(prog, '/');
    CHECK(20, slash, "no directory in %s", prog);
    str_copy(slash, sizeof(prog) - (size_t)(slash - prog), "/../pgvigil");
    CHECK(20, access(prog, X_OK) == 0, "%s is not built (make all / make asan)", prog);
    fence_set_program(prog);

    /* a bad VIP is refused before anything is forked */
    Fence f = {.fd = -1};
    VipConfig badc = {.address = "10.0.0", .interface = "vt0", .arp_count = 1};
    CHECK(21, !fence_start(&f, "test", "/nonexistent/pgvigil-test", &badc, &err), "fence_start took a bad vip");
    CHECK(21, strcmp(err.msg, "vip.address: invalid IPv4 address \"10.0.0\"") == 0, "fence_start error: %s", err.msg);

    /* armed then stopped cleanly: the VIP stays */
    bool changed;
    CHECK(22, vip_add(v, &changed, &err), "add: %s", err.msg);
    CHECK(22, fence_start(&f, "test", "/nonexistent/pgvigil-test", &c, &err), "fence_start: %s", err.msg);
    fence_arm(&f, mono_ms() + 60000);
    fence_stop(&f);
    int st;
    CHECK(22, waitpid(f.pid, &st, 0) == f.pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "fence exit status %d", st);
    CHECK(22, vip_present(v), "a clean fence_stop removed the VIP");

    /* the deadline passes: the VIP goes */
    fence_free(&f);
    CHECK(23, fence_start(&f, "test", "/nonexistent/pgvigil-test", &c, &err), "fence_start: %s", err.msg);
    int64_t t0 = mono_ms();
    fence_arm(&f, t0 + 200);
    while (vip_present(v) && mono_ms() - t0 < 5000)
        sleep_ms(20);
    CHECK(23, !vip_present(v), "the VIP is still there 5 s after the fence deadline");
    CHECK(23, mono_ms() - t0 >= 200, "the VIP went before the deadline");
    /* the agent re-adds it and renews: the fence keeps running and leaves it alone */
    CHECK(24, vip_add(v, &changed, &err) && changed, "re-add: %s", err.msg);
    fence_arm(&f, mono_ms() + 60000);
    sleep_ms(300);
    CHECK(24, vip_present(v), "the fence removed the VIP before its new deadline");

    /* the agent dies (the pipe closes without the exit message): the VIP goes at once, not at
     * the deadline a minute away (when the fence would stop postgres and exit). An order of
     * events: gone well before that deadline (a bound of a few seconds would be one a slow
     * machine, valgrind, can fail) */
    close(f.fd);
    t0 = mono_ms();
    while (vip_present(v) && mono_ms() - t0 < 30000)
        sleep_ms(20);
    CHECK(25, !vip_present(v), "the VIP outlived its agent by 30 s (its fence deadline was 60 s away)");
    kill(f.pid, SIGKILL);
    CHECK(25, waitpid(f.pid, &st, 0) == f.pid, "waitpid on the fence");
    fence_free(&f);

    vip_free(v);
    _exit(0);
}

/* Run fn in a forked child; assert it exited 0 (or skip when namespaces are unavailable). */
static void run_in_child(void (*fn)(void))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        report_fd = p[1];
        fn();
        _exit(99);
    }
    close(p[1]);
    char msg[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(msg) - 1 && (n = read(p[0], msg + len, sizeof(msg) - 1 - len)) > 0)
        len += (size_t)n;
    msg[len] = '\0';
    close(p[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_CODE) {
        print_message("skipped: cannot create a network namespace (needs root)\n");
        skip();
    }
    if (!WIFEXITED(st))
        fail_msg("child killed by signal %d", WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("child failed at step %d: %s", WEXITSTATUS(st), msg);
}

static void test_netns_add_remove(void **state)
{
    (void)state;
    run_in_child(child_add_remove);
}

static void test_netns_fence(void **state)
{
    (void)state;
    run_in_child(child_fence);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_no_such_interface),
        cmocka_unit_test(test_netns_add_remove),
        cmocka_unit_test(test_netns_fence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
