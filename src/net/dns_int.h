/* Internals shared by dns_update.c (settings, messages), dns_transport.c (UDP/TCP with a
 * deadline) and dns_updater.c (the background claim). Not for other modules. */
#ifndef PGVIGIL_DNS_INT_H
#define PGVIGIL_DNS_INT_H

#include "common/common.h"
#include "config/config.h"

#include <stdint.h>

#define DNS_TSIG_FUDGE 300          /* seconds of clock skew the server accepts */
#define DNS_MAX_MSG 65535

typedef struct DnsTarget {
    char *host;             /* dns.server without the port (no brackets) */
    int port;
    const char *alg;        /* entry of tsig_algs[].wire */
    bool v6;                /* dns.address is IPv6: the record is AAAA */
    unsigned char addr[16]; /* dns.address in binary */
    int timeout_ms;
} DnsTarget;

/* Addresses of one family (text, malloc'd) read from the server. */
typedef struct AddrList {
    char **v;
    size_t n;
} AddrList;

/* dns_update.c */
bool target_init(const DnsConfig *cfg, DnsTarget *t, Err *err);  /* validate cfg into t */
void target_clear(DnsTarget *t);
void addrs_free(AddrList *l);
bool addr_equal(const char *a, const char *b);
/* The record's whole A (or AAAA) RRset; an absent name or type gives an empty list. abort_fd
 * (-1 none) ends the wait early when readable. */
bool query_rrset(const DnsConfig *cfg, const DnsTarget *t, bool v6, int abort_fd, AddrList *out, Err *err);
bool send_update(const DnsConfig *cfg, const DnsTarget *t, const AddrList *old, const char *new_addr,
                 int abort_fd, bool *prereq_failed, Err *err);

/* dns_transport.c: send wire message q (whose id is id) to the server and return the answer
 * in *resp (malloc'd) within t->timeout_ms overall; UDP, then TCP when the answer is
 * truncated. what prefixes errors ("dns.server 127.0.0.1:53"); abort_fd (-1 none) ends the
 * wait early when readable. */
bool dns_exchange(const DnsTarget *t, const uint8_t *q, size_t qlen, uint16_t id, int abort_fd,
                  const char *what, uint8_t **resp, size_t *resp_len, Err *err);

#endif
