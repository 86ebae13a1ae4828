/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_init.c
 *	  Loading pgvigil_aa: what it sets up when it is in
 *	  shared_preload_libraries.
 *
 * Loaded only as an output plugin or by start_apply, the module streams and
 * applies, but shares nothing: no causality messages, no status.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "pgvigil_aa_apply.h"
#include "pgvigil_aa_ddl_lock.h"
#include "pgvigil_aa_handover.h"
#include "pgvigil_aa_seen.h"
#include "pgvigil_aa_shared.h"

extern PGDLLEXPORT void _PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	aa_shared_request();
	aa_seen_install();
	aa_handover_install();
	aa_ddl_lock_init();
	aa_launcher_register();
}
