/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_handover.h
 *	  The old write leader's part in a planned switchover of the write lead:
 *	  its clients' writes are refused for a moment, and a mark in its stream
 *	  tells the new leader when it has applied everything committed before.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_HANDOVER_H
#define PGVIGIL_AA_HANDOVER_H

#define AA_MARK_PREFIX "pgvigil_aa.mark"

/* ERROR when a handover refuses clients' writes on this node now (a no-op otherwise). */
extern void aa_handover_check(void);
/* _PG_init: the check at each commit of a transaction that wrote. */
extern void aa_handover_install(void);

#endif
