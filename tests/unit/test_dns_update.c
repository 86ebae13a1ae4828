/* Tests of DNS failover updates: settings validation, then RFC 2136 updates signed with TSIG
 * against a real BIND (named) started on a free loopback port, and killed by PID after. */
#include "common/common.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "common/fileutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "net/dns_update.h"

#define KEY_NAME "pgvigil-key"
#define SECRET "cGd2aWdpbC10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm"    /* 32 bytes */
#define WRONG_SECRET "d3JvbmctdGVzdC1rZXktMDEyMzQ1Njc4OWFiY2RlZmc="
#define KEY512_NAME "pgvigil-key512"
#define SECRET512 "c2hhNTEyLXRlc3Qta2V5LWZvci1wZ3ZpZ2lsLTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVm"

static struct {
    char dir[64];
    char server[32];        /* "127.0.0.1:<port>" */
    int port;
    pid_t pid;
} bind9;

/* A DnsConfig for record (relative to example.test.) claiming address. Strings are not owned. */
static DnsConfig cfg_for(const char *record, const char *address)
{
    static char name[8][128];
    static int next;
    char *rec = name[next++ % 8];
    str_fmt(rec, sizeof(name[0]), "%s.example.test.", record);
    DnsConfig c = {
        .server = bind9.server[0] ? bind9.server : (char *)"127.0.0.1:1",
        .zone = (char *)"example.test.",
        .record = rec,
        .address = (char *)address,
        .ttl = 5,
        .tsig_key_name = (char *)KEY_NAME,
        .tsig_secret = (char *)SECRET,
        .tsig_algorithm = (char *)"hmac-sha256",
        .timeout = 2,
    };
    return c;
}

/* ---- validation (no server needed) ---- */

static void expect_invalid(const DnsConfig *c, const char *want)
{
    Err err = {{0}};
    DnsUpdater *u = dns_updater_new(c, &err);
    if (u) {
        dns_updater_free(u);
        fail_msg("dns_updater_new accepted a config that should fail with \"%s\"", want);
    }
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
    if (c->tsig_secret && c->tsig_secret[0] && strstr(err.msg, c->tsig_secret))
        fail_msg("error \"%s\" shows the TSIG secret", err.msg);
    /* the synchronous entry points check the same way */
    bool pf = true;
    Err e2 = {{0}};
    assert_false(dns_update_once(c, NULL, "10.0.0.1", &pf, &e2));
    assert_false(pf);
    assert_non_null(strstr(e2.msg, want));
}

static void test_validation(void **state)
{
    DnsConfig ok = cfg_for("db", "10.0.0.2");
    Err err = {{0}};
    DnsUpdater *u = dns_updater_new(&ok, &err);
    if (!u)
        fail_msg("valid config rejected: %s", err.msg);
    dns_updater_free(u);
    dns_updater_free(NULL);

    DnsConfig c = ok;
    c.tsig_secret = (char *)"not*base64!";
    expect_invalid(&c, "dns.tsig_secret: not valid base64");
    c = ok;
    c.tsig_secret = NULL;
    expect_invalid(&c, "dns.tsig_secret: not set");
    c = ok;
    c.address = (char *)"foo";
    expect_invalid(&c, "dns.address: not an IP address: \"foo\"");
    c = ok;
    c.address = (char *)"10.0.0.256";
    expect_invalid(&c, "dns.address: not an IP address");
    c = ok;
    c.tsig_algorithm = (char *)"hmac-sha384";
    expect_invalid(&c, "dns.tsig_algorithm: unsupported \"hmac-sha384\"");
    c = ok;
    c.tsig_algorithm = (char *)"rot13";
    expect_invalid(&c, "dns.tsig_algorithm: unsupported");
    c = ok;
    c.server = (char *)"127.0.0.1";
    expect_invalid(&c, "dns.server:");
    c = ok;
    c.server = NULL;
    expect_invalid(&c, "dns.server: not set");
    c = ok;
    c.zone = NULL;
    expect_invalid(&c, "dns.zone: not set");
    c = ok;
    c.record = (char *)"db.other.test.";
    expect_invalid(&c, "dns.record: \"db.other.test.\" is not inside dns.zone \"example.test.\"");
    c = ok;
    c.tsig_key_name = (char *)"";
    expect_invalid(&c, "dns.tsig_key_name: not set");
    c = ok;
    c.ttl = -1;
    expect_invalid(&c, "dns.ttl");

    /* spellings that are fine: defaults, trailing dots, IPv6, upper case */
    c = ok;
    c.tsig_algorithm = NULL;
    c.timeout = 0;
    c.zone = (char *)"example.test";
    c.address = (char *)"2001:db8::5";
    u = dns_updater_new(&c, &err);
    if (!u)
        fail_msg("valid config rejected: %s", err.msg);
    dns_updater_free(u);
    c = ok;
    c.tsig_algorithm = (char *)"HMAC-SHA512.";
    u = dns_updater_new(&c, &err);
    if (!u)
        fail_msg("valid config rejected: %s", err.msg);
    dns_updater_free(u);
}

