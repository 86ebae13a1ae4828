/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_apply.c
 *	  The apply worker of pgvigil's active-active groups: one background
 *	  worker per peer reads the peer's pgvigil_aa slot and applies its
 *	  transactions here, detecting and resolving conflicts.
 *
 * Each remote transaction is applied in one local transaction under the
 * peer's replication origin (pgvigil_aa_<peer>), whose LSN and timestamp are
 * set in the same commit: progress is crash-safe, the commit timestamp of an
 * applied row is the remote commit time, and the output plugin never sends
 * the change on.
 *
 The row changes themselves, and their conflicts, are pgvigil_aa_change.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "replication/walreceiver.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_ddl.h"
#include "pgvigil_aa_direct.h"
#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"
#include "pgvigil_aa_tombstone.h"

PG_FUNCTION_INFO_V1(pgvigil_aa_start_apply);
extern PGDLLEXPORT void pgvigil_aa_apply_main(Datum arg);

#define FEEDBACK_INTERVAL_MS 1000

static MemoryContext ApplyContext = NULL;
static MemoryContext ApplyMessageCxt = NULL;
static MemoryContext ChangeCxt = NULL;
char		aa_peer_name[NAMEDATALEN];
char		aa_local_name[NAMEDATALEN];
TimestampTz aa_remote_commit_ts;
AaPeerState *aa_my_state = NULL;
static bool in_remote_txn = false;
static XLogRecPtr last_received = InvalidXLogRecPtr;
static XLogRecPtr last_applied = InvalidXLogRecPtr;
static StringInfo reply_message = NULL;

static void remember_commit(XLogRecPtr local_end, XLogRecPtr remote_end);

bool
aa_register_apply(Oid dbid, const char *peer, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* (the launcher starts it again) */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgvigil_aa");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgvigil_aa_apply_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgvigil_aa apply from %s", peer);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgvigil_aa apply");
	worker.bgw_main_arg = ObjectIdGetDatum(dbid);
	strlcpy(worker.bgw_extra, peer, BGW_EXTRALEN);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}

/* The pid of the peer's apply worker in this database: the running one, or
 * one started now (the launcher would start it within a second; this waits
 * for it to run). */
Datum
pgvigil_aa_start_apply(PG_FUNCTION_ARGS)
{
	char	   *peer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	BackgroundWorkerHandle *handle;
	AaPeerState *state;
	pid_t		pid;

	if (aa_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgvigil_aa is not in shared_preload_libraries"),
				 errhint("Add it there and restart the server: the group's causality messages and status need it.")));
	if (strlen(peer) >= BGW_EXTRALEN || strlen(peer) + sizeof(AA_ORIGIN_PREFIX) > NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgvigil_aa: peer name \"%s\" is too long", peer)));
	state = aa_peer_state(MyDatabaseId, peer);
	if (state && state->pid != 0 && kill(state->pid, 0) == 0)
		PG_RETURN_INT32(state->pid);
	if (!aa_register_apply(MyDatabaseId, peer, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pgvigil_aa: could not start the apply worker for peer \"%s\"", peer),
				 errhint("Raise max_worker_processes.")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errmsg("pgvigil_aa: the apply worker for peer \"%s\" did not start", peer)));
	PG_RETURN_INT32(pid);
}

/* ---- SQL helpers (inside a transaction, SPI connected) */

/*
 * Plans of the statements the worker runs, kept across transactions and
 * found by their text: a relation's statements are the same text every
 * time (its name, its columns, "$n::type" parameters), so each is parsed and
 * planned once, not once per change.  The plan cache revalidates them when
 * a table changes.
 */
#define PLAN_BUCKETS 1024
#define PLAN_MAX 4096

typedef struct KeptPlan
{
	char	   *sql;
	SPIPlanPtr	plan;
	struct KeptPlan *next;
} KeptPlan;

static KeptPlan *plans[PLAN_BUCKETS];
static int	nplans = 0;

