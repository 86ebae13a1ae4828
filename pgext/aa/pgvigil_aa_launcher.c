/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_launcher.c
 *	  The launcher: keeps one apply worker running per enabled peer.
 *
 * A background worker of its own (registered when pgvigil_aa is in
 * shared_preload_libraries), connected to the database pgvigil_aa.database.
 * Every second it compares pgvigil_aa.peers with the workers that run: it
 * starts the worker of an enabled peer that has none (again 5 s after the
 * last start, so a worker that keeps failing is retried at that pace), and
 * stops the worker of a peer that was disabled or removed.  So workers come
 * back after a server restart or a crash, and pausing a peer is a row
 * update (pgvigil_aa.pause / pgvigil_aa.resume).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <signal.h>

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_shared.h"

extern PGDLLEXPORT void pgvigil_aa_launcher_main(Datum arg);

#define RETRY_MS 5000

char	   *aa_database = NULL;
static int	tombstone_retention_min = 10080;

#define PRUNE_INTERVAL_MS 60000

/* the peers of the last look, and when each worker was last started */
typedef struct LaunchedPeer
{
	char		name[NAMEDATALEN];
	bool		enabled;
	TimestampTz started_at;
} LaunchedPeer;

static LaunchedPeer launched[AA_MAX_PEERS];
static int	nlaunched = 0;

void
aa_launcher_register(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable("pgvigil_aa.database",
							   "The database whose pgvigil_aa.peers the launcher keeps applying from.",
							   NULL, &aa_database, "postgres", PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgvigil_aa.tombstone_retention",
							"How long a deleted key is remembered.",
							"A peer away longer must be rebuilt: an update of a row deleted before could bring it back.",
							&tombstone_retention_min, 10080, 1, INT_MAX / 60000, PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgvigil_aa.receive_timeout",
							"How long an apply worker waits for a word from its peer before it drops the connection.",
							"Half way, it asks the peer for one. 0: never (a silent peer is noticed when TCP gives up).",
							&aa_receive_timeout, 30000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgvigil_aa");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgvigil_aa_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgvigil_aa launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgvigil_aa launcher");
	RegisterBackgroundWorker(&worker);
}

static LaunchedPeer *
launched_peer(const char *name)
{
	for (int i = 0; i < nlaunched; i++)
		if (strcmp(launched[i].name, name) == 0)
			return &launched[i];
	if (nlaunched == AA_MAX_PEERS)
		return NULL;
	memset(&launched[nlaunched], 0, sizeof(LaunchedPeer));
	strlcpy(launched[nlaunched].name, name, NAMEDATALEN);
	return &launched[nlaunched++];
}

/* read pgvigil_aa.peers (nothing when the extension is not there) */
static void
read_peers(void)
{
	for (int i = 0; i < nlaunched; i++)
		launched[i].enabled = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pgvigil_aa launcher: reading pgvigil_aa.peers");
	aa_spi_exec("SELECT count(*)::text FROM pg_extension WHERE extname = 'pgvigil_aa'", 0, NULL, NULL, NULL, 1);
	if (strcmp(aa_spi_text(0, 1), "1") == 0)
	{
		static TimestampTz pruned_at = 0;

		/* tombstones past their retention, and those of dropped tables */
		if (TimestampDifferenceExceeds(pruned_at, GetCurrentTimestamp(), PRUNE_INTERVAL_MS))
		{
			char		sql[256];

			snprintf(sql, sizeof(sql),
					 "DELETE FROM pgvigil_aa.tombstones t WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid)"
					 " OR pg_xact_commit_timestamp(t.xmin) < now() - interval '%d minutes'", tombstone_retention_min);
			aa_spi_exec(sql, 0, NULL, NULL, NULL, -1);
			pruned_at = GetCurrentTimestamp();
		}
		aa_spi_exec("SELECT name, enabled::text FROM pgvigil_aa.peers", 0, NULL, NULL, NULL, -1);
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			LaunchedPeer *p = launched_peer(aa_spi_text(row, 1));

			if (p)
				p->enabled = strcmp(aa_spi_text(row, 2), "true") == 0;
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* the pid of the peer's running worker, 0 if none */
static int
running_worker(const char *name)
{
	int			pid = 0;

	LWLockAcquire(aa_shared->lock, LW_SHARED);
	for (int i = 0; i < AA_MAX_PEERS; i++)
	{
		AaPeerState *p = &aa_shared->peers[i];

		if (p->in_use && p->dbid == MyDatabaseId && strcmp(p->name, name) == 0)
			pid = p->pid;
	}
	LWLockRelease(aa_shared->lock);
	if (pid != 0 && kill(pid, 0) != 0)
		pid = 0;
	return pid;
}

static void
reconcile(void)
{
	TimestampTz now;

	read_peers();
	now = GetCurrentTimestamp();
	for (int i = 0; i < nlaunched; i++)
	{
		LaunchedPeer *p = &launched[i];
		int			pid = running_worker(p->name);

		if (p->enabled && pid == 0 && TimestampDifferenceExceeds(p->started_at, now, RETRY_MS))
		{
			p->started_at = now;
			if (!aa_register_apply(MyDatabaseId, p->name, NULL))
				ereport(WARNING,
						(errmsg("pgvigil_aa launcher: no background worker slot for peer \"%s\"", p->name),
						 errhint("Raise max_worker_processes.")));
		}
		else if (!p->enabled && pid != 0)
		{
			ereport(LOG, (errmsg("pgvigil_aa launcher: stopping the apply from peer \"%s\" (disabled or removed)", p->name)));
			kill(pid, SIGTERM);
		}
	}
}

/*
 * pgvigil_aa.peers changed (a peer paused, resumed, added or removed): the
 * launcher is woken when the transaction commits, not at its next look a
 * second later.  A statement trigger on the table; the apply workers' own
 * bookkeeping there (session_replication_role = replica) does not fire it.
 */
static bool peers_changed = false;
static bool wake_registered = false;

static void
wake_launcher_at_commit(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && peers_changed && aa_shared)
	{
		Latch	   *latch;

		LWLockAcquire(aa_shared->lock, LW_SHARED);
		latch = aa_shared->launcher_latch;
		LWLockRelease(aa_shared->lock);
		if (latch)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
		peers_changed = false;
}

PG_FUNCTION_INFO_V1(pgvigil_aa_peers_changed);

Datum
pgvigil_aa_peers_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errmsg("pgvigil_aa_peers_changed: not called as a trigger")));
	if (!wake_registered)
	{
		RegisterXactCallback(wake_launcher_at_commit, NULL);
		wake_registered = true;
	}
	peers_changed = true;
	return PointerGetDatum(NULL);
}

/* (a launcher that exits leaves no latch of its own for commits to set) */
static void
forget_launcher_latch(int code, Datum arg)
{
	if (aa_shared)
	{
		LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
		if (aa_shared->launcher_latch == MyLatch)
			aa_shared->launcher_latch = NULL;
		LWLockRelease(aa_shared->lock);
	}
}

void
pgvigil_aa_launcher_main(Datum arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(aa_database, NULL, 0);
	/* (its own writes, the tombstones it prunes, are nothing to tell the peers) */
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	if (aa_shared)
	{
		LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
		aa_shared->launcher_latch = MyLatch;
		LWLockRelease(aa_shared->lock);
		before_shmem_exit(forget_launcher_latch, (Datum) 0);
	}
	ereport(LOG, (errmsg("pgvigil_aa launcher: keeping the apply workers of database \"%s\" running", aa_database)));
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		reconcile();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