/* A fake server for one query: it first sends two decoys that are not the answer (another ID;
 * the right ID without the answer bit), both saying 127.0.0.66, then the answer, 127.0.0.9. */
typedef struct Spoofer {
    int fd;
} Spoofer;

static void *spoofer_main(void *arg)
{
    Spoofer *sp = arg;
    uint8_t q[512];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(sp->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
    if (n < 12)
        return NULL;
    uint8_t a[600];
    memcpy(a, q, (size_t)n);
    a[2] = 0x85;                /* QR, AA, RD */
    a[3] = 0x80;
    a[7] = 1;                   /* one answer, after the question */
    a[9] = a[11] = 0;
    size_t qend = 12;
    while (qend < (size_t)n && q[qend] != 0)
        qend += (size_t)q[qend] + 1;
    qend += 5;                  /* root label, type, class */
    static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 9};
    memcpy(a + qend, rr, sizeof(rr));
    size_t alen = qend + sizeof(rr);
    uint8_t other[600];
    memcpy(other, a, alen);
    other[alen - 1] = 66;       /* 127.0.0.66 in both decoys */
    other[1] ^= 0x5a;           /* another ID */
    sendto(sp->fd, other, alen, 0, (struct sockaddr *)&from, flen);
    memcpy(other, a, alen);
    other[alen - 1] = 66;
    other[2] &= 0x7f;           /* the right ID, but a query, not an answer */
    sendto(sp->fd, other, alen, 0, (struct sockaddr *)&from, flen);
    sendto(sp->fd, a, alen, 0, (struct sockaddr *)&from, flen);
    return NULL;
}

/* Datagrams that are not the answer to our query are ignored, not taken for it. */
static void test_ignores_other_answers(void **state)
{
    Spoofer sp = {.fd = socket(AF_INET, SOCK_DGRAM, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(sp.fd >= 0 && bind(sp.fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                getsockname(sp.fd, (struct sockaddr *)&a, &len) == 0);
    char server[32];
    str_fmt(server, sizeof(server), "127.0.0.1:%d", ntohs(a.sin_port));
    DnsConfig c = cfg_for("db", "10.0.0.2");
    c.server = server;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, spoofer_main, &sp), 0);
    char *addr = NULL;
    Err err = {{0}};
    bool ok = dns_query_addr(&c, false, &addr, &err);
    pthread_join(th, NULL);
    close(sp.fd);
    if (!ok)
        fail_msg("query: %s", err.msg);
    assert_non_null(addr);
    assert_string_equal(addr, "127.0.0.9");
    free(addr);
}

/* An updater can be claimed, cancelled and freed while its server never answers: free must
 * not wait out the network timeout. */
static void test_free_while_waiting(void **state)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);      /* swallows queries, never answers */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    char server[32];
    str_fmt(server, sizeof(server), "127.0.0.1:%d", ntohs(a.sin_port));
    DnsConfig c = cfg_for("db", "10.0.0.2");
    c.server = server;
    c.timeout = 5;
    Err err = {{0}};
    DnsUpdater *u = dns_updater_new(&c, &err);
    assert_non_null(u);
    dns_updater_claim(u);
    sleep_ms(200);
    assert_false(dns_updater_done(u));
    dns_updater_cancel(u);
    dns_updater_claim(u);
    sleep_ms(100);
    /* free interrupts the wait: it returns before the query's own timeout would have ended it
     * (an order of events; a bound in milliseconds would fail on a slow machine) */
    int64_t t0 = mono_ms();
    dns_updater_free(u);
    int64_t took = mono_ms() - t0;
    if (took >= c.timeout * 1000)
        fail_msg("dns_updater_free took %lld ms while the thread waited on the network: it waited out the %d s timeout",
                 (long long)took, c.timeout);
    close(fd);

    /* and the synchronous query reports the timeout, naming the server */
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    len = sizeof(a);
    a.sin_port = 0;
    assert_true(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    str_fmt(server, sizeof(server), "127.0.0.1:%d", ntohs(a.sin_port));
    c.timeout = 1;
    char *addr = NULL;
    assert_false(dns_query_addr(&c, false, &addr, &err));
    assert_null(addr);
    if (!strstr(err.msg, server) || !strstr(err.msg, "no answer within 1 s"))
        fail_msg("unexpected error: %s", err.msg);
    close(fd);
}