static SPIPlanPtr
kept_plan(const char *sql, int nargs, Oid *types)
{
	uint32		h = hash_bytes((const unsigned char *) sql, strlen(sql)) % PLAN_BUCKETS;
	KeptPlan   *k;
	SPIPlanPtr	plan;

	for (k = plans[h]; k; k = k->next)
		if (strcmp(k->sql, sql) == 0)
			return k->plan;
	plan = SPI_prepare(sql, nargs, types);
	if (plan == NULL)
		ereport(ERROR,
				(errmsg("pgvigil_aa: applying from peer \"%s\": \"%s\" cannot be prepared: %s", aa_peer_name, sql,
						SPI_result_code_string(SPI_result))));
	if (nplans >= PLAN_MAX)
		return plan;			/* (one-off: freed with the transaction) */
	SPI_keepplan(plan);
	k = MemoryContextAlloc(TopMemoryContext, sizeof(KeptPlan));
	k->sql = MemoryContextStrdup(TopMemoryContext, sql);
	k->plan = plan;
	k->next = plans[h];
	plans[h] = k;
	nplans++;
	return plan;
}

void
aa_spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc;
	MemoryContext caller = CurrentMemoryContext;

	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	rc = SPI_execute_plan(kept_plan(sql, nargs, types), values, nulls, false, 0);
	/* SPI leaves its own procedure context current: back to the caller's, so
	 * that what is allocated after this lives as long as the caller means it
	 * to (a relation's cache entry, a change's memory freed with the change) */
	MemoryContextSwitchTo(caller);

	if (rc < 0 || (expect >= 0 && SPI_processed != (uint64) expect))
		ereport(ERROR,
				(errmsg("pgvigil_aa: applying from peer \"%s\": \"%s\" returned %d (%llu rows)", aa_peer_name, sql, rc,
						(unsigned long long) SPI_processed)));
}

char *
aa_spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* the node a replication origin stands for: its name after the prefix */
char *
aa_origin_node(const char *roname)
{
	if (roname == NULL || roname[0] == '\0')
		return pstrdup(aa_local_name);
	if (strncmp(roname, AA_ORIGIN_PREFIX, strlen(AA_ORIGIN_PREFIX)) == 0)
		return pstrdup(roname + strlen(AA_ORIGIN_PREFIX));
	return pstrdup(roname);
}

/* ---- transactions and the stream */

static void
begin_remote(StringInfo s)
{
	LogicalRepBeginData begin;

	logicalrep_read_begin(s, &begin);
	aa_remote_commit_ts = begin.committime;
	if (aa_my_state)
		aa_my_state->applying_commit_ts = begin.committime;
	aa_change_begin_transaction();
	aa_direct_forget();
	/* what the writer had seen: nothing, until its transaction says more */
	{
		static AaSeen none;

		none.n = 0;
		aa_applying_seen = &none;
	}
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(ApplyMessageCxt);
	in_remote_txn = true;
}

static void
commit_remote(StringInfo s)
{
	LogicalRepCommitData commit;

	logicalrep_read_commit(s, &commit);
	if (!in_remote_txn)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent COMMIT outside a transaction", aa_peer_name)));
	aa_direct_close_all();
	/* what has been applied from the peer, for the causality messages after
	 * a restart (pgvigil_aa_seen.c): in the same commit */
	PushActiveSnapshot(GetTransactionSnapshot());
	/* (applied_lsn: what a snapshot of this node holds from the peer, for a
	 * node that joins with a copy of this one) */
	aa_direct_note_applied(aa_peer_name, commit.committime, commit.end_lsn);
	aa_change_end_transaction();
	PopActiveSnapshot();
	SPI_finish();
	/* the origin's progress and the remote commit time go into this very commit */
	replorigin_session_origin_lsn = commit.end_lsn;
	replorigin_session_origin_timestamp = commit.committime;
	CommitTransactionCommand();
	MemoryContextSwitchTo(ApplyMessageCxt);
	pgstat_report_stat(false);
	last_applied = commit.end_lsn;
	remember_commit(XactLastCommitEnd, commit.end_lsn);
	in_remote_txn = false;
	aa_applying_seen = NULL;
	/* after the commit, never before: a client's statement that counts it as
	 * seen must find its rows */
	if (aa_my_state)
	{
		LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
		/* never back: a peer's commits can reach the WAL out of their time order */
		aa_my_state->applied_commit_ts = Max(aa_my_state->applied_commit_ts, commit.committime);
		aa_my_state->applied_lsn = commit.end_lsn;
		aa_my_state->applied_txns++;
		aa_my_state->applying_commit_ts = 0;
		/* a transaction applied: the error that stopped the worker before is over */
		aa_my_state->error[0] = '\0';
		LWLockRelease(aa_shared->lock);
	}
}

