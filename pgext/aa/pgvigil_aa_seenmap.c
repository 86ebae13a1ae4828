/*-------------------------------------------------------------------------
 *
 * pgvigil_aa_seenmap.c
 *	  Causality maps: parsing their text, and asking what they say.
 *
 *-------------------------------------------------------------------------
 */
#include "pgvigil_aa_seenmap.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool
aa_seen_parse(const char *text, int len, AaSeen *map)
{
	const char *p = text,
			   *end = text + len;

	map->n = 0;
	while (p < end)
	{
		const char *eq = memchr(p, '=', end - p);
		const char *semi;
		char		num[24];
		char	   *stop;
		long		namelen,
					numlen;

		if (eq == NULL || map->n == AA_SEEN_MAX)
			return false;
		semi = memchr(eq, ';', end - eq);
		if (semi == NULL)
			semi = end;
		namelen = eq - p;
		numlen = semi - eq - 1;
		if (namelen <= 0 || namelen >= AA_SEEN_NAME_LEN || numlen <= 0 || numlen >= (long) sizeof(num))
			return false;
		/* node names as pgvigil_aa.local_node allows them */
		for (long i = 0; i < namelen; i++)
			if (!isalnum((unsigned char) p[i]) && p[i] != '_' && p[i] != '.' && p[i] != '-')
				return false;
		memcpy(map->node[map->n], p, namelen);
		map->node[map->n][namelen] = '\0';
		memcpy(num, eq + 1, numlen);
		num[numlen] = '\0';
		errno = 0;
		map->ts[map->n] = strtoll(num, &stop, 10);
		if (errno != 0 || *stop != '\0' || num[0] == ' ' || num[0] == '+')
			return false;
		map->n++;
		/* a separator must be followed by another entry */
		if (semi < end && semi + 1 == end)
			return false;
		p = semi < end ? semi + 1 : end;
	}
	return true;
}

bool
aa_seen_has(const AaSeen *map, const char *node, int64_t ts)
{
	if (map == NULL)
		return false;
	for (int i = 0; i < map->n; i++)
		if (strcmp(map->node[i], node) == 0)
			return map->ts[i] >= ts;
	return false;
}

bool
aa_seen_merge(AaSeen *into, const AaSeen *from)
{
	for (int i = 0; i < from->n; i++)
	{
		int			j;

		for (j = 0; j < into->n; j++)
			if (strcmp(into->node[j], from->node[i]) == 0)
				break;
		if (j == into->n)
		{
			if (into->n == AA_SEEN_MAX)
				return false;
			strcpy(into->node[j], from->node[i]);
			into->ts[j] = from->ts[i];
			into->n++;
		}
		else if (from->ts[i] > into->ts[j])
			into->ts[j] = from->ts[i];
	}
	return true;
}