/* ---- a real named ---- */

static const char *named_bin(void)
{
    static const char *const cands[] = {"/usr/sbin/named", "/usr/local/sbin/named", "/usr/bin/named"};
    for (size_t i = 0; i < ARRAY_LEN(cands); i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

/* A port free for both UDP and TCP on 127.0.0.1 right now. */
static int free_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int port = 0;
        if (t >= 0 && u >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(t, (struct sockaddr *)&a, &len) == 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0)
            port = ntohs(a.sin_port);
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
        if (port > 0)
            return port;
    }
    return -1;
}

static void named_log_tail(void)
{
    char *path = str_printf("%s/named.log", bind9.dir);
    size_t len = 0;
    char *log = file_read_all(path, &len, NULL);
    if (log)
        fprintf(stderr, "---- named log (last 3000 bytes) ----\n%s\n", len > 3000 ? log + len - 3000 : log);
    free(log);
    free(path);
}

static int named_teardown(void **state)
{
    if (bind9.pid > 0) {
        kill(bind9.pid, SIGTERM);
        int64_t deadline = mono_ms() + 5000;
        while (waitpid(bind9.pid, NULL, WNOHANG) == 0) {
            if (mono_ms() > deadline) {
                kill(bind9.pid, SIGKILL);
                waitpid(bind9.pid, NULL, 0);
                break;
            }
            sleep_ms(20);
        }
        bind9.pid = 0;
    }
    if (bind9.dir[0]) {
        Err err = {{0}};
        if (!dir_remove_all(bind9.dir, &err))
            fprintf(stderr, "cannot remove %s: %s\n", bind9.dir, err.msg);
        bind9.dir[0] = '\0';
    }
    bind9.server[0] = '\0';
    return 0;
}

static bool write_text(const char *dir, const char *name, const char *text)
{
    char *path = str_printf("%s/%s", dir, name);
    Err err = {{0}};
    bool ok = file_write_atomic(path, text, strlen(text), 0644, &err);
    if (!ok)
        fprintf(stderr, "FAIL: %s\n", err.msg);
    free(path);
    return ok;
}

