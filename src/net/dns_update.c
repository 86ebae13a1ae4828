/* DNS failover: RFC 2136 UPDATE messages built and TSIG-signed with ldns, sent over UDP (TCP
 * when truncated) with a deadline, and the background thread that claims the record. */
#include "common/common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/base64.h"
#include "net/dns_update.h"

#define DNS_TSIG_FUDGE 300          /* seconds of clock skew the server accepts */
#define DNS_DEFAULT_TIMEOUT 2
#define DNS_MAX_MSG 65535
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 10000

/* ---- validated settings ---- */

/* TSIG algorithms ldns 1.8 can compute. XXX: ldns 1.8.3 misspells hmac-sha384 ("hmac-shac384.")
 * and has no hmac-sha224, so those two cannot be offered. */
static const struct {
    const char *name;       /* as written in the config (and in named.conf) */
    const char *wire;       /* algorithm domain name ldns matches */
} tsig_algs[] = {
    {"hmac-sha256", "hmac-sha256."},
    {"hmac-sha512", "hmac-sha512."},
    {"hmac-sha1", "hmac-sha1."},
    {"hmac-md5", "hmac-md5.sig-alg.reg.int."},
};

typedef struct DnsTarget {
    char *host;             /* dns.server without the port (no brackets) */
    int port;
    const char *alg;        /* entry of tsig_algs[].wire */
    bool v6;                /* dns.address is IPv6: the record is AAAA */
    unsigned char addr[16]; /* dns.address in binary */
    int timeout_ms;
} DnsTarget;

static void target_clear(DnsTarget *t) { FREE_AND_NULL(t->host); }

static bool parse_ip(const char *s, bool *v6, unsigned char out[16])
{
    if (!s)
        return false;
    if (inet_pton(AF_INET, s, out) == 1) {
        *v6 = false;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *v6 = true;
        return true;
    }
    return false;
}

/* A domain name ldns accepts; the result is freed here (callers only need the check). */
static bool valid_dname(const char *s)
{
    if (str_empty(s))
        return false;
    ldns_rdf *d = ldns_dname_new_frm_str(s);
    if (!d)
        return false;
    ldns_rdf_deep_free(d);
    return true;
}

/* Check every setting and fill t (t->host is malloc'd; target_clear frees it). The
 * message names the key; the secret itself never appears in it. */
