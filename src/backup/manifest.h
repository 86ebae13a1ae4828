/* Backup manifests: backup/<label>/manifest, a checked object holding JSON. It names the backup
 * (label, type, the backup it builds on), its WAL range and times, the backup label file, every
 * directory, and every file: size, checksum of the whole content (backup/checksum.h: hex, its
 * length says the kind; "sha256" instead of "checksum" in older manifests), stored size, and how
 * the file is kept:
 *   "whole"  (default) the object backup/<label>/data/<path> holds the file;
 *   "ref"    unchanged: the backup it builds on has it;
 *   "blocks" the object holds the listed 8 kB blocks, the rest comes from the backup it builds
 *            on (its checksum is then empty: the whole file exists only once put together).
 * A whole file larger than one region also has "region_checksums": the checksum of each
 * "region_size" bytes (top level; checksum_region_hex), for a delta restore that rewrites only
 * the regions that differ.
 * "checksums_checked" (top level) says the cluster had data checksums on, so the pages of
 * relation files were checked as they were copied; a file with pages that failed has
 * "checksum_errors": their block numbers within the file.
 * A manifest is written last: a backup without one is incomplete and never listed. */
#ifndef PGVIGIL_MANIFEST_H
#define PGVIGIL_MANIFEST_H

#include "backup/base_backup.h"
#include "backup/repo.h"

#include <jansson.h>

#define MANIFEST_FORMAT 1

typedef struct Manifest {
    json_t *root;       /* owned */
    json_t *by_path;    /* path -> file entry (owned object, borrowed entries) */
    BackupInfo info;
} Manifest;

Manifest *manifest_load(Repo *r, const char *label, Err *err);
void manifest_free(Manifest *m);
/* the entry of path, NULL when the backup has no such file */
json_t *manifest_file(const Manifest *m, const char *path);
/* "whole", "ref" or "blocks" */
const char *manifest_file_mode(const json_t *entry);
/* the hex checksum of the whole file ("" when not known: a block-mode entry) */
const char *manifest_file_checksum(const json_t *entry);
/* Is key a manifest's ("backup/<label>/manifest")? Then its label goes to label. */
bool manifest_key_label(const char *key, char *label, size_t sz);
/* Store the manifest JSON of a backup (the step that makes it complete). */
bool manifest_store(Repo *r, const char *label, const char *json, Err *err);
/* The backup and every backup it builds on, newest first, down to its full backup. */
bool manifest_chain(Repo *r, const char *label, Manifest ***chain, int *n, Err *err);
void manifest_chain_free(Manifest **chain, int n);

#endif
