/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_shared.c
 *	  Shared memory of pgvigil_aa: the state of each peer's apply.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "pgvigil_aa_shared.h"

AaShared   *aa_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
aa_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AaShared)));
	RequestNamedLWLockTranche("pgvigil_aa", 1);
}

static void
aa_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	aa_shared = ShmemInitStruct("pgvigil_aa", sizeof(AaShared), &found);
	if (!found)
	{
		memset(aa_shared, 0, sizeof(AaShared));
		aa_shared->lock = &(GetNamedLWLockTranche("pgvigil_aa"))->lock;
		pg_atomic_init_u32(&aa_shared->committing, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
aa_shared_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = aa_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = aa_shmem_startup;
}

AaPeerState *
aa_peer_state(Oid dbid, const char *name)
{
	AaPeerState *free_entry = NULL;

	if (aa_shared == NULL)
		return NULL;
	LWLockAcquire(aa_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < AA_MAX_PEERS; i++)
	{
		AaPeerState *p = &aa_shared->peers[i];

		if (p->in_use && p->dbid == dbid && strcmp(p->name, name) == 0)
		{
			LWLockRelease(aa_shared->lock);
			return p;
		}
		if (!p->in_use && free_entry == NULL)
			free_entry = p;
	}
	if (free_entry)
	{
		memset(free_entry, 0, sizeof(*free_entry));
		free_entry->in_use = true;
		free_entry->dbid = dbid;
		strlcpy(free_entry->name, name, NAMEDATALEN);
	}
	LWLockRelease(aa_shared->lock);
	return free_entry;
}

TimestampTz
aa_seen_text(Oid dbid, StringInfo out)
{
	TimestampTz newest = 0;

	if (aa_shared == NULL)
		return 0;
	LWLockAcquire(aa_shared->lock, LW_SHARED);
	for (int i = 0; i < AA_MAX_PEERS; i++)
	{
		AaPeerState *p = &aa_shared->peers[i];

		if (p->in_use && p->dbid == dbid && p->applied_commit_ts != 0)
		{
			appendStringInfo(out, "%s%s=" INT64_FORMAT, out->len ? ";" : "", p->name, (int64) p->applied_commit_ts);
			newest = Max(newest, p->applied_commit_ts);
		}
	}
	LWLockRelease(aa_shared->lock);
	return newest;
}
