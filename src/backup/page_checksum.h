/* PostgreSQL data page checksums (clusters initialised with data checksums), checked while a
 * base backup copies relation files.
 *
 * The checksum of an 8 kB page is PostgreSQL's FNV-1a variant: the page, with its pd_checksum
 * field taken as zero, is read as 64 rows of 32 native-endian 32-bit words; each of the 32
 * columns is hashed on its own from its own starting value, the 32 results are XORed together
 * with the block number, and the sum is folded into 1..65535 (0 never occurs). The block number
 * is the page's number within its relation fork: a segment file "16384.2" starts at block
 * 2 * 131072.
 *
 * What is checked is what pg_basebackup checks: a page with pd_upper == 0 (never initialised,
 * such as the zeroed pages of a relation just extended) has no checksum yet and is not checked;
 * a page whose LSN is at or after the backup's start may be read half-written, and WAL replay
 * rewrites it, so it is not checked either. A page that fails is read again once from the file
 * (it may have been caught mid-write and carry a newer LSN by then) before it is reported. */
#ifndef PGVIGIL_PAGE_CHECKSUM_H
#define PGVIGIL_PAGE_CHECKSUM_H

#include "backup/pages.h"
#include "common/common.h"
#include "common/lsn.h"

/* blocks in one segment file of a relation fork (1 GB of 8 kB pages, PostgreSQL's default) */
#define PAGE_BLOCKS_PER_SEGMENT 131072u

/* The checksum PostgreSQL stores in pd_checksum for page as block blkno of its fork. The stored
 * pd_checksum itself does not count. */
uint16_t page_checksum(const unsigned char page[PAGE_SIZE_BYTES], uint32_t blkno);

typedef enum {
    PAGE_VERIFIED,   /* the stored checksum is right */
    PAGE_NEW,        /* pd_upper == 0 (all zero, or not initialised yet): no checksum to check */
    PAGE_CHANGED,    /* its LSN is at or after the backup's start: not checked (WAL replay rewrites it) */
    PAGE_CORRUPT,    /* the stored checksum is wrong */
} PageVerdict;

typedef struct PageCheck {
    PageVerdict verdict;
    Lsn lsn;                 /* pd_lsn */
    uint16_t stored;         /* pd_checksum */
    uint16_t computed;       /* page_checksum(); 0 when not computed (PAGE_NEW, PAGE_CHANGED) */
} PageCheck;

/* Check page as block blkno of its fork, for a backup that started at backup_start (pages with
 * a newer LSN are not checked; UINT64_MAX checks every initialised page). */
PageVerdict page_verify(const unsigned char page[PAGE_SIZE_BYTES], uint32_t blkno, Lsn backup_start,
                        PageCheck *out);

/* Does rel (relative to the data directory) hold checksummed pages: a relation fork under
 * global/ or base/<db>/ (main, _fsm, _vm or _init, any segment)? Its segment number goes to
 * *segno. Not pg_control, pg_filenode.map, PG_VERSION or temporary relations ("t3_16384"). */
bool page_checksum_file(const char *rel, uint32_t *segno);

/* Check every whole page of data (n bytes, as read from data_dir/rel for a backup that started
 * at backup_start); a page that fails is read again from the file once. Nothing happens for a
 * file page_checksum_file rejects. Each corrupt page is logged as a warning (the first few of a
 * file one by one, then one line with the rest's count); the blocks (within the file, ascending)
 * go to *bad (malloc'd, NULL when none). Returns their number. */
int page_check_file(const char *data_dir, const char *rel, const unsigned char *data, size_t n, Lsn backup_start,
                    uint32_t **bad);
/* The same for some blocks of the file: data holds pages whole pages, the i-th of them block
 * blocks[i] of the file (NULL: block i). */
int page_check_blocks(const char *data_dir, const char *rel, const unsigned char *data, size_t pages,
                      const uint32_t *blocks, Lsn backup_start, uint32_t **bad);

/* The same for a file read in pieces: begin, then the whole pages of each piece (block from
 * onwards, or those blocks lists), then end (the corrupt blocks to *bad, their number back). */
typedef struct PageCheckRun {
    const char *data_dir, *rel;
    Lsn backup_start;
    bool applies;            /* page_checksum_file(rel) */
    uint32_t first;          /* the fork's block number of the file's first block */
    uint32_t *bad;
    int nbad;
    char *path;              /* for reading a page again */
    int fd;
    unsigned char *again;
} PageCheckRun;
void page_check_begin(PageCheckRun *r, const char *data_dir, const char *rel, Lsn backup_start);
void page_check_pages(PageCheckRun *r, const unsigned char *data, size_t pages, uint32_t from, const uint32_t *blocks);
int page_check_end(PageCheckRun *r, uint32_t **bad);

#endif
