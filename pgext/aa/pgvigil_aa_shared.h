/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_shared.h
 *	  The state the apply workers share with every backend of the server:
 *	  per peer, what has been applied from it (and when it was written there),
 *	  for the causality messages and the status view.
 *
 * It exists only when pgvigil_aa is in shared_preload_libraries; without it
 * aa_shared is NULL, and nothing is shared (the workers still apply).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_SHARED_H
#define PGVIGIL_AA_SHARED_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#define AA_MAX_PEERS 64

typedef struct AaPeerState
{
	bool		in_use;
	Oid			dbid;
	char		name[NAMEDATALEN];
	int			pid;			/* the apply worker, 0 when none runs */
	TimestampTz applied_commit_ts;	/* the peer's commit time of the last transaction applied */
	XLogRecPtr	applied_lsn;	/* its end in the peer's WAL */
	XLogRecPtr	received_lsn;	/* the farthest the stream has come */
	XLogRecPtr	confirmed_lsn;	/* what the worker last confirmed to the peer */
	TimestampTz applying_commit_ts;	/* the peer's commit time of the transaction being applied, 0 between */
	XLogRecPtr	peer_wal_end;	/* the peer's WAL end, from its last keepalive */
	TimestampTz last_message_at;	/* when the last message of the peer arrived */
	int64		skew_us;		/* this node's clock minus the peer's at the last keepalive (with the transit) */
	int64		applied_txns;
	int64		conflicts;
	char		error[256];		/* the last error that stopped the worker */
} AaPeerState;

typedef struct AaShared
{
	LWLock	   *lock;
	TimestampTz handover_until;	/* clients' writes refused until then (pgvigil_aa_handover.c) */
	uint64		handover_seq;	/* handovers begun since the server started */
	pg_atomic_uint32 committing;	/* clients' transactions between their commit check and its end */
	Latch	   *launcher_latch;	/* the launcher's, set when pgvigil_aa.peers changed (NULL: none yet) */
	AaPeerState peers[AA_MAX_PEERS];
} AaShared;

extern AaShared *aa_shared;

extern void aa_shared_request(void);

/* The entry of a peer in this database, made if needed (NULL when nothing is shared or the table is full). */
extern AaPeerState *aa_peer_state(Oid dbid, const char *name);

/*
 * What this node has applied from each peer, in this database: the text of
 * a causality message, "name=commit_ts_in_microseconds;..." (empty when
 * nothing has been applied).  Returns the newest of those commit times (0
 * for none).
 */
extern TimestampTz aa_seen_text(Oid dbid, StringInfo out);

#endif