static int named_setup(void **state)
{
    memset(&bind9, 0, sizeof(bind9));
    const char *bin = named_bin();
    if (!bin) {
        fprintf(stderr, "FAIL: named not found (/usr/sbin/named): these tests need a real BIND 9 "
                        "(apt-get install bind9 bind9-utils bind9-dnsutils; see scripts/setup.sh)\n");
        return -1;
    }
    bind9.port = free_port();
    if (bind9.port <= 0) {
        fprintf(stderr, "FAIL: no free port on 127.0.0.1\n");
        return -1;
    }
    str_copy(bind9.dir, sizeof(bind9.dir), "/tmp/pgvigil-test-dns-XXXXXX");
    if (!mkdtemp(bind9.dir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        bind9.dir[0] = '\0';
        return -1;
    }
    /* named only drops privileges when given -u; run as whoever runs the tests */
    char *conf = str_printf(
        "options {\n"
        "  directory \"%1$s\";\n"
        "  listen-on port %2$d { 127.0.0.1; };\n"
        "  listen-on-v6 { none; };\n"
        "  pid-file \"%1$s/named.pid\";\n"
        "  session-keyfile \"%1$s/session.key\";\n"
        "  recursion no;\n"
        "  dnssec-validation no;\n"
        "  notify no;\n"
        "};\n"
        "controls { };\n"
        "key \"" KEY_NAME "\" { algorithm hmac-sha256; secret \"" SECRET "\"; };\n"
        "key \"" KEY512_NAME "\" { algorithm hmac-sha512; secret \"" SECRET512 "\"; };\n"
        "zone \"example.test\" {\n"
        "  type primary;\n"
        "  file \"%1$s/example.test.zone\";\n"
        "  update-policy { grant " KEY_NAME " zonesub ANY; grant " KEY512_NAME " zonesub ANY; };\n"
        "};\n",
        bind9.dir, bind9.port);
    /* big: more A records than fit a 512-byte UDP answer, so the query falls back to TCP */
    char *zone = str_printf("$TTL 60\n"
                            "@ IN SOA ns1.example.test. admin.example.test. 1 60 60 600 60\n"
                            "@ IN NS ns1.example.test.\n"
                            "ns1 IN A 127.0.0.1\n"
                            "multi IN A 10.2.0.1\n"
                            "multi IN A 10.2.0.2\n"
                            "multi IN A 10.2.0.3\n");
    for (int i = 1; i <= 60; i++) {
        char *z = str_printf("%sbig IN A 10.1.0.%d\n", zone, i);
        free(zone);
        zone = z;
    }
    bool wrote = write_text(bind9.dir, "named.conf", conf) && write_text(bind9.dir, "example.test.zone", zone);
    free(conf);
    free(zone);
    if (!wrote) {
        named_teardown(state);
        return -1;
    }
    str_fmt(bind9.server, sizeof(bind9.server), "127.0.0.1:%d", bind9.port);

    char *confpath = str_printf("%s/named.conf", bind9.dir);
    char *logpath = str_printf("%s/named.log", bind9.dir);
    /* -g: foreground, log to stderr; -n 1: one worker is plenty */
    char *argv[] = {(char *)bin, "-g", "-n", "1", "-c", confpath, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);         /* dies with the test even if it crashes */
        if (getppid() != parent)
            _exit(1);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, argv);
        _exit(127);
    }
    free(confpath);
    free(logpath);
    if (pid < 0) {
        fprintf(stderr, "FAIL: fork: %s\n", strerror(errno));
        named_teardown(state);
        return -1;
    }
    bind9.pid = pid;

    DnsConfig probe = cfg_for("ns1", "127.0.0.1");
    probe.timeout = 1;
    Err err = {{0}};
    for (int64_t deadline = mono_ms() + 15000; mono_ms() < deadline; sleep_ms(100)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            bind9.pid = 0;
            fprintf(stderr, "FAIL: named exited during startup (status %d)\n", status);
            named_log_tail();
            named_teardown(state);
            return -1;
        }
        char *addr = NULL;
        bool up = dns_query_addr(&probe, false, &addr, &err) && addr && strcmp(addr, "127.0.0.1") == 0;
        free(addr);
        if (up)
            return 0;
    }
    fprintf(stderr, "FAIL: named did not answer on %s within 15 s: %s\n", bind9.server, err.msg);
    named_log_tail();
    named_teardown(state);
    return -1;
}

/* The record's value (or NULL) as our own query sees it; the test fails on a query error. */
static char *current(const DnsConfig *c, bool v6)
{
    char *addr = NULL;
    Err err = {{0}};
    if (!dns_query_addr(c, v6, &addr, &err))
        fail_msg("dns_query_addr(%s): %s", c->record, err.msg);
    return addr;
}