static bool target_init(const DnsConfig *cfg, DnsTarget *t, Err *err)
{
    memset(t, 0, sizeof(*t));
    Err e = {{0}};
    if (str_empty(cfg->server)) {
        err_set(err, "dns.server: not set");
        return false;
    }
    if (!config_split_hostport(cfg->server, &t->host, &t->port, &e)) {
        err_set(err, "dns.server: %s", e.msg);
        return false;
    }
    if (!valid_dname(cfg->zone)) {
        err_set(err, "dns.zone: %s", str_empty(cfg->zone) ? "not set" : "not a valid domain name");
        goto fail;
    }
    if (!valid_dname(cfg->record)) {
        err_set(err, "dns.record: %s", str_empty(cfg->record) ? "not set" : "not a valid domain name");
        goto fail;
    }
    ldns_rdf *zone = ldns_dname_new_frm_str(cfg->zone);
    ldns_rdf *rec = ldns_dname_new_frm_str(cfg->record);
    bool inside = ldns_dname_compare(rec, zone) == 0 || ldns_dname_is_subdomain(rec, zone);
    ldns_rdf_deep_free(zone);
    ldns_rdf_deep_free(rec);
    if (!inside) {
        err_set(err, "dns.record: \"%s\" is not inside dns.zone \"%s\"", cfg->record, cfg->zone);
        goto fail;
    }
    if (str_empty(cfg->address)) {
        err_set(err, "dns.address: not set (and no postgresql.connect_address to default to)");
        goto fail;
    }
    if (!parse_ip(cfg->address, &t->v6, t->addr)) {
        err_set(err, "dns.address: not an IP address: \"%s\"", cfg->address);
        goto fail;
    }
    if (cfg->ttl < 0) {
        err_set(err, "dns.ttl: must not be negative");
        goto fail;
    }
    if (cfg->timeout < 0) {
        err_set(err, "dns.timeout: must be positive");
        goto fail;
    }
    t->timeout_ms = (cfg->timeout > 0 ? cfg->timeout : DNS_DEFAULT_TIMEOUT) * 1000;
    if (!valid_dname(cfg->tsig_key_name)) {
        err_set(err, "dns.tsig_key_name: %s",
                str_empty(cfg->tsig_key_name) ? "not set" : "not a valid domain name");
        goto fail;
    }
    size_t keylen = 0;
    char *key = str_empty(cfg->tsig_secret) ? NULL : base64_decode(cfg->tsig_secret, &keylen);
    bool key_ok = key && keylen > 0;
    if (key) {
        memset(key, 0, keylen);
        free(key);
    }
    if (!key_ok) {
        err_set(err, "dns.tsig_secret: %s", str_empty(cfg->tsig_secret) ? "not set" : "not valid base64");
        goto fail;
    }
    const char *alg = str_empty(cfg->tsig_algorithm) ? "hmac-sha256" : cfg->tsig_algorithm;
    size_t alen = strlen(alg);
    if (alen > 0 && alg[alen - 1] == '.')
        alen--;                 /* "hmac-sha256." is the same name */
    for (size_t i = 0; i < ARRAY_LEN(tsig_algs) && !t->alg; i++)
        if (strlen(tsig_algs[i].name) == alen && strncasecmp(alg, tsig_algs[i].name, alen) == 0)
            t->alg = tsig_algs[i].wire;
    if (!t->alg && strcasecmp(alg, "hmac-md5.sig-alg.reg.int") == 0)
        t->alg = tsig_algs[3].wire;
    if (!t->alg) {
        err_set(err, "dns.tsig_algorithm: unsupported \"%s\" (expected hmac-sha256, hmac-sha512, "
                "hmac-sha1 or hmac-md5)", alg);
        goto fail;
    }
    return true;
fail:
    target_clear(t);
    return false;
}

/* ---- transport ---- */

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    return left > 0 ? (int)left : 0;
}

/* Wait until fd is ready for events, the deadline passes (0) or abort_fd fires (-1). */
static int wait_fd(int fd, short events, int64_t deadline, int abort_fd)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = abort_fd, .events = POLLIN}};
        int left = remaining_ms(deadline);
        if (left == 0)
            return 0;
        int n = poll(p, abort_fd >= 0 ? 2 : 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (abort_fd >= 0 && (p[1].revents & POLLIN)) {
            errno = ECANCELED;
            return -1;
        }
        if (n > 0)
            return 1;
    }
}

/* Is buf an answer to the message with this id? */
static bool is_reply(const uint8_t *buf, size_t len, uint16_t id)
{
    return len >= LDNS_HEADER_SIZE && LDNS_ID_WIRE(buf) == id && LDNS_QR_WIRE(buf);
}

static bool udp_exchange(const struct addrinfo *ai, const uint8_t *q, size_t qlen, uint16_t id,
                         int64_t deadline, int abort_fd, uint8_t *buf, size_t *len, const char *what,
                         int timeout_ms, Err *err)
{
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err_set(err, "%s: socket: %s", what, strerror(errno));
        return false;
    }
    bool ok = false;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 || send(fd, q, qlen, 0) != (ssize_t)qlen) {
        err_set(err, "%s: send: %s", what, strerror(errno));
        goto out;
    }
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline, abort_fd);
        if (w == 0) {
            err_set(err, "%s: no answer within %d s", what, timeout_ms / 1000);
            goto out;
        }
        ssize_t n = w < 0 ? -1 : recv(fd, buf, DNS_MAX_MSG, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            err_set(err, "%s: %s", what, errno == ECANCELED ? "cancelled" : strerror(errno));
            goto out;
        }
        if (is_reply(buf, (size_t)n, id)) {   /* anything else is stale or forged: keep waiting */
            *len = (size_t)n;
            ok = true;
            goto out;
        }
    }
