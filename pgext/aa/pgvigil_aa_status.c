/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_status.c
 *	  pgvigil_aa.status(): the apply from each peer, as the shared memory
 *	  has it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_shared.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_status);

#define STATUS_COLS 12

Datum
pgvigil_aa_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();

	InitMaterializedSRF(fcinfo, 0);
	if (aa_shared == NULL)
		return (Datum) 0;
	LWLockAcquire(aa_shared->lock, LW_SHARED);
	for (int i = 0; i < AA_MAX_PEERS; i++)
	{
		AaPeerState *p = &aa_shared->peers[i];
		Datum		values[STATUS_COLS];
		bool		nulls[STATUS_COLS];
		int64		lag_bytes;

		if (!p->in_use || p->dbid != MyDatabaseId)
			continue;
		memset(nulls, 0, sizeof(nulls));
		/* what the peer has written that this node has not confirmed yet */
		lag_bytes = p->peer_wal_end > p->confirmed_lsn ? (int64) (p->peer_wal_end - p->confirmed_lsn) : 0;
		values[0] = CStringGetTextDatum(p->name);
		values[1] = Int32GetDatum(p->pid);
		nulls[1] = p->pid == 0;
		values[2] = TimestampTzGetDatum(p->applied_commit_ts);
		nulls[2] = p->applied_commit_ts == 0;
		values[3] = LSNGetDatum(p->applied_lsn);
		values[4] = LSNGetDatum(p->confirmed_lsn);
		values[5] = Int64GetDatum(lag_bytes);
		/* seconds behind: the oldest transaction waiting (the one being
		 * applied), or since the last applied when bytes wait (an upper
		 * bound); nothing waiting: 0 */
		if (p->applying_commit_ts != 0)
			values[6] = Float8GetDatum((now - p->applying_commit_ts) / 1000000.0);
		else if (lag_bytes > 0 && p->applied_commit_ts != 0)
			values[6] = Float8GetDatum((now - p->applied_commit_ts) / 1000000.0);
		else
			values[6] = Float8GetDatum(0.0);
		values[7] = TimestampTzGetDatum(p->last_message_at);
		nulls[7] = p->last_message_at == 0;
		values[8] = Float8GetDatum(p->skew_us / 1000.0);
		nulls[8] = p->last_message_at == 0;
		values[9] = Int64GetDatum(p->applied_txns);
		values[10] = Int64GetDatum(p->conflicts);
		values[11] = CStringGetTextDatum(p->error);
		nulls[11] = p->error[0] == '\0';
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(aa_shared->lock);
	return (Datum) 0;
}
