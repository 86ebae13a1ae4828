/* PostgreSQL WAL positions: "X/Y" text <-> 64-bit integer. */
#ifndef PGVIGIL_LSN_H
#define PGVIGIL_LSN_H

#include "common/common.h"

typedef uint64_t Lsn;
#define LSN_INVALID ((Lsn)0)
#define LSN_BUFSZ 24

/* Parse "16/B374D848". Returns false on anything else (empty, junk, overflow). */
bool lsn_parse(const char *s, Lsn *out);
/* Format into buf (at least LSN_BUFSZ bytes); returns buf. */
char *lsn_format(Lsn lsn, char *buf);

#endif