out:
    close(fd);
    return ok;
}

/* Write or read exactly len bytes on a non-blocking stream socket before the deadline. */
static bool stream_io(int fd, bool writing, uint8_t *p, size_t len, int64_t deadline, int abort_fd)
{
    while (len > 0) {
        ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0) {
            errno = ECONNRESET;
            return false;
        }
        if (errno != EAGAIN && errno != EINTR)
            return false;
        int w = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline, abort_fd);
        if (w == 0)
            errno = ETIMEDOUT;
        if (w <= 0)
            return false;
    }
    return true;
}

static bool tcp_exchange(const struct addrinfo *ai, const uint8_t *q, size_t qlen, uint16_t id,
                         int64_t deadline, int abort_fd, uint8_t *buf, size_t *len, const char *what,
                         int timeout_ms, Err *err)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err_set(err, "%s: socket: %s", what, strerror(errno));
        return false;
    }
    bool ok = false;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err_set(err, "%s: tcp connect: %s", what, strerror(errno));
            goto out;
        }
        int w = wait_fd(fd, POLLOUT, deadline, abort_fd);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (w == 0) {
            err_set(err, "%s: tcp connect: no answer within %d s", what, timeout_ms / 1000);
            goto out;
        }
        if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            err_set(err, "%s: tcp connect: %s", what, strerror(w < 0 ? errno : soerr ? soerr : errno));
            goto out;
        }
    }
    uint8_t *msg = xmalloc(qlen + 2);
    msg[0] = (uint8_t)(qlen >> 8);
    msg[1] = (uint8_t)qlen;
    memcpy(msg + 2, q, qlen);
    bool sent = stream_io(fd, true, msg, qlen + 2, deadline, abort_fd);
    free(msg);
    uint8_t hdr[2];
    if (!sent || !stream_io(fd, false, hdr, 2, deadline, abort_fd) ||
        !stream_io(fd, false, buf, ((size_t)hdr[0] << 8) | hdr[1], deadline, abort_fd)) {
        if (errno == ETIMEDOUT)
            err_set(err, "%s: tcp: no answer within %d s", what, timeout_ms / 1000);
        else
            err_set(err, "%s: tcp: %s", what, errno == ECANCELED ? "cancelled" : strerror(errno));
        goto out;
    }
    *len = ((size_t)hdr[0] << 8) | hdr[1];
    if (!is_reply(buf, *len, id)) {
        err_set(err, "%s: tcp: the answer does not match the request", what);
        goto out;
    }
    ok = true;
out:
    close(fd);
    return ok;
}

/* Send wire message q (whose id is id) to the server and return the answer in *resp (malloc'd)
 * within t->timeout_ms overall. UDP first, TCP when the answer is truncated. what prefixes
 * errors ("dns.server 127.0.0.1:53"). */
static bool dns_exchange(const DnsTarget *t, const uint8_t *q, size_t qlen, uint16_t id, int abort_fd,
                         const char *what, uint8_t **resp, size_t *resp_len, Err *err)
{
    *resp = NULL;
    int64_t deadline = mono_ms() + t->timeout_ms;
    char port[8];
    str_fmt(port, sizeof(port), "%d", t->port);
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    /* XXX: a host name is resolved with the blocking libc resolver, outside the deadline;
     * an IP address (the usual setting) never blocks here. */
    int gai = getaddrinfo(t->host, port, &hints, &ai);
    if (gai != 0) {
        err_set(err, "%s: cannot resolve \"%s\": %s", what, t->host, gai_strerror(gai));
        return false;
    }
    uint8_t *buf = xmalloc(DNS_MAX_MSG);
    size_t len = 0;
    bool ok = udp_exchange(ai, q, qlen, id, deadline, abort_fd, buf, &len, what, t->timeout_ms, err);
    if (ok && LDNS_TC_WIRE(buf))
        ok = tcp_exchange(ai, q, qlen, id, deadline, abort_fd, buf, &len, what, t->timeout_ms, err);
    freeaddrinfo(ai);
    if (!ok) {
        free(buf);
        return false;
    }
    *resp = buf;
    *resp_len = len;
    return true;
}

