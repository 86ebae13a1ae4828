#!/usr/bin/env node
// A local S3-compatible server for the tests: s3rver (the maintained @20minutes fork, which checks
// AWS Signature Version 4), installed by scripts/setup.sh under /opt/pgvigil-s3rver
// (PGVIGIL_S3RVER_DIR overrides). It answers only to the one access key given here: a request
// signed with another secret gets 403 SignatureDoesNotMatch, an unknown key 403 InvalidAccessKeyId.
//
//   node --openssl-legacy-provider s3_server.js --dir DIR --port PORT --key KEY --secret SECRET
//
// Listens on 127.0.0.1; virtual-host style requests name the bucket in the host:
// <bucket>.s3.localhost:PORT (curl and libcurl resolve *.localhost to the loopback).
'use strict';

const path = require('path');

const base = process.env.PGVIGIL_S3RVER_DIR || '/opt/pgvigil-s3rver';
const pkg = path.join(base, 'node_modules', '@20minutes', 's3rver');
const lib = (...p) => path.join(pkg, 'lib', ...p);
const AWSAccount = require(lib('models', 'account'));
const S3Error = require(lib('models', 'error'));

// Two corrections to s3rver's request authentication, put in before s3rver loads it:
// - an unsigned request is refused (s3rver lets anonymous requests through), so that every
//   request the tests make is one whose signature was checked;
// - for a virtual-host style request (bucket in the host name), the Signature Version 4
//   canonical URI is the path as sent ("/key"), as AWS computes it; s3rver puts the bucket in
//   front, which is Signature Version 2's rule.
const authFile = require.resolve(lib('middleware', 'authentication'));
const s3rverAuth = require(authFile);
require.cache[authFile].exports = () => {
  const inner = s3rverAuth();
  return async function authentication(ctx, next) {
    const signed = 'authorization' in ctx.headers || 'X-Amz-Algorithm' in ctx.query || 'Signature' in ctx.query;
    if (!signed && ctx.method !== 'OPTIONS')
      throw new S3Error('AccessDenied', 'Anonymous requests are not accepted by this test server');
    const v4 = String(ctx.headers.authorization || ctx.query['X-Amz-Algorithm'] || '').startsWith('AWS4-');
    if (!(ctx.state.vhost && v4))
      return inner(ctx, next);
    const params = ctx.params;
    // the resource becomes "/" + key (or "/" for the bucket itself)
    ctx.params = params.key ? { ...params, bucket: params.key, key: undefined } : { ...params, bucket: undefined };
    ctx.state.vhost = false;
    return inner(ctx, () => {
      ctx.params = params;
      ctx.state.vhost = true;
      return next();
    });
  };
};
const S3rver = require(pkg);

// s3rver's ListObjectsV2 continuation tokens are DES-encrypted, which OpenSSL 3 has only in its
// legacy provider
try {
  require('crypto').createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
} catch (e) {
  console.error('s3_server: run node with --openssl-legacy-provider (s3rver encrypts continuation tokens with DES)');
  process.exit(2);
}

const opts = {};
for (let i = 2; i + 1 < process.argv.length; i += 2)
  opts[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const need of ['dir', 'port', 'key', 'secret']) {
  if (!opts[need]) {
    console.error(`s3_server: --${need} is required`);
    process.exit(2);
  }
}

// only our key pair: drop s3rver's built-in S3RVER/S3RVER
AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
AWSAccount.DUMMY_ACCOUNT.createKeyPair(opts.key, opts.secret);

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(opts.port),
  directory: opts.dir,
  silent: !process.env.PGVIGIL_S3_VERBOSE,
  serviceEndpoint: 'localhost',
  allowMismatchedSignatures: false,
});

// with PGVIGIL_S3_VERBOSE, one line per request as it came: "request: PUT host:port /path?query"
if (process.env.PGVIGIL_S3_VERBOSE) {
  server.middleware.unshift(async (ctx, next) => {
    console.log(`request: ${ctx.method} ${ctx.host} ${ctx.originalUrl}`);
    await next();
  });
}

server.run().then(({ address, port }) => {
  console.log(`s3_server: listening on ${address}:${port}, data in ${opts.dir}`);
}, (err) => {
  console.error(`s3_server: ${err.message}`);
  process.exit(1);
});

for (const sig of ['SIGTERM', 'SIGINT'])
  process.on(sig, () => server.close().then(() => process.exit(0), () => process.exit(0)));
