/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_ddl_lock.h
 *	  The group's DDL lock: a client's replicated DDL runs only while this
 *	  node holds it, asked of the node's pgvigil agent (which keeps it in
 *	  etcd, and grants it only once this node has applied the DDL of the
 *	  previous holder).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_DDL_LOCK_H
#define PGVIGIL_AA_DDL_LOCK_H

/* _PG_init: the settings and the release at the transaction's end. */
extern void aa_ddl_lock_init(void);

/* Before a replicated DDL statement: take the lock for the transaction
 * (ERROR when it cannot be had); a no-op without pgvigil_aa.agent_url or
 * when this transaction holds it already. */
extern void aa_ddl_lock_take(void);

#endif