/* ---- messages ---- */

static const char *rcode_name(unsigned rcode)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
                                        "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
                                        "NOTZONE"};
    static const char *const tsig_names[] = {"BADSIG", "BADKEY", "BADTIME", "BADMODE", "BADNAME",
                                             "BADALG", "BADTRUNC"};
    if (rcode < ARRAY_LEN(names))
        return names[rcode];
    if (rcode >= 16 && rcode < 16 + ARRAY_LEN(tsig_names))
        return tsig_names[rcode - 16];
    return "unknown rcode";
}

static uint16_t random_id(void)
{
    uint16_t id = 0;
    if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
        id = (uint16_t)(mono_ms() ^ (int64_t)getpid());
    return id;
}

/* An A/AAAA record with rdata (class IN) or without (class ANY/NONE, for deletes and
 * prerequisites). Owner is a fresh copy of name. */
static ldns_rr *make_rr(const ldns_rdf *name, bool v6, ldns_rr_class cls, uint32_t ttl,
                        const unsigned char *addr)
{
    ldns_rr *rr = ldns_rr_new();
    ldns_rr_set_owner(rr, ldns_rdf_clone(name));
    ldns_rr_set_type(rr, v6 ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A);
    ldns_rr_set_class(rr, cls);
    ldns_rr_set_ttl(rr, ttl);
    if (addr)
        ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(v6 ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A,
                                                  v6 ? 16 : 4, addr));
    return rr;
}

/* Addresses of one family (text, malloc'd) read from the server. */
typedef struct AddrList {
    char **v;
    size_t n;
} AddrList;

static void addrs_free(AddrList *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    FREE_AND_NULL(l->v);
    l->n = 0;
}

static bool addr_equal(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    bool xv6, yv6;
    return parse_ip(a, &xv6, x) && parse_ip(b, &yv6, y) && xv6 == yv6 && memcmp(x, y, xv6 ? 16 : 4) == 0;
}

