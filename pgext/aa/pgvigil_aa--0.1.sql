/* pgvigil_aa 0.1: the bookkeeping of an active-active node, local to it (the
 * output plugin never sends this schema's tables). */
\echo Use "CREATE EXTENSION pgvigil_aa" to load this file. \quit

-- this node's name in the group: the tie-break of last-writer-wins compares names
CREATE TABLE @extschema@.local_node (
    name text NOT NULL PRIMARY KEY,
    only_one boolean NOT NULL DEFAULT true UNIQUE CHECK (only_one)
);

-- the peers this node applies from: each through a pgvigil_aa slot on the peer
CREATE TABLE @extschema@.peers (
    name text NOT NULL PRIMARY KEY,
    conninfo text NOT NULL,
    slot_name text NOT NULL
);

-- every conflict met while applying, and how it was resolved: the audit trail
CREATE TABLE @extschema@.conflicts (
    id bigserial PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    peer text NOT NULL,
    kind text NOT NULL,             -- insert_exists, update_update, update_missing, delete_update, delete_missing
    relation text NOT NULL,
    key text NOT NULL,
    local_row text,
    remote_row text,
    local_origin text,
    local_commit_ts timestamptz,
    remote_commit_ts timestamptz NOT NULL,
    policy text NOT NULL,
    winner text NOT NULL            -- local, remote
);

-- start the apply worker for a peer (its pid); it runs until the server stops
CREATE FUNCTION @extschema@.start_apply(peer text) RETURNS integer
    AS 'MODULE_PATHNAME', 'pgvigil_aa_start_apply'
    LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION @extschema@.start_apply(text) FROM PUBLIC;
