/*-------------------------------------------------------------------------
 *
 * pgvigil_guard.c
 *		Commit guard: no commit is made, and none is acknowledged, once the
 *		pgvigil agent's leader lease has run out.
 *
 * The agent's fencing process kills postgres when the lease deadline passes,
 * but killing takes a few milliseconds, and a node that was frozen as a whole
 * (SIGSTOP of every process, a suspended machine) resumes all its processes
 * at once: a backend with a COMMIT already in its socket can acknowledge it
 * before the fencing process, resumed at the same moment, has killed it,
 * while another node has been promoted in the meantime.  This module closes
 * that window from inside the server:
 *
 *	- before a write transaction commits (XACT_EVENT_PRE_COMMIT, and
 *	  PRE_PREPARE; COMMIT PREPARED before it runs), a passed deadline aborts
 *	  it with an ERROR: the client gets a definite failure and nothing is
 *	  written;
 *	- after the commit record is written, and after any synchronous
 *	  replication wait (XACT_EVENT_COMMIT, and PREPARE), the acknowledgement
 *	  is held while the deadline has passed, until the agent renews the same
 *	  lease (that renewal succeeded, so no other node was promoted).  If the
 *	  agent holds a new lease instead, or the backend is told to terminate, or
 *	  the postmaster dies, the backend leaves without sending the
 *	  acknowledgement, as synchronous replication does.
 *
 * The deadline comes from the lease file (src/common/lease_file.h) that the
 * agent keeps mapped and updates; each backend maps it read-only, so the
 * check costs a clock read and a memory load.  The parameter
 * pgvigil_guard.lease_file names it; empty turns the guard off.  A missing,
 * malformed or unsafe (writable by others) file turns it off too, with a
 * WARNING (the agent creates the file before it starts postgres), so that a
 * deleted file cannot stop every commit of a healthy primary.
 *
 * Nothing here allocates: the commit-time paths must not raise an ERROR
 * after the commit record (it would become a PANIC).
 *
 * Copyright (c) pgvigil authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/wait_event.h"

#include "lease_file.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* pgvigil_guard.lease_file */
static char *guard_lease_file = NULL;

/* this backend's mapping of the lease file */
static const volatile LeaseFileLayout *lease_map = NULL;
static char lease_map_path[MAXPGPATH];
static ino_t lease_map_ino;

/* a WARNING about an unusable file is given once per backend and path */
static char warned_path[MAXPGPATH];

/* did the transaction being committed write anything (has an xid)? */
static bool xact_wrote = false;

/*
 * Is it a COMMIT PREPARED?  Its transaction has no xid of its own, but it
 * commits one that was prepared earlier.
 */
static bool xact_commits_prepared = false;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* the agent's clock: monotonic, suspended time included */
static int64
lease_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
lease_unmap(void)
{
	if (lease_map != NULL)
		munmap((void *) lease_map, sizeof(LeaseFileLayout));
	lease_map = NULL;
	lease_map_path[0] = '\0';
}

static void
warn_unusable(const char *path, const char *why)
{
	if (strcmp(warned_path, path) == 0)
		return;
	strlcpy(warned_path, path, sizeof(warned_path));
	ereport(WARNING,
			(errmsg("pgvigil_guard: lease file \"%s\" %s; commits are not guarded", path, why),
			 errhint("The pgvigil agent creates it before it starts the server; is the agent running?")));
}

/*
 * Map the lease file named by the parameter.  Returns false when the guard
 * is off (no file named, or the file cannot be used).
 */