/* The record's whole A (or AAAA) RRset. An absent name or type gives an empty list. */
static bool query_rrset(const DnsConfig *cfg, const DnsTarget *t, bool v6, int abort_fd, AddrList *out,
                        Err *err)
{
    memset(out, 0, sizeof(*out));
    ldns_rr_type type = v6 ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A;
    ldns_rdf *name = ldns_dname_new_frm_str(cfg->record);
    ldns_pkt *q = ldns_pkt_query_new(ldns_rdf_clone(name), type, LDNS_RR_CLASS_IN, 0);
    uint16_t id = random_id();
    ldns_pkt_set_id(q, id);
    uint8_t *wire = NULL, *resp = NULL;
    size_t wlen = 0, rlen = 0;
    ldns_pkt *r = NULL;
    bool ok = false;
    char *what = str_printf("dns.server %s: query for %s %s", cfg->server, cfg->record, v6 ? "AAAA" : "A");
    if (ldns_pkt2wire(&wire, q, &wlen) != LDNS_STATUS_OK) {
        err_set(err, "%s: cannot encode the query", what);
        goto out;
    }
    if (!dns_exchange(t, wire, wlen, id, abort_fd, what, &resp, &rlen, err))
        goto out;
    ldns_status st = ldns_wire2pkt(&r, resp, rlen);
    if (st != LDNS_STATUS_OK) {
        err_set(err, "%s: malformed answer: %s", what, ldns_get_errorstr_by_id(st));
        goto out;
    }
    unsigned rcode = ldns_pkt_get_rcode(r);
    if (rcode == LDNS_RCODE_NXDOMAIN) {
        ok = true;
        goto out;
    }
    if (rcode != LDNS_RCODE_NOERROR) {
        err_set(err, "%s failed: %s", what, rcode_name(rcode));
        goto out;
    }
    const ldns_rr_list *ans = ldns_pkt_answer(r);
    for (size_t i = 0; i < ldns_rr_list_rr_count(ans); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(ans, i);
        if (ldns_rr_get_type(rr) != type || ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
            ldns_dname_compare(ldns_rr_owner(rr), name) != 0 || ldns_rr_rd_count(rr) != 1)
            continue;
        char text[INET6_ADDRSTRLEN];
        const ldns_rdf *rd = ldns_rr_rdf(rr, 0);
        if (ldns_rdf_size(rd) != (v6 ? 16u : 4u) ||
            !inet_ntop(v6 ? AF_INET6 : AF_INET, ldns_rdf_data(rd), text, sizeof(text)))
            continue;
        out->v = xrealloc(out->v, (out->n + 1) * sizeof(char *));
        out->v[out->n++] = str_dup(text);
    }
    ok = true;
out:
    if (!ok)
        addrs_free(out);
    free(what);
    free(wire);
    free(resp);
    ldns_pkt_free(q);
    ldns_pkt_free(r);
    ldns_rdf_deep_free(name);
    return ok;
}

/* The update: zone SOA; prerequisite "RRset is exactly old" (or "does not exist" when
 * old is empty); delete the RRset, add new_addr. Signed with TSIG, sent, and the answer's
 * rcode (and TSIG) checked. */
