/* pgvigil_aa 0.1: the bookkeeping of an active-active node, local to it (the
 * output plugin never sends this schema's tables). */
\echo Use "CREATE EXTENSION pgvigil_aa" to load this file. \quit

-- this node's name in the group: the tie-break of last-writer-wins compares names; its
-- priority decides conflicts of tables with the node_priority policy
CREATE TABLE @extschema@.local_node (
    name text NOT NULL PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    priority integer NOT NULL DEFAULT 0,
    only_one boolean NOT NULL DEFAULT true UNIQUE CHECK (only_one)
);

-- the peers this node applies from: each through a pgvigil_aa slot on the peer.
-- decision: the operator's answer to a conflict that stopped the apply (policy error),
-- used once by the worker: 'local' (keep this node's version), 'remote' (apply the peer's)
CREATE TABLE @extschema@.peers (
    name text NOT NULL PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    conninfo text NOT NULL,
    slot_name text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    decision text CHECK (decision IN ('local', 'remote')),
    -- the peer's commit time of the last transaction applied from it (kept by the apply worker)
    applied_commit_ts timestamptz
);

-- how conflicts on a table are resolved (a table not listed: last_writer_wins)
CREATE TABLE @extschema@.table_policies (
    relation regclass NOT NULL PRIMARY KEY,
    policy text NOT NULL CHECK (policy IN ('last_writer_wins', 'first_writer_wins', 'node_priority',
                                           'keep_local', 'apply_remote', 'skip', 'error', 'custom')),
    -- for policy custom: a function (kind text, relation regclass, local_row jsonb, remote_row jsonb,
    -- local_node text, remote_node text, local_commit_ts timestamptz, remote_commit_ts timestamptz)
    -- returning 'local' or 'remote'; it must give the same answer on every node
    resolver regprocedure,
    CHECK ((policy = 'custom') = (resolver IS NOT NULL))
);

-- every conflict met while applying, and how it was resolved: the audit trail
CREATE TABLE @extschema@.conflicts (
    id bigserial PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    peer text NOT NULL,
    -- insert_exists, insert_unique (another unique index), insert_deleted, update_update,
    -- update_missing, update_deleted, delete_update, delete_missing, delete_deleted
    kind text NOT NULL,
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

-- deleted keys, so that a change of a row deleted here is recognised as such (an update that
-- arrives after the delete does not bring the row back). The deleting transaction is the row's
-- xmin: its commit time and origin say when and where the delete happened. key '{}': the
-- whole table was truncated. seen: what the deleting node had applied from each node then
-- ("node=commit time in microseconds;..."), NULL when unknown.
CREATE TABLE @extschema@.tombstones (
    relid oid NOT NULL,
    key text[] NOT NULL,
    seen text,
    PRIMARY KEY (relid, key)
);

-- (security definer: a client deleting rows needs no right on this schema)
CREATE FUNCTION @extschema@.record_delete() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgvigil_aa_record_delete'
    LANGUAGE C SECURITY DEFINER;

-- every permanent table outside this schema records its deletes, also those the apply
-- worker makes (ENABLE ALWAYS: they fire under session_replication_role = replica)
CREATE FUNCTION @extschema@.track_deletes(rel regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'pgvigil_aa_tombstone') THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER pgvigil_aa_tombstone AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgvigil_aa.record_delete()', rel);
    EXECUTE format('CREATE TRIGGER pgvigil_aa_tombstone_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgvigil_aa.record_delete()', rel);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgvigil_aa_tombstone, ENABLE ALWAYS TRIGGER pgvigil_aa_tombstone_truncate', rel);
END $$;

CREATE FUNCTION @extschema@.track_new_tables() RETURNS event_trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT c.oid FROM pg_event_trigger_ddl_commands() d JOIN pg_class c ON c.oid = d.objid
               WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
                 AND c.relnamespace <> 'pgvigil_aa'::regnamespace
    LOOP
        PERFORM pgvigil_aa.track_deletes(obj.oid);
    END LOOP;
END $$;

CREATE EVENT TRIGGER pgvigil_aa_track_new_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION @extschema@.track_new_tables();

SELECT @extschema@.track_deletes(c.oid) FROM pg_class c
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
   AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, '@extschema@'::regnamespace);

-- start the apply worker for a peer (its pid); it runs until the server stops
CREATE FUNCTION @extschema@.start_apply(peer text) RETURNS integer
    AS 'MODULE_PATHNAME', 'pgvigil_aa_start_apply'
    LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION @extschema@.start_apply(text) FROM PUBLIC;

-- the operator's decision on the conflict that stopped the apply from a peer (policy error):
-- 'local' keeps this node's version, 'remote' applies the peer's; the worker uses it once
CREATE FUNCTION @extschema@.resolve_stopped(peer text, decision text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    UPDATE pgvigil_aa.peers SET decision = resolve_stopped.decision WHERE name = peer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgvigil_aa: no peer named "%"', peer;
    END IF;
END $$;
REVOKE ALL ON FUNCTION @extschema@.resolve_stopped(text, text) FROM PUBLIC;
