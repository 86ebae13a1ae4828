/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_ddl.h
 *	  DDL replication: a client's schema change sent along with the rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_DDL_H
#define PGVIGIL_AA_DDL_H

#include "postgres.h"

#include "nodes/plannodes.h"
#include "tcop/utility.h"

#define AA_DDL_PREFIX "pgvigil_aa.ddl"

/* the ProcessUtility hook's part: log a top-level replicated DDL statement */
extern void aa_ddl_capture(PlannedStmt *pstmt, const char *queryString, ProcessUtilityContext context);

/* the apply worker's part: run a peer's DDL message (content, len bytes) */
extern void aa_ddl_apply(const char *content, int len);

#endif