static bool send_update(const DnsConfig *cfg, const DnsTarget *t, const AddrList *old, const char *new_addr,
                        int abort_fd, bool *prereq_failed, Err *err)
{
    bool dummy;
    if (!prereq_failed)
        prereq_failed = &dummy;
    *prereq_failed = false;
    bool v6;
    unsigned char nbin[16];
    if (!parse_ip(new_addr, &v6, nbin)) {
        err_set(err, "dns: not an IP address: \"%s\"", new_addr ? new_addr : "(null)");
        return false;
    }
    ldns_rdf *name = ldns_dname_new_frm_str(cfg->record);
    ldns_rr_list *pre = ldns_rr_list_new(), *upd = ldns_rr_list_new();
    if (old->n == 0) {
        ldns_rr_list_push_rr(pre, make_rr(name, v6, LDNS_RR_CLASS_NONE, 0, NULL));
    } else {
        for (size_t i = 0; i < old->n; i++) {
            bool ov6;
            unsigned char obin[16];
            if (!parse_ip(old->v[i], &ov6, obin) || ov6 != v6) {
                err_set(err, "dns: old value \"%s\" is not an %s address", old->v[i], v6 ? "IPv6" : "IPv4");
                ldns_rr_list_deep_free(pre);
                ldns_rr_list_deep_free(upd);
                ldns_rdf_deep_free(name);
                return false;
            }
            ldns_rr_list_push_rr(pre, make_rr(name, v6, LDNS_RR_CLASS_IN, 0, obin));
        }
    }
    ldns_rr_list_push_rr(upd, make_rr(name, v6, LDNS_RR_CLASS_ANY, 0, NULL));
    ldns_rr_list_push_rr(upd, make_rr(name, v6, LDNS_RR_CLASS_IN, (uint32_t)cfg->ttl, nbin));
    ldns_pkt *q = ldns_update_pkt_new(ldns_dname_new_frm_str(cfg->zone), LDNS_RR_CLASS_IN, pre, upd, NULL);
    ldns_rr_list_deep_free(pre);     /* the packet holds copies */
    ldns_rr_list_deep_free(upd);
    ldns_rdf_deep_free(name);

    char *what = str_printf("dns.server %s: update of %s", cfg->server, cfg->record);
    uint8_t *wire = NULL, *resp = NULL;
    size_t wlen = 0, rlen = 0;
    ldns_pkt *r = NULL;
    bool ok = false;
    uint16_t id = random_id();
    if (!q) {
        err_set(err, "%s: cannot build the message", what);
        goto out;
    }
    ldns_pkt_set_rd(q, false);       /* ldns sets RD, which means nothing in an UPDATE */
    ldns_pkt_set_id(q, id);
    ldns_status st = ldns_pkt_tsig_sign(q, cfg->tsig_key_name, cfg->tsig_secret, DNS_TSIG_FUDGE, t->alg, NULL);
    if (st != LDNS_STATUS_OK) {
        err_set(err, "%s: cannot sign with %s: %s", what, t->alg,
                ldns_get_errorstr_by_id(st));
        goto out;
    }
    if (ldns_pkt2wire(&wire, q, &wlen) != LDNS_STATUS_OK) {
        err_set(err, "%s: cannot encode the message", what);
        goto out;
    }
    if (!dns_exchange(t, wire, wlen, id, abort_fd, what, &resp, &rlen, err))
        goto out;
    st = ldns_wire2pkt(&r, resp, rlen);
    if (st != LDNS_STATUS_OK) {
        err_set(err, "%s: malformed answer: %s", what, ldns_get_errorstr_by_id(st));
        goto out;
    }
    unsigned rcode = ldns_pkt_get_rcode(r);
    const ldns_rr *tsig = ldns_pkt_tsig(r);
    unsigned tsig_error = tsig && ldns_rr_rd_count(tsig) > 5 ? ldns_rdf2native_int16(ldns_rr_rdf(tsig, 5)) : 0;
    /* A server that rejected our signature cannot sign its answer; any other answer must
     * carry a valid TSIG, or it may be forged. */
    bool verified = tsig && ldns_pkt_tsig_verify(r, resp, rlen, cfg->tsig_key_name, cfg->tsig_secret,
                                                 ldns_rr_rdf(ldns_pkt_tsig(q), 3));
    if (tsig_error != 0 || rcode == LDNS_RCODE_NOTAUTH || rcode == LDNS_RCODE_REFUSED) {
        /* NOTAUTH with a valid signature: the key is fine, the zone is not served there */
        const char *hint = tsig_error == 18 ? " (clocks differ by more than the TSIG fudge?)"
                           : rcode == LDNS_RCODE_NOTAUTH && verified ? " (is the server authoritative for dns.zone?)"
                           : tsig_error != 0 || rcode == LDNS_RCODE_NOTAUTH ? " (TSIG key rejected?)"
                           : rcode == LDNS_RCODE_REFUSED ? " (key not allowed to update this name?)"
                                                         : "";
        if (tsig_error != 0)
            err_set(err, "%s refused: %s, TSIG error %s%s", what, rcode_name(rcode),
                    rcode_name(tsig_error), hint);
        else
            err_set(err, "%s refused: %s%s", what, rcode_name(rcode), hint);
        goto out;
    }
    if (!verified) {
        err_set(err, "%s: the answer (%s) %s", what, rcode_name(rcode),
                tsig ? "failed TSIG verification" : "is not signed");
        goto out;
    }
    if (rcode == LDNS_RCODE_NXRRSET || rcode == LDNS_RCODE_YXRRSET) {
        *prereq_failed = true;
        err_set(err, "%s: prerequisite failed: %s (the record changed)", what, rcode_name(rcode));
        goto out;
    }
    if (rcode != LDNS_RCODE_NOERROR) {
        err_set(err, "%s failed: %s", what, rcode_name(rcode));
        goto out;
    }
    ok = true;
out:
    free(what);
    free(wire);
    free(resp);
    ldns_pkt_free(q);
    ldns_pkt_free(r);
    return ok;
}

