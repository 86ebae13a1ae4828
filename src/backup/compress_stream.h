/* Compression in pieces: a file is compressed as it is read, chunk by chunk, and decompressed
 * chunk by chunk as it is written, so that neither side holds a whole 1 GB relation file in
 * memory. The stored form is what decompress_buf reads: for zstd, one frame per piece fed (a
 * zstd stream may hold several frames), for lz4 and gzip one frame as compress_buf writes. A
 * Compressor or Decompressor is reused from one object to the next by one worker: its library
 * context and buffers are allocated once. */
#ifndef PGVIGIL_COMPRESS_STREAM_H
#define PGVIGIL_COMPRESS_STREAM_H

#include "backup/compress.h"
#include "common/strbuf.h"

typedef struct Compressor Compressor;
typedef struct Decompressor Decompressor;

Compressor *compressor_new(void);
void compressor_free(Compressor *z);
/* Start a new stream. */
bool compressor_begin(Compressor *z, CompressKind k, int level, Err *err);
/* Compress n bytes, appending what comes out to out; last ends the stream. */
bool compressor_feed(Compressor *z, const void *in, size_t n, bool last, StrBuf *out, Err *err);

Decompressor *decompressor_new(void);
void decompressor_free(Decompressor *d);
/* Start on a whole compressed stream (in: n bytes, kept by the caller until the end). */
bool decompressor_begin(Decompressor *d, CompressKind k, const void *in, size_t n, Err *err);
/* Up to cap bytes of content into buf; *got 0 at the end of the stream, which must use up the
 * input exactly (a stream cut short or followed by anything is corrupt). */
bool decompressor_read(Decompressor *d, void *buf, size_t cap, size_t *got, Err *err);

#endif
