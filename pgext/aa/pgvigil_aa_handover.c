/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_handover.c
 *	  The old write leader's side of a switchover (the agent drives it):
 *
 *	  pgvigil_aa.handover_block(ms): refuse clients' writing statements on
 *	  this node for ms milliseconds (0 lifts it).  A deadline, not a flag, so
 *	  a handover whose driver died never leaves the node refusing writes.
 *	  The apply workers are never refused.  A client's writing statement is
 *	  refused, and so is the commit of a transaction that wrote, then and
 *	  also later when its first write came before the handover began.
 *	  pgvigil_aa.committing() counts the commits already past that check:
 *	  the agent waits for them before it marks the stream.
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
#include "miscadmin.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_handover.h"
#include "pgvigil_aa_shared.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_handover_block);
PG_FUNCTION_INFO_V1(pgvigil_aa_mark);
PG_FUNCTION_INFO_V1(pgvigil_aa_committing);

/* the transaction that logs the mark: its own commit is not refused */
static TransactionId marking_xid = InvalidTransactionId;

/* the handover that had begun (its number) when this transaction first wrote */
static LocalTransactionId wrote_lxid = InvalidLocalTransactionId;
static uint64 wrote_seq = 0;

/* A client's transaction (the apply workers write under their origin, and
 * other processes are not the clients the proxy sends). */
static bool
is_client_transaction(void)
{
	return aa_shared != NULL && MyBackendType == B_BACKEND && replorigin_session_origin == InvalidRepOriginId &&
		!(TransactionIdIsValid(marking_xid) && GetTopTransactionIdIfAny() == marking_xid);
}

static void
refuse(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("pgvigil_aa: %s", why),
			 errhint("Connect again through the proxy's write_leader route.")));
}

void
aa_handover_check(void)
{
	TimestampTz until;
	uint64		seq;

	if (!is_client_transaction())
		return;
	LWLockAcquire(aa_shared->lock, LW_SHARED);
	until = aa_shared->handover_until;
	seq = aa_shared->handover_seq;
	LWLockRelease(aa_shared->lock);
	if (until != 0 && GetCurrentTimestamp() < until)
		refuse("this node is handing its write lead over to another node");
	if (wrote_lxid != MyProc->lxid)
	{
		wrote_lxid = MyProc->lxid;
		wrote_seq = seq;
	}
}

/*
 * At the commit (or PREPARE) of a client's transaction that wrote: refused
 * while a handover refuses writes, and also when a handover began after the
 * transaction's first write (a statement that passed its check before the
 * refusal, still running when the stream was marked, must not commit after
 * the mark, even once the refusal is over).  Only a commit already under way
 * when the refusal began can still commit: it holds its transaction id until
 * it has, and the agent waits for those before it marks the stream.
 */
static bool counted = false;		/* this transaction counts in committing */

static void
check_at_commit(XactEvent event, void *arg)
{
	uint64		seq;

	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
	{
		if (counted)
			pg_atomic_fetch_sub_u32(&aa_shared->committing, 1);
		counted = false;
		return;
	}
	if ((event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE) ||
		!TransactionIdIsValid(GetTopTransactionIdIfAny()) || !is_client_transaction())
		return;
	aa_handover_check();
	LWLockAcquire(aa_shared->lock, LW_SHARED);
	seq = aa_shared->handover_seq;
	LWLockRelease(aa_shared->lock);
	if (wrote_lxid == MyProc->lxid && wrote_seq != seq)
		refuse("a handover of this node's write lead began while this transaction was writing");
	/* allowed: the agent waits for it before it marks the stream */
	pg_atomic_fetch_add_u32(&aa_shared->committing, 1);
	counted = true;
}

/* How many clients' commits are under way (past their check, not yet ended). */
Datum
pgvigil_aa_committing(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(aa_shared ? (int32) pg_atomic_read_u32(&aa_shared->committing) : 0);
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
	if (ms > 0)
		aa_shared->handover_seq++;
	LWLockRelease(aa_shared->lock);
	PG_RETURN_VOID();
}

Datum
pgvigil_aa_mark(PG_FUNCTION_ARGS)
{
	XLogRecPtr	lsn;

	marking_xid = GetTopTransactionId();
	lsn = LogLogicalMessage(AA_MARK_PREFIX, "", 0, true);

	PG_RETURN_LSN(lsn);
}