static bool
lease_map_open(void)
{
	const char *path = guard_lease_file;
	int			fd;
	struct stat st;
	void	   *p;

	if (path == NULL || path[0] == '\0' || strlen(path) >= MAXPGPATH)
	{
		lease_unmap();
		return false;
	}
	if (lease_map != NULL && strcmp(lease_map_path, path) == 0)
		return true;
	lease_unmap();

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
	{
		warn_unusable(path, strerror(errno));
		return false;
	}
	if (fstat(fd, &st) != 0 || st.st_size < (off_t) sizeof(LeaseFileLayout))
	{
		close(fd);
		warn_unusable(path, "is too short");
		return false;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
	{
		close(fd);
		warn_unusable(path, "is not a regular file writable by its owner alone");
		return false;
	}
	p = mmap(NULL, sizeof(LeaseFileLayout), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
	{
		warn_unusable(path, strerror(errno));
		return false;
	}
	if (memcmp(((const LeaseFileLayout *) p)->magic, LEASE_FILE_MAGIC, LEASE_FILE_MAGIC_LEN) != 0)
	{
		munmap(p, sizeof(LeaseFileLayout));
		warn_unusable(path, "is not a pgvigil lease file (or of another version)");
		return false;
	}
	lease_map = (const volatile LeaseFileLayout *) p;
	strlcpy(lease_map_path, path, sizeof(lease_map_path));
	lease_map_ino = st.st_ino;
	return true;
}

/*
 * Has the lease run out?  Returns the milliseconds since the deadline passed,
 * or 0 while the lease holds (or there is no deadline, or no guard).  *gen
 * gets the lease generation the deadline belongs to.
 */
static int64
lease_overdue_ms(uint64 *gen)
{
	int64		deadline;
	int64		now;
	struct stat st;

	*gen = 0;
	if (!lease_map_open())
		return 0;
	*gen = lease_map->lease_gen;
	deadline = lease_map->deadline_ms;
	now = lease_clock_ms();
	if (deadline == 0 || now < deadline)
		return 0;

	/*
	 * Slow path: the agent may have made the file anew (it was deleted), and
	 * this mapping is of the old one.
	 */
	if (stat(lease_map_path, &st) == 0 && st.st_ino != lease_map_ino)
	{
		lease_unmap();
		if (!lease_map_open())
			return 0;
		*gen = lease_map->lease_gen;
		deadline = lease_map->deadline_ms;
		if (deadline == 0 || now < deadline)
			return 0;
	}
	return now - deadline + 1;
}

static void
refuse_if_overdue(void)
{
	uint64		gen;
	int64		overdue = lease_overdue_ms(&gen);

	if (overdue > 0)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot commit: this server's leader lease ran out " INT64_FORMAT " ms ago", overdue),
				 errdetail("pgvigil stops a primary whose agent could not renew its lease; another node may be primary now."),
				 errhint("Reconnect through the cluster's address to reach the current primary.")));
}

/* Before the commit record: a passed deadline aborts the transaction. */
static void
guard_before_commit(void)
{
	/*
	 * COMMIT PREPARED was checked before it ran, and has committed by now:
	 * only its acknowledgement is left to guard.
	 */
	if (xact_commits_prepared)
	{
		xact_wrote = true;
		return;
	}
	xact_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
	if (xact_wrote)
		refuse_if_overdue();
}

/* Leave without acknowledging: no reply, and the backend exits at its next interrupt check. */
static void
drop_acknowledgement(const char *why)
{
	/* first, so that nothing buffered (a CommandComplete) is flushed by the message */
	whereToSendOutput = DestNone;
	ProcDiePending = true;
	InterruptPending = true;
	ereport(WARNING,
			(errmsg("pgvigil_guard: terminating without acknowledging a commit made as the leader lease ran out (%s)", why)));
}

/*
 * After the commit record (and any synchronous replication wait): hold the
 * acknowledgement while the deadline has passed.
 */
static void
guard_before_acknowledging(void)
{
	bool		logged = false;
	uint64		held_gen = 0;

	if (!xact_wrote)
		return;
	xact_wrote = false;
	for (;;)
	{
		int			rc;
		uint64		gen;

		if (lease_overdue_ms(&gen) == 0)
		{
			/* renewed: only the lease the commit was made under proves it */
			if (logged && gen != held_gen)
				drop_acknowledgement("the agent holds a new lease");
			break;
		}
		if (!logged)
		{
			held_gen = gen;
			ereport(LOG_SERVER_ONLY,
					(errmsg("pgvigil_guard: holding the acknowledgement of a commit: the leader lease ran out")));
			logged = true;
		}
		else if (gen != held_gen)
		{
			drop_acknowledgement("the agent holds a new lease");
			break;
		}
		if (ProcDiePending)
		{
			drop_acknowledgement("termination requested");
			break;
		}
		/* a cancel cannot take back a commit; it must not hit the next statement either */
		QueryCancelPending = false;
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH, 5L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_POSTMASTER_DEATH)
		{
			drop_acknowledgement("the postmaster died");
			break;
		}
	}
}

/* COMMIT PREPARED: refused past the deadline before it commits anything */
static void
guard_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		refuse_if_overdue();
		xact_commits_prepared = true;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

static void
guard_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			guard_before_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			guard_before_acknowledging();
			xact_commits_prepared = false;
			break;
		case XACT_EVENT_ABORT:
			xact_wrote = false;
			xact_commits_prepared = false;
			break;
		default:
			break;
	}
}

void
_PG_init(void)
{
	DefineCustomStringVariable(LEASE_FILE_GUC,
							   "File through which the pgvigil agent publishes its leader lease deadline.",
							   "Set by the agent; empty turns the commit guard off.",
							   &guard_lease_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgvigil_guard");
	RegisterXactCallback(guard_xact_callback, NULL);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = guard_process_utility;
}