/* A message of the peer: its causality message, for the rows that follow. */
static void
handle_message(StringInfo s)
{
	static AaSeen seen;
	const char *prefix;
	int			len;
	const char *content;

	(void) pq_getmsgbyte(s);	/* flags */
	(void) pq_getmsgint64(s);	/* its LSN */
	prefix = pq_getmsgstring(s);
	len = pq_getmsgint(s, 4);
	content = pq_getmsgbytes(s, len);
	if (strcmp(prefix, AA_DDL_PREFIX) == 0)
	{
		aa_direct_close_all();	/* (DDL wants its tables unused) */
		aa_ddl_apply(content, len);
		return;
	}
	if (strcmp(prefix, AA_SEEN_PREFIX) != 0)
		return;
	if (!aa_seen_parse(content, len, &seen))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a malformed causality message", aa_peer_name)));
	aa_applying_seen = &seen;
}

/* A change runs with a snapshot of its own: it sees what committed here
 * before it (the local version it is compared with) and the changes of its
 * transaction before it. */
static void
apply_change(void (*apply) (StringInfo), StringInfo s)
{
	MemoryContext old = MemoryContextSwitchTo(ChangeCxt);

	PushActiveSnapshot(GetTransactionSnapshot());
	apply(s);
	PopActiveSnapshot();
	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(old);
	/* (a change's memory goes with it: a large transaction does not pile it up) */
	MemoryContextReset(ChangeCxt);
}

static void
apply_dispatch(StringInfo s)
{
	char		action = pq_getmsgbyte(s);

	if (!in_remote_txn && action != LOGICAL_REP_MSG_BEGIN && action != LOGICAL_REP_MSG_RELATION &&
		action != LOGICAL_REP_MSG_TYPE && action != LOGICAL_REP_MSG_ORIGIN)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" sent a change outside a transaction", aa_peer_name)));
	switch (action)
	{
		case LOGICAL_REP_MSG_BEGIN:
			begin_remote(s);
			break;
		case LOGICAL_REP_MSG_COMMIT:
			commit_remote(s);
			break;
		case LOGICAL_REP_MSG_RELATION:
			aa_handle_relation(s);
			break;
		case LOGICAL_REP_MSG_TYPE:
			{
				LogicalRepTyp typ;

				logicalrep_read_typ(s, &typ);
				break;
			}
		case LOGICAL_REP_MSG_MESSAGE:
			handle_message(s);
			break;
		case LOGICAL_REP_MSG_ORIGIN:
			{
				XLogRecPtr	lsn;

				(void) logicalrep_read_origin(s, &lsn);
				break;
			}
		case LOGICAL_REP_MSG_INSERT:
			apply_change(aa_apply_insert, s);
			break;
		case LOGICAL_REP_MSG_UPDATE:
			apply_change(aa_apply_update, s);
			break;
		case LOGICAL_REP_MSG_DELETE:
			apply_change(aa_apply_delete, s);
			break;
		case LOGICAL_REP_MSG_TRUNCATE:
			apply_change(aa_apply_truncate, s);
			break;
		default:
			ereport(ERROR,
					(errmsg("pgvigil_aa: peer \"%s\" sent an unexpected message \"%c\"", aa_peer_name, action)));
	}
}

/* The stream's progress in shared memory: the peer's WAL end, and at a
 * keepalive the clocks' difference (this node's minus the peer's, transit
 * included: an upper bound of the skew when positive). */
static void
note_stream(XLogRecPtr peer_wal_end, TimestampTz peer_sent_at)
{
	TimestampTz now;

	if (aa_my_state == NULL)
		return;
	now = GetCurrentTimestamp();
	aa_my_state->received_lsn = last_received;
	aa_my_state->peer_wal_end = Max(aa_my_state->peer_wal_end, peer_wal_end);
	aa_my_state->last_message_at = now;
	if (peer_sent_at != 0)
		aa_my_state->skew_us = now - peer_sent_at;
}