bool dns_update_once(const DnsConfig *cfg, const char *old_addr, const char *new_addr,
                     bool *prereq_failed, Err *err)
{
    if (prereq_failed)
        *prereq_failed = false;
    DnsTarget t;
    if (!target_init(cfg, &t, err))
        return false;
    char *one[1] = {(char *)old_addr};
    AddrList old = {one, old_addr ? 1 : 0};
    bool ok = send_update(cfg, &t, &old, new_addr, -1, prereq_failed, err);
    target_clear(&t);
    return ok;
}

bool dns_query_addr(const DnsConfig *cfg, bool want_v6, char **addr, Err *err)
{
    *addr = NULL;
    DnsTarget t;
    if (!target_init(cfg, &t, err))
        return false;
    AddrList l;
    bool ok = query_rrset(cfg, &t, want_v6, -1, &l, err);
    if (ok && l.n > 0) {
        *addr = l.v[0];
        l.v[0] = NULL;
    }
    addrs_free(&l);
    target_clear(&t);
    return ok;
}

/* ---- the background updater ---- */

struct DnsUpdater {
    DnsConfig cfg;              /* deep copy */
    DnsTarget target;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* CLOCK_MONOTONIC */
    int stop_fd;                /* eventfd: aborts the network wait at dns_updater_free */
    bool wanted;                /* claimed and not cancelled since */
    bool done;                  /* the current claim succeeded */
    bool stop;
    uint64_t gen;               /* bumped by claim and cancel: results of older attempts are stale */
};

static void dnscfg_copy(DnsConfig *dst, const DnsConfig *src)
{
    *dst = *src;
    dst->server = str_dup(src->server);
    dst->zone = str_dup(src->zone);
    dst->record = str_dup(src->record);
    dst->address = str_dup(src->address);
    dst->tsig_key_name = str_dup(src->tsig_key_name);
    dst->tsig_secret = str_dup(src->tsig_secret);
    dst->tsig_algorithm = str_dup(src->tsig_algorithm);
}

static void dnscfg_clear(DnsConfig *c)
{
    if (c->tsig_secret)
        memset(c->tsig_secret, 0, strlen(c->tsig_secret));
    char **s[] = {&c->server, &c->zone, &c->record, &c->address, &c->tsig_key_name, &c->tsig_secret,
                  &c->tsig_algorithm};
    for (size_t i = 0; i < ARRAY_LEN(s); i++)
        FREE_AND_NULL(*s[i]);
}

/* One claim attempt: read the RRset, and unless it already names us, replace it with a
 * prerequisite on what was read. A failed prerequisite (someone changed it between our
 * read and our write) gets one immediate re-read and retry. */