static void assert_current(const DnsConfig *c, bool v6, const char *want)
{
    char *got = current(c, v6);
    if (want == NULL ? got != NULL : got == NULL || strcmp(got, want) != 0) {
        char msg[256];
        str_fmt(msg, sizeof(msg), "%s %s is %s, expected %s", c->record, v6 ? "AAAA" : "A",
                got ? got : "(none)", want ? want : "(none)");
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
}

static void update_ok(const DnsConfig *c, const char *old_addr, const char *new_addr)
{
    bool pf = true;
    Err err = {{0}};
    if (!dns_update_once(c, old_addr, new_addr, &pf, &err))
        fail_msg("update %s %s -> %s: %s", c->record, old_addr ? old_addr : "(none)", new_addr, err.msg);
    assert_false(pf);
}

static void test_create_and_query(void **state)
{
    DnsConfig c = cfg_for("new", "10.0.0.1");
    assert_current(&c, false, NULL);
    update_ok(&c, NULL, "10.0.0.1");
    assert_current(&c, false, "10.0.0.1");
    assert_current(&c, true, NULL);

    /* and BIND itself serves it (dig is a client we did not write) */
    char *cmd = str_printf("dig @127.0.0.1 -p %d +short +time=2 +tries=1 new.example.test A 2>&1", bind9.port);
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    char line[256] = "";
    if (!fgets(line, sizeof(line), p))
        line[0] = '\0';
    int rc = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (rc != 0 || strcmp(line, "10.0.0.1") != 0)
        fail_msg("dig: exit %d, output \"%s\" (expected 10.0.0.1)", rc, line);
}

static void test_replace(void **state)
{
    DnsConfig c = cfg_for("swap", "10.0.0.2");
    update_ok(&c, NULL, "10.0.0.1");
    update_ok(&c, "10.0.0.1", "10.0.0.2");
    assert_current(&c, false, "10.0.0.2");
    update_ok(&c, "10.0.0.2", "10.0.0.2");      /* same value: still fine */
    assert_current(&c, false, "10.0.0.2");
}

static void test_prereq_failed(void **state)
{
    DnsConfig c = cfg_for("race", "10.0.0.3");
    update_ok(&c, NULL, "10.0.0.1");

    bool pf = false;
    Err err = {{0}};
    assert_false(dns_update_once(&c, "10.0.0.9", "10.0.0.3", &pf, &err));
    assert_true(pf);
    if (!strstr(err.msg, "NXRRSET"))
        fail_msg("unexpected error: %s", err.msg);
    assert_current(&c, false, "10.0.0.1");

    /* "does not exist" while it does */
    pf = false;
    assert_false(dns_update_once(&c, NULL, "10.0.0.3", &pf, &err));
    assert_true(pf);
    if (!strstr(err.msg, "YXRRSET"))
        fail_msg("unexpected error: %s", err.msg);
    assert_current(&c, false, "10.0.0.1");
}

static void test_wrong_secret(void **state)
{
    DnsConfig c = cfg_for("auth", "10.0.0.2");
    update_ok(&c, NULL, "10.0.0.1");
    c.tsig_secret = (char *)WRONG_SECRET;
    bool pf = true;
    Err err = {{0}};
    assert_false(dns_update_once(&c, "10.0.0.1", "10.0.0.2", &pf, &err));
    assert_false(pf);
    char want[128];
    str_fmt(want, sizeof(want), "dns.server %s: update of auth.example.test. refused: NOTAUTH", bind9.server);
    if (!strstr(err.msg, want) || !strstr(err.msg, "TSIG key rejected?"))
        fail_msg("unexpected error: %s", err.msg);
    assert_null(strstr(err.msg, WRONG_SECRET));

    /* an unknown key name is refused the same way */
    c.tsig_secret = (char *)SECRET;
    c.tsig_key_name = (char *)"nobody-key";
    assert_false(dns_update_once(&c, "10.0.0.1", "10.0.0.2", &pf, &err));
    assert_false(pf);
    if (!strstr(err.msg, "refused: NOTAUTH"))
        fail_msg("unexpected error: %s", err.msg);
    c.tsig_key_name = (char *)KEY_NAME;
    assert_current(&c, false, "10.0.0.1");
}

static void test_hmac_sha512(void **state)
{
    DnsConfig c = cfg_for("sha512", "10.0.5.12");
    c.tsig_key_name = (char *)KEY512_NAME;
    c.tsig_secret = (char *)SECRET512;
    c.tsig_algorithm = (char *)"hmac-sha512";
    update_ok(&c, NULL, "10.0.5.12");
    assert_current(&c, false, "10.0.5.12");
}

static void test_aaaa(void **state)
{
    DnsConfig c = cfg_for("v6", "2001:db8::2");
    update_ok(&c, NULL, "10.0.6.1");            /* an A record beside it is left alone */
    update_ok(&c, NULL, "2001:db8::1");
    assert_current(&c, true, "2001:db8::1");
    update_ok(&c, "2001:0db8:0::1", "2001:db8::2");
    assert_current(&c, true, "2001:db8::2");
    assert_current(&c, false, "10.0.6.1");

    bool pf = false;
    Err err = {{0}};
    assert_false(dns_update_once(&c, "2001:db8::99", "2001:db8::3", &pf, &err));
    assert_true(pf);
    assert_current(&c, true, "2001:db8::2");
}

/* An answer larger than 512 bytes comes back truncated over UDP and is fetched over TCP. */
static void test_tcp_fallback(void **state)
{
    DnsConfig c = cfg_for("big", "10.0.0.1");
    char *got = current(&c, false);
    bool ok = got && strncmp(got, "10.1.0.", 7) == 0;
    if (!ok)
        fail_msg("big.example.test. A is %s, expected one of 10.1.0.*", got ? got : "(none)");
    free(got);
}

static bool wait_done(DnsUpdater *u, int ms)
{
    for (int64_t deadline = mono_ms() + ms; mono_ms() < deadline; sleep_ms(20))
        if (dns_updater_done(u))
            return true;
    return dns_updater_done(u);
}

static void test_updater(void **state)
{
    DnsConfig other = cfg_for("thread", "10.0.0.1");
    update_ok(&other, NULL, "10.0.0.1");          /* the old primary's value */

    DnsConfig c = cfg_for("thread", "10.0.0.2");
    Err err = {{0}};
    DnsUpdater *u = dns_updater_new(&c, &err);
    assert_non_null(u);
    assert_false(dns_updater_done(u));
    dns_updater_claim(u);
    if (!wait_done(u, 5000))
        fail_msg("the claim was not done within 5 s");
    assert_current(&c, false, "10.0.0.2");
    dns_updater_claim(u);                         /* no-op while done */
    assert_true(dns_updater_done(u));

    /* someone else takes it; a new claim after cancel takes it back */
    dns_updater_cancel(u);
    assert_false(dns_updater_done(u));
    update_ok(&other, "10.0.0.2", "10.0.0.1");
    dns_updater_claim(u);
    if (!wait_done(u, 5000))
        fail_msg("the second claim was not done within 5 s");
    assert_current(&c, false, "10.0.0.2");
    dns_updater_free(u);

    /* a record already naming us, and an RRset of several values */
    u = dns_updater_new(&c, &err);
    assert_non_null(u);
    dns_updater_claim(u);
    assert_true(wait_done(u, 5000));
    dns_updater_free(u);
    DnsConfig m = cfg_for("multi", "10.2.0.9");
    u = dns_updater_new(&m, &err);
    assert_non_null(u);
    dns_updater_claim(u);
    assert_true(wait_done(u, 5000));
    dns_updater_free(u);
    assert_current(&m, false, "10.2.0.9");

    /* IPv6 through the thread */
    DnsConfig v6 = cfg_for("thread6", "2001:db8::7");
    u = dns_updater_new(&v6, &err);
    assert_non_null(u);
    dns_updater_claim(u);
    assert_true(wait_done(u, 5000));
    dns_updater_free(u);
    assert_current(&v6, true, "2001:db8::7");
}

/* A wrong key keeps failing (retried with backoff) until the thread is freed. */
static void test_updater_keeps_failing(void **state)
{
    DnsConfig c = cfg_for("stuck", "10.0.0.2");
    c.tsig_secret = (char *)WRONG_SECRET;
    Err err = {{0}};
    DnsUpdater *u = dns_updater_new(&c, &err);
    assert_non_null(u);
    LogLevel saved = log_min_level;
    log_set_level(LOG_ERROR);                     /* the expected warnings */
    dns_updater_claim(u);
    /* by now the thread failed at about 0, 0.5, 1.5 and 3.5 s, and waits 4 s before its next
     * try: free must not wait that out. A bound that is the point (an agent's shutdown), listed
     * in the README */
    assert_false(wait_done(u, 4500));
    int64_t t0 = mono_ms();
    dns_updater_free(u);
    log_set_level(saved);
    assert_true(mono_ms() - t0 < 1000);
    assert_current(&c, false, NULL);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_free_while_waiting),
        cmocka_unit_test(test_ignores_other_answers),
    };
    const struct CMUnitTest with_named[] = {
        cmocka_unit_test(test_create_and_query),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_prereq_failed),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_hmac_sha512),
        cmocka_unit_test(test_aaaa),
        cmocka_unit_test(test_tcp_fallback),
        cmocka_unit_test(test_updater),
        cmocka_unit_test(test_updater_keeps_failing),
    };
    log_set_level(LOG_WARN);
    int fails = cmocka_run_group_tests_name("dns offline", offline, NULL, NULL);
    fails += cmocka_run_group_tests_name("dns with named", with_named, named_setup, named_teardown);
    return fails ? 1 : 0;
}