/* the last error of the worker, kept for the status view */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
keep_error(ErrorData *edata)
{
	/* (an error that stops the worker; not its termination by the launcher
	 * or at shutdown, which is FATAL) */
	if (edata->elevel == ERROR && aa_my_state && edata->message)
		strlcpy(aa_my_state->error, edata->message, sizeof(aa_my_state->error));
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static void
leave_shared(int code, Datum arg)
{
	if (aa_my_state)
		aa_my_state->pid = 0;
}

static TimestampTz last_sent_at = 0;

/*
 * Applied commits not known to be durable here yet: the local end of each
 * commit and the peer's end of the transaction it applied.  Commits are
 * asynchronous (no flush each); the peer is told a position only once the
 * local WAL up to its commit is flushed, so a crash here never loses what
 * the peer was told, and one flush covers a whole batch of transactions.
 */
#define PENDING_MAX 4096
static struct
{
	XLogRecPtr	local_end;
	XLogRecPtr	remote_end;
}			pending[PENDING_MAX];
static int	npending = 0;
static XLogRecPtr durable_remote = InvalidXLogRecPtr;

/* what the flushed local WAL makes durable: the pending commits it covers */
static void
pop_durable(bool flush_now)
{
	XLogRecPtr	flushed;
	int			n = 0;

	if (npending == 0)
		return;
	if (flush_now)
		XLogFlush(pending[npending - 1].local_end);
	flushed = GetFlushRecPtr(NULL);
	while (n < npending && pending[n].local_end <= flushed)
		durable_remote = pending[n++].remote_end;
	memmove(pending, pending + n, sizeof(pending[0]) * (npending - n));
	npending -= n;
}

static void
remember_commit(XLogRecPtr local_end, XLogRecPtr remote_end)
{
	if (npending == PENDING_MAX)
		pop_durable(true);
	pending[npending].local_end = local_end;
	pending[npending].remote_end = remote_end;
	npending++;
}

/*
 * What this node has applied and made durable, so the peer's slot keeps no
 * more WAL than needed: everything received, once no remote transaction is
 * open and every applied commit is flushed.  flush_now: flush first (when
 * the stream pauses, once a second in a backlog, on the peer's request).
 */
/* the peer's last word, and whether it was asked for one since (receive_timeout) */
static TimestampTz last_heard_at = 0;
static bool ping_sent = false;
static TimestampTz ping_sent_at = 0;

int			aa_receive_timeout = 30000;

static void
send_feedback(WalReceiverConn *wrconn, bool force, bool ping)
{
	static XLogRecPtr last_sent = InvalidXLogRecPtr;
	XLogRecPtr	pos;
	TimestampTz now = GetCurrentTimestamp();

	pop_durable(true);
	if (npending > 0)
		pos = durable_remote;
	else
		pos = in_remote_txn ? last_applied : Max(last_applied, last_received);

	if (!force && !ping && pos == last_sent && !TimestampDifferenceExceeds(last_sent_at, now, FEEDBACK_INTERVAL_MS))
		return;
	resetStringInfo(reply_message);
	pq_sendbyte(reply_message, 'r');
	pq_sendint64(reply_message, pos);	/* written */
	pq_sendint64(reply_message, pos);	/* flushed */
	pq_sendint64(reply_message, pos);	/* applied */
	pq_sendint64(reply_message, now);
	pq_sendbyte(reply_message, ping);	/* the peer answers with a keepalive */
	walrcv_send(wrconn, reply_message->data, reply_message->len);
	if (aa_my_state)
		aa_my_state->confirmed_lsn = pos;
	last_sent = pos;
	last_sent_at = now;
}

static void
read_setup(char **conninfo, char **slot, RepOriginId *origin, TimestampTz *applied_ts)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		originname[NAMEDATALEN];

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(aa_peer_name);
	aa_spi_exec("SELECT conninfo, slot_name, applied_commit_ts, enabled FROM pgvigil_aa.peers WHERE name = $1",
				1, types, values, NULL, -1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" is not in pgvigil_aa.peers", aa_peer_name)));
	if (strcmp(aa_spi_text(0, 4), "t") != 0)
	{
		ereport(LOG, (errmsg("pgvigil_aa: the apply from peer \"%s\" is paused", aa_peer_name)));
		proc_exit(0);
	}
	*conninfo = MemoryContextStrdup(ApplyContext, aa_spi_text(0, 1));
	*slot = MemoryContextStrdup(ApplyContext, aa_spi_text(0, 2));
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);

		*applied_ts = isnull ? 0 : DatumGetTimestampTz(d);
	}
	aa_spi_exec("SELECT name FROM pgvigil_aa.local_node", 0, NULL, NULL, NULL, -1);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errmsg("pgvigil_aa: this node has no name in pgvigil_aa.local_node")));
	strlcpy(aa_local_name, aa_spi_text(0, 1), NAMEDATALEN);
	if (strcmp(aa_local_name, aa_peer_name) == 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" has this node's own name", aa_peer_name)));
	SPI_finish();
	PopActiveSnapshot();
	snprintf(originname, sizeof(originname), "%s%s", AA_ORIGIN_PREFIX, aa_peer_name);
	*origin = replorigin_by_name(originname, true);
	if (*origin == InvalidRepOriginId)
		*origin = replorigin_create(originname);
	CommitTransactionCommand();
}

