/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_seen.h
 *	  Causality: what a node had applied from each peer when it wrote.
 *
 * Before each writing statement of a client, a node logs a transactional
 * logical message (prefix "pgvigil_aa.seen") with, per peer, the commit
 * time of the last transaction it had applied from that peer.  The output
 * plugin sends it ahead of the statement's rows; the worker that applies
 * them knows which versions of a row the writer had seen.  A change made
 * after the version it replaces had arrived is no conflict; a change made
 * without having seen a delete is a change of the deleted row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_SEEN_H
#define PGVIGIL_AA_SEEN_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

#include "pgvigil_aa_seenmap.h"

#define AA_SEEN_PREFIX "pgvigil_aa.seen"

/* install the executor hook that logs the messages (shared_preload_libraries) */
extern void aa_seen_install(void);

/* the text of map, as a message carries it */
extern void aa_seen_format(const AaSeen *map, StringInfo out);

/* The map of the remote change being applied (NULL outside the apply
 * worker, or before its transaction carried one): the tombstone trigger
 * keeps it with a delete the worker applies. */
extern const AaSeen *aa_applying_seen;

#endif