static bool claim_attempt(DnsUpdater *u, Err *err)
{
    const DnsConfig *cfg = &u->cfg;
    for (int round = 0; round < 2; round++) {
        AddrList cur;
        if (!query_rrset(cfg, &u->target, u->target.v6, u->stop_fd, &cur, err))
            return false;
        if (cur.n == 1 && addr_equal(cur.v[0], cfg->address)) {
            if (round == 0)
                log_info("dns: %s already names %s", cfg->record, cfg->address);
            else
                log_info("dns: %s -> %s (set by another update)", cfg->record, cfg->address);
            addrs_free(&cur);
            return true;
        }
        bool prereq_failed = false;
        bool ok = send_update(cfg, &u->target, &cur, cfg->address, u->stop_fd, &prereq_failed, err);
        if (ok) {
            char was[256] = "none";
            for (size_t i = 0, off = 0; i < cur.n && off < sizeof(was); i++) {
                int n = snprintf(was + off, sizeof(was) - off, "%s%s", i ? ", " : "", cur.v[i]);
                if (n < 0)
                    break;
                off += (size_t)n;
            }
            log_info("dns: %s -> %s (was %s)", cfg->record, cfg->address, was);
        }
        addrs_free(&cur);
        if (ok || !prereq_failed)
            return ok;
        if (round == 0)
            log_warn("dns: %s changed while we updated it; reading it again", cfg->record);
    }
    return false;
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *updater_main(void *arg)
{
    DnsUpdater *u = arg;
    int backoff_ms = BACKOFF_FIRST_MS;
    pthread_mutex_lock(&u->mu);
    while (!u->stop) {
        if (!u->wanted || u->done) {
            backoff_ms = BACKOFF_FIRST_MS;
            pthread_cond_wait(&u->cv, &u->mu);
            continue;
        }
        uint64_t gen = u->gen;
        pthread_mutex_unlock(&u->mu);
        Err err = {{0}};
        bool ok = claim_attempt(u, &err);
        pthread_mutex_lock(&u->mu);
        if (u->stop || u->gen != gen)
            continue;               /* cancelled or claimed anew meanwhile: decide again */
        if (ok) {
            u->done = true;
            continue;
        }
        log_warn("dns: %s -> %s failed: %s; retrying in %.1f s", u->cfg.record, u->cfg.address, err.msg,
                 backoff_ms / 1000.0);
        struct timespec until;
        deadline_after(&until, backoff_ms);
        while (!u->stop && u->gen == gen)
            if (pthread_cond_timedwait(&u->cv, &u->mu, &until) == ETIMEDOUT)
                break;
        backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    }
    pthread_mutex_unlock(&u->mu);
    return NULL;
}

DnsUpdater *dns_updater_new(const DnsConfig *cfg, Err *err)
{
    DnsUpdater *u = xcalloc(1, sizeof(*u));
    if (!target_init(cfg, &u->target, err)) {
        free(u);
        return NULL;
    }
    dnscfg_copy(&u->cfg, cfg);
    u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&u->mu, NULL);
    int rc = u->stop_fd < 0 ? errno : pthread_create(&u->thread, NULL, updater_main, u);
    if (rc != 0) {
        err_set(err, "dns: cannot start the update thread: %s", strerror(rc));
        if (u->stop_fd >= 0)
            close(u->stop_fd);
        pthread_cond_destroy(&u->cv);
        pthread_mutex_destroy(&u->mu);
        target_clear(&u->target);
        dnscfg_clear(&u->cfg);
        free(u);
        return NULL;
    }
    return u;
}

void dns_updater_claim(DnsUpdater *u)
{
    pthread_mutex_lock(&u->mu);
    if (!u->wanted) {
        u->wanted = true;
        u->done = false;
        u->gen++;
        pthread_cond_signal(&u->cv);
    }
    pthread_mutex_unlock(&u->mu);
}

void dns_updater_cancel(DnsUpdater *u)
{
    pthread_mutex_lock(&u->mu);
    if (u->wanted) {
        u->wanted = false;
        u->done = false;
        u->gen++;
        pthread_cond_signal(&u->cv);
    }
    pthread_mutex_unlock(&u->mu);
}

bool dns_updater_done(DnsUpdater *u)
{
    pthread_mutex_lock(&u->mu);
    bool d = u->wanted && u->done;
    pthread_mutex_unlock(&u->mu);
    return d;
}

void dns_updater_free(DnsUpdater *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->mu);
    u->stop = true;
    pthread_cond_signal(&u->cv);
    pthread_mutex_unlock(&u->mu);
    uint64_t one = 1;
    ssize_t w = write(u->stop_fd, &one, sizeof(one));
    (void)w;
    pthread_join(u->thread, NULL);
    close(u->stop_fd);
    pthread_cond_destroy(&u->cv);
    pthread_mutex_destroy(&u->mu);
    target_clear(&u->target);
    dnscfg_clear(&u->cfg);
    free(u);
}