/* The tie-break compares node names: the peer must call itself what this
 * node calls it, or two nodes could pick different winners. */
static void
check_peer(WalReceiverConn *wrconn)
{
	Oid			types2[2] = {TEXTOID, BOOLOID};
	WalRcvExecResult *res = walrcv_exec(wrconn,
										"SELECT name, 'pgvigil_aa' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"
										" FROM pgvigil_aa.local_node", 2, types2);
	TupleTableSlot *slot;
	bool		isnull;
	char	   *name;

	if (res->status != WALRCV_OK_TUPLES)
		ereport(ERROR,
				(errmsg("pgvigil_aa: cannot read the name of peer \"%s\": %s", aa_peer_name,
						res->err ? res->err : "no answer")));
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	if (!tuplestore_gettupleslot(res->tuplestore, true, false, slot))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" has no name in its pgvigil_aa.local_node", aa_peer_name)));
	name = TextDatumGetCString(slot_getattr(slot, 1, &isnull));
	if (strcmp(name, aa_peer_name) != 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" calls itself \"%s\"", aa_peer_name, name),
				 errhint("Name it in pgvigil_aa.peers as it names itself in its pgvigil_aa.local_node.")));
	/* its causality messages tell concurrent changes from later ones */
	if (!DatumGetBool(slot_getattr(slot, 2, &isnull)))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" does not have pgvigil_aa in shared_preload_libraries", aa_peer_name),
				 errdetail("Without it the peer does not say what it had applied when it wrote, and conflicts with deletes cannot be told apart.")));
	ExecDropSingleTupleTableSlot(slot);
	walrcv_clear_result(res);
}

/*
 * The peer's slot for this node must exist and still hold what this node
 * has not applied.  A slot the peer invalidated (this node was away longer
 * than the peer's max_slot_wal_keep_size allows) cannot be caught up from:
 * the node must be rebuilt, and the worker says so rather than retry in vain.
 */
static void
check_slot(WalReceiverConn *wrconn, const char *slot)
{
	Oid			types[1] = {TEXTOID};
	char	   *sql = psprintf("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", quote_literal_cstr(slot));
	WalRcvExecResult *res = walrcv_exec(wrconn, sql, 1, types);
	TupleTableSlot *tslot;
	bool		isnull;
	char	   *status;

	if (res->status != WALRCV_OK_TUPLES)
		ereport(ERROR,
				(errmsg("pgvigil_aa: cannot read slot \"%s\" on peer \"%s\": %s", slot, aa_peer_name,
						res->err ? res->err : "no answer")));
	tslot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	if (!tuplestore_gettupleslot(res->tuplestore, true, false, tslot))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" has no slot \"%s\"", aa_peer_name, slot),
				 errhint("Create it there: SELECT pg_create_logical_replication_slot('%s', 'pgvigil_aa'); a node that missed"
						 " changes meanwhile must be rebuilt.", slot)));
	status = TextDatumGetCString(slot_getattr(tslot, 1, &isnull));
	if (!isnull && strcmp(status, "lost") == 0)
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" invalidated slot \"%s\": this node was away longer than the peer keeps WAL for it"
						" (max_slot_wal_keep_size) and must be rebuilt from the group", aa_peer_name, slot),
				 errdetail("The changes this node missed are gone from the peer; applying what is left would leave the nodes different.")));
	ExecDropSingleTupleTableSlot(tslot);
	walrcv_clear_result(res);
}

