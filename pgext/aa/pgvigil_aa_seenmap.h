/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_seenmap.h
 *	  A causality map: per node, the commit time of the last of its
 *	  transactions another node had applied when it wrote.
 *
 * Its text, as the messages and the tombstones carry it:
 * "node=microseconds;node=microseconds...".  Pure code (no server headers):
 * the unit tests build it on its own (tests/unit/test_aa_seenmap.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGVIGIL_AA_SEENMAP_H
#define PGVIGIL_AA_SEENMAP_H

#include <stdbool.h>
#include <stdint.h>

#define AA_SEEN_MAX 64
#define AA_SEEN_NAME_LEN 64		/* NAMEDATALEN */

typedef struct AaSeen
{
	int			n;
	char		node[AA_SEEN_MAX][AA_SEEN_NAME_LEN];
	int64_t		ts[AA_SEEN_MAX];
} AaSeen;

/* parse len bytes of text into map; false (map unusable) when malformed */
extern bool aa_seen_parse(const char *text, int len, AaSeen *map);

/* had the writer of map seen the version node wrote at ts?  (a NULL map:
 * nothing seen) */
extern bool aa_seen_has(const AaSeen *map, const char *node, int64_t ts);

/* into becomes what either map had seen (the later time per node); false
 * when the nodes do not fit */
extern bool aa_seen_merge(AaSeen *into, const AaSeen *from);

#endif
