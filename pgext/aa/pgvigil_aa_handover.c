/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_handover.c
 *	  The old write leader's side of a switchover (the agent drives it):
 *
 *	  pgvigil_aa.handover_block(ms): refuse clients' writing statements on
 *	  this node for ms milliseconds (0 lifts it).  A deadline, not a flag, so
 *	  a handover whose driver died never leaves the node refusing writes.
 *	  The apply workers are never refused.  A client's writing statement is
 *	  refused, and so is the commit of a transaction that wrote.
 *
 *	  pgvigil_aa.mark(): log a transactional message that the output plugin
 *	  sends like a transaction of its own and return its position.  A peer
 *	  whose applied position (pgvigil_aa.status().applied_lsn) is past it has
 *	  applied every transaction this node committed before it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "storage/lwlock.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_handover.h"
#include "pgvigil_aa_shared.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_handover_block);
PG_FUNCTION_INFO_V1(pgvigil_aa_mark);

/* this transaction logs the mark: its own commit is not refused */
static bool marking = false;

void
aa_handover_check(void)
{
	TimestampTz until;

	/* (the apply workers write under their origin) */
	if (aa_shared == NULL || replorigin_session_origin != InvalidRepOriginId || marking)
		return;
	LWLockAcquire(aa_shared->lock, LW_SHARED);
	until = aa_shared->handover_until;
	LWLockRelease(aa_shared->lock);
	if (until != 0 && GetCurrentTimestamp() < until)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("pgvigil_aa: this node is handing its write lead over to another node"),
				 errhint("Connect again through the proxy's write_leader route.")));
}

/*
 * A statement that passed the check before the refusal began may still
 * write: its commit is refused too.  Only one whose commit was already under
 * way can still commit; it holds its transaction id until it has, and the
 * agent waits for those before it marks the stream.
 */
static void
check_at_commit(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && GetTopTransactionIdIfAny() != InvalidTransactionId)
		aa_handover_check();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		marking = false;
}

void
aa_handover_install(void)
{
	RegisterXactCallback(check_at_commit, NULL);
}

Datum
pgvigil_aa_handover_block(PG_FUNCTION_ARGS)
{
	int32		ms = PG_GETARG_INT32(0);

	if (aa_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgvigil_aa is not in shared_preload_libraries")));
	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgvigil_aa.handover_block: milliseconds must not be negative, got %d", ms)));
	LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
	aa_shared->handover_until = ms == 0 ? 0 : TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	LWLockRelease(aa_shared->lock);
	PG_RETURN_VOID();
}

Datum
pgvigil_aa_mark(PG_FUNCTION_ARGS)
{
	XLogRecPtr	lsn;

	marking = true;
	lsn = LogLogicalMessage(AA_MARK_PREFIX, "", 0, true);

	PG_RETURN_LSN(lsn);
}