void
pgvigil_aa_apply_main(Datum arg)
{
	char	   *conninfo,
			   *slot,
			   *err = NULL;
	RepOriginId origin;
	TimestampTz applied_ts;
	WalReceiverConn *wrconn;
	WalRcvStreamOptions options;

	strlcpy(aa_peer_name, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);

	ApplyContext = AllocSetContextCreate(TopMemoryContext, "pgvigil_aa apply", ALLOCSET_DEFAULT_SIZES);
	ApplyMessageCxt = AllocSetContextCreate(ApplyContext, "pgvigil_aa apply message", ALLOCSET_DEFAULT_SIZES);
	ChangeCxt = AllocSetContextCreate(ApplyContext, "pgvigil_aa apply change", ALLOCSET_DEFAULT_SIZES);
	/*
	 * As PostgreSQL's own apply worker: local triggers and foreign keys do not
	 * fire for applied rows (the peer ran them), commits do not wait for
	 * their flush but are confirmed to the peer only once flushed
	 * (pop_durable), and nothing of the database's own settings changes how
	 * rows are matched or locked.
	 */
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* key values are compared with tombstones as the same text */
	aa_canonical_output_always();
	read_setup(&conninfo, &slot, &origin, &applied_ts);
	aa_my_state = aa_peer_state(MyDatabaseId, aa_peer_name);
	if (aa_my_state == NULL)
		ereport(ERROR,
				(errmsg("pgvigil_aa: no room for peer \"%s\" in shared memory", aa_peer_name),
				 errhint("pgvigil_aa must be in shared_preload_libraries; it keeps at most %d peers.", AA_MAX_PEERS)));
	{
		/* what was applied before a restart: the clients' causality
		 * messages count it as seen */
		int			other;

		LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
		aa_my_state->applied_commit_ts = Max(aa_my_state->applied_commit_ts, applied_ts);
		/* one worker per peer: a second one (the launcher's and start_apply's
		 * at once) leaves */
		other = aa_my_state->pid;
		if (other == 0 || other == MyProcPid || kill(other, 0) != 0)
			aa_my_state->pid = MyProcPid;
		LWLockRelease(aa_shared->lock);
		if (aa_my_state->pid != MyProcPid)
		{
			ereport(LOG, (errmsg("pgvigil_aa: the apply from peer \"%s\" runs already (pid %d)", aa_peer_name, other)));
			aa_my_state = NULL;
			proc_exit(0);
		}
		before_shmem_exit(leave_shared, (Datum) 0);
		prev_emit_log_hook = emit_log_hook;
		emit_log_hook = keep_error;
	}
	/* (so that pg_stat_activity tells the workers apart) */
	{
		char		appname[NAMEDATALEN + 32];

		snprintf(appname, sizeof(appname), "pgvigil_aa apply from %s", aa_peer_name);
		SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);
	}
	replorigin_session_setup(origin);
	replorigin_session_origin = origin;

	aa_relations_init(ApplyContext);
	{
		MemoryContext old = MemoryContextSwitchTo(ApplyContext);

		reply_message = makeStringInfo();
		MemoryContextSwitchTo(old);
	}

	load_file("libpqwalreceiver", false);
	/*
	 * Named after this node on the peer (pg_stat_replication), so that the
	 * peer can wait for it: synchronous_standby_names = 'pgvigil_aa_<node>'
	 * there makes a commit return once this node has applied it (the
	 * feedback confirms only what is applied and durable here).
	 */
	{
		char		appname[NAMEDATALEN + 16];

		snprintf(appname, sizeof(appname), "pgvigil_aa_%s", aa_local_name);
		wrconn = walrcv_connect(conninfo, true, appname, &err);
	}
	if (wrconn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("pgvigil_aa: cannot connect to peer \"%s\": %s", aa_peer_name, err)));
	/* (the answer's row type is built from the catalogs: in a transaction) */
	StartTransactionCommand();
	check_peer(wrconn);
	check_slot(wrconn, slot);
	CommitTransactionCommand();
	memset(&options, 0, sizeof(options));
	options.logical = true;
	options.startpoint = replorigin_session_get_progress(false);
	options.slotname = slot;
	options.proto.logical.proto_version = LOGICALREP_PROTO_VERSION_NUM;
	/* (the plugin has no publications; libpqwalreceiver names at least one) */
	options.proto.logical.publication_names = list_make1(makeString("pgvigil_aa"));
	if (!walrcv_startstreaming(wrconn, &options))
		ereport(ERROR,
				(errmsg("pgvigil_aa: peer \"%s\" did not start streaming from slot \"%s\"", aa_peer_name, slot)));
	last_applied = options.startpoint;
	/* streaming again: an error that stopped an earlier worker is over; what
	 * the peer's slot has confirmed is where the stream starts */
	if (aa_my_state)
	{
		aa_my_state->error[0] = '\0';
		aa_my_state->confirmed_lsn = options.startpoint;
	}
	ereport(LOG,
			(errmsg("pgvigil_aa: applying from peer \"%s\" (slot \"%s\") from %X/%X", aa_peer_name, slot,
					LSN_FORMAT_ARGS(options.startpoint))));

	MemoryContextSwitchTo(ApplyMessageCxt);
	last_heard_at = GetCurrentTimestamp();
	for (;;)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		char	   *buf;
		int			len;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		len = walrcv_receive(wrconn, &buf, &fd);
		while (len != 0)
		{
			StringInfoData s;
			char		kind;

			if (len < 0)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("pgvigil_aa: the stream from peer \"%s\" ended", aa_peer_name)));
			s.data = buf;
			s.len = len;
			s.cursor = 0;
			s.maxlen = -1;
			last_heard_at = GetCurrentTimestamp();
			ping_sent = false;
			kind = pq_getmsgbyte(&s);
			if (kind == 'w')
			{
				XLogRecPtr	start = pq_getmsgint64(&s);
				XLogRecPtr	end = pq_getmsgint64(&s);

				(void) pq_getmsgint64(&s);	/* the peer's send time */
				last_received = Max(last_received, Max(start, end));
				note_stream(end, 0);
				apply_dispatch(&s);
			}
			else if (kind == 'k')
			{
				XLogRecPtr	end = pq_getmsgint64(&s);
				TimestampTz sent_at = pq_getmsgint64(&s);
				bool		reply;

				reply = pq_getmsgbyte(&s);
				note_stream(end, sent_at);
				last_received = Max(last_received, end);
				send_feedback(wrconn, reply, false);
			}
			if (!in_remote_txn)
			{
				MemoryContextReset(ApplyMessageCxt);
				/* a backlog keeps the socket busy: progress is confirmed every
				 * second all the same, and a pause or shutdown is heard */
				if (TimestampDifferenceExceeds(last_sent_at, GetCurrentTimestamp(), FEEDBACK_INTERVAL_MS))
					send_feedback(wrconn, false, false);
			}
			CHECK_FOR_INTERRUPTS();
			/* a backlog never waits on the latch: the postmaster's death is
			 * noticed here, not after the whole backlog */
			if (!PostmasterIsAlive())
				proc_exit(1);
			len = walrcv_receive(wrconn, &buf, &fd);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* a peer that says nothing: asked for a word half way, dropped when the
		 * question stayed unanswered for the other half (the feedback sent every
		 * second keeps TCP from probing a silent peer; time this worker spent
		 * applying is not the peer's silence: it asks first) */
		if (aa_receive_timeout > 0 && last_heard_at != 0)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (!ping_sent && TimestampDifferenceExceeds(last_heard_at, now, aa_receive_timeout / 2))
			{
				send_feedback(wrconn, true, true);
				ping_sent = true;
				ping_sent_at = now;
			}
			else if (ping_sent && TimestampDifferenceExceeds(ping_sent_at, now, aa_receive_timeout / 2))
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("pgvigil_aa: peer \"%s\" said nothing for %d ms (pgvigil_aa.receive_timeout): the connection is dropped",
								aa_peer_name, aa_receive_timeout)));
		}
		send_feedback(wrconn, false, false);
		rc = WaitLatchOrSocket(MyLatch, WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   fd, FEEDBACK_INTERVAL_MS, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
}
