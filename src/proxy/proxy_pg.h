/* The few PostgreSQL protocol facts the proxy needs: the first packet of a connection
 * (startup, SSL/GSS negotiation, cancel), the server's BackendKeyData, and an ErrorResponse
 * for a client that could not be routed. Everything else passes through untouched. */
#ifndef PGVIGIL_PROXY_PG_H
#define PGVIGIL_PROXY_PG_H

#include "common/common.h"

#define PG_CANCEL_CODE 80877102u
#define PG_SSL_CODE 80877103u
#define PG_GSSENC_CODE 80877104u
#define PG_CANCEL_LEN 16

typedef enum PgFirst {
    PGF_NEED_MORE,      /* fewer than 8 bytes (16 for a cancel) so far */
    PGF_CANCEL,         /* CancelRequest: pid and key filled */
    PGF_OTHER,          /* startup, SSLRequest, GSSENCRequest or garbage: forward as is */
} PgFirst;

PgFirst pg_first_packet(const unsigned char *buf, size_t len, uint32_t *pid, uint32_t *key);

/* Watches the first bytes of both directions of a session to learn its BackendKeyData, so a
 * later CancelRequest naming it can be sent to the right server. Gives up (done) on
 * encryption, after ReadyForQuery or an error, or on anything unexpected. */
typedef struct PgKeyScan {
    bool done;
    bool found;
    uint32_t pid, key;
    /* client side: negotiation packets seen, each owed a one-byte answer */
    int owed;
    unsigned char chdr[8];
    size_t chave;
    uint32_t cskip;     /* bytes of the current client packet still to pass */
    bool client_done;
    /* server side */
    unsigned char shdr[13];
    size_t shave;
    uint32_t sskip;
    uint32_t scanned;
} PgKeyScan;

void pg_keyscan_client(PgKeyScan *s, const unsigned char *p, size_t n);
void pg_keyscan_server(PgKeyScan *s, const unsigned char *p, size_t n);

/* A FATAL ErrorResponse (SQLSTATE 57P03, cannot_connect_now) with message. Returns its length
 * in buf (0 when it does not fit). */
size_t pg_error_response(unsigned char *buf, size_t sz, const char *message);

#endif
