/* DNS failover messages: the settings checked once, the record's RRset read, and the RFC 2136
 * UPDATE built and TSIG-signed with ldns (dns_transport.c sends them, dns_updater.c runs the
 * background claim). */
#include "common/common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ldns/ldns.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "dcs/base64.h"
#include "net/dns_update.h"
#include "net/dns_int.h"

#define DNS_DEFAULT_TIMEOUT 2

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


void target_clear(DnsTarget *t) { FREE_AND_NULL(t->host); }

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
bool target_init(const DnsConfig *cfg, DnsTarget *t, Err *err)
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

void addrs_free(AddrList *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    FREE_AND_NULL(l->v);
    l->n = 0;
}

bool addr_equal(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    bool xv6, yv6;
    return parse_ip(a, &xv6, x) && parse_ip(b, &yv6, y) && xv6 == yv6 && memcmp(x, y, xv6 ? 16 : 4) == 0;
}

/* The record's whole A (or AAAA) RRset. An absent name or type gives an empty list. */
bool query_rrset(const DnsConfig *cfg, const DnsTarget *t, bool v6, int abort_fd, AddrList *out,
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
bool send_update(const DnsConfig *cfg, const DnsTarget *t, const AddrList *old, const char *new_addr,
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
