/* pgvigil_aa 0.1: the bookkeeping of an active-active node, local to it (the
 * output plugin never sends this schema's tables). */
\echo Use "CREATE EXTENSION pgvigil_aa" to load this file. \quit

-- this node's name in the group: the tie-break of last-writer-wins compares names; its
-- priority decides conflicts of tables with the node_priority policy.
-- Sequences: every ascending sequence of the node steps by sequence_step and gives only values
-- equal to sequence_offset modulo sequence_step, so generated keys of different nodes never
-- collide: each node of a group takes its own offset (1, 2, ...), all the same step.
CREATE TABLE @extschema@.local_node (
    name text NOT NULL PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    priority integer NOT NULL DEFAULT 0,
    sequence_offset integer NOT NULL CHECK (sequence_offset >= 1),
    sequence_step integer NOT NULL DEFAULT 64 CHECK (sequence_step >= 2),
    only_one boolean NOT NULL DEFAULT true UNIQUE CHECK (only_one),
    CHECK (sequence_offset <= sequence_step)
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
    applied_commit_ts timestamptz,
    -- ... and the end of that transaction in the peer's WAL (in the same commit: a snapshot of
    -- this node holds exactly the peer's transactions up to it; `pgvigil aa join` reads it)
    applied_lsn pg_lsn,
    -- the launcher keeps a worker running for every enabled peer (pause/resume)
    enabled boolean NOT NULL DEFAULT true
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
-- (security definer: a user creating a table needs no right on this schema)
CREATE FUNCTION @extschema@.track_deletes(rel regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'pgvigil_aa_tombstone') THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER pgvigil_aa_tombstone AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgvigil_aa.record_delete()', rel);
    EXECUTE format('CREATE TRIGGER pgvigil_aa_tombstone_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgvigil_aa.record_delete()', rel);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pgvigil_aa_tombstone, ENABLE ALWAYS TRIGGER pgvigil_aa_tombstone_truncate', rel);
END $$;

CREATE FUNCTION @extschema@.track_new_tables() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
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
REVOKE ALL ON FUNCTION @extschema@.track_deletes(regclass) FROM PUBLIC;
-- (also for the DDL the apply worker runs for a peer, under session_replication_role = replica)
ALTER EVENT TRIGGER pgvigil_aa_track_new_tables ENABLE ALWAYS;

SELECT @extschema@.track_deletes(c.oid) FROM pg_class c
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
   AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, '@extschema@'::regnamespace);

-- a sequence made node-distinct (see local_node): steps by sequence_step, and its next value is
-- the first above its last one that equals sequence_offset modulo the step (descending and
-- temporary sequences are left alone); nothing before this node has its name
CREATE FUNCTION @extschema@.distinct_sequence(seq regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    step integer;
    r integer;
    inc bigint;
    persistence "char";
    lv bigint;
    called boolean;
    lowest bigint;
BEGIN
    SELECT sequence_step, sequence_offset % sequence_step INTO step, r FROM pgvigil_aa.local_node;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT s.seqincrement, c.relpersistence INTO inc, persistence
      FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE s.seqrelid = seq;
    IF NOT FOUND OR inc < 0 OR persistence <> 'p' THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO lv, called;
    -- the lowest value it may still give
    lowest := CASE WHEN called THEN lv + 1 ELSE lv END;
    IF inc = step AND ((lowest % step) + step) % step = r AND NOT called THEN
        RETURN;
    END IF;
    IF inc = step AND called AND ((lv % step) + step) % step = r THEN
        RETURN;
    END IF;
    -- (run again by the event trigger for this ALTER: then there is nothing to do)
    -- (START too: RESTART IDENTITY and a bare RESTART go back to it)
    EXECUTE format('ALTER SEQUENCE %s INCREMENT BY %s START WITH %s RESTART WITH %s', seq, step,
                   lowest + (((r - lowest) % step) + step) % step, lowest + (((r - lowest) % step) + step) % step);
END $$;
REVOKE ALL ON FUNCTION @extschema@.distinct_sequence(regclass) FROM PUBLIC;

CREATE FUNCTION @extschema@.distinct_all_sequences() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pgvigil_aa.distinct_sequence(c.oid) FROM pg_class c
     WHERE c.relkind = 'S' AND c.relnamespace <> 'pgvigil_aa'::regnamespace;
    RETURN NULL;
END $$;
-- the node's name given (or its offset changed): every sequence follows
CREATE TRIGGER distinct_sequences AFTER INSERT OR UPDATE ON @extschema@.local_node
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.distinct_all_sequences();

CREATE FUNCTION @extschema@.distinct_new_sequences() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT objid FROM pg_event_trigger_ddl_commands()
               WHERE classid = 'pg_class'::regclass AND object_type = 'sequence'
    LOOP
        PERFORM pgvigil_aa.distinct_sequence(obj.objid);
    END LOOP;
END $$;
CREATE EVENT TRIGGER pgvigil_aa_distinct_new_sequences ON ddl_command_end
    WHEN TAG IN ('CREATE SEQUENCE', 'ALTER SEQUENCE', 'CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS')
    EXECUTE FUNCTION @extschema@.distinct_new_sequences();
ALTER EVENT TRIGGER pgvigil_aa_distinct_new_sequences ENABLE ALWAYS;

-- a change of the peers (pause, resume, join, remove) wakes the launcher when it commits
CREATE FUNCTION @extschema@.peers_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgvigil_aa_peers_changed' LANGUAGE C;
CREATE TRIGGER peers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.peers
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.peers_changed();
-- (also for `pgvigil aa join`, which writes as a replica; the apply workers write their progress
-- there without firing triggers)
ALTER TABLE @extschema@.peers ENABLE ALWAYS TRIGGER peers_changed;

-- pause and resume the apply from a peer: the launcher stops or starts its worker at once (and
-- looks again every second)
CREATE FUNCTION @extschema@.pause(peer text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog
    AS $$ UPDATE pgvigil_aa.peers SET enabled = false WHERE name = peer $$;
CREATE FUNCTION @extschema@.resume(peer text) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog
    AS $$ UPDATE pgvigil_aa.peers SET enabled = true WHERE name = peer $$;
REVOKE ALL ON FUNCTION @extschema@.pause(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.resume(text) FROM PUBLIC;

-- the pid of the apply worker for a peer: the running one, or one started now (the launcher
-- starts workers by itself; this waits for one)
CREATE FUNCTION @extschema@.start_apply(peer text) RETURNS integer
    AS 'MODULE_PATHNAME', 'pgvigil_aa_start_apply'
    LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION @extschema@.start_apply(text) FROM PUBLIC;

-- a planned switchover of the write lead (the agent calls these on the old leader): refuse
-- clients' writes for ms milliseconds (0: lift it), and mark the stream; a peer whose
-- status().applied_lsn is past the mark has applied everything committed here before it
CREATE FUNCTION @extschema@.handover_block(ms integer) RETURNS void
    AS 'MODULE_PATHNAME', 'pgvigil_aa_handover_block'
    LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION @extschema@.handover_block(integer) FROM PUBLIC;
CREATE FUNCTION @extschema@.mark() RETURNS pg_lsn
    AS 'MODULE_PATHNAME', 'pgvigil_aa_mark'
    LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION @extschema@.mark() FROM PUBLIC;
CREATE FUNCTION @extschema@.committing() RETURNS integer
    AS 'MODULE_PATHNAME', 'pgvigil_aa_committing'
    LANGUAGE C STRICT VOLATILE;

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

-- the apply from each peer: its worker, what it applied (the peer's commit time and WAL
-- position), what it confirmed, how far behind it is (bytes of the peer's WAL received or
-- announced and not yet confirmed, a lower bound: the exact figure is unconfirmed_bytes in the
-- peer's pgvigil_aa.slots; seconds since the oldest waiting transaction was committed), when the peer was
-- last heard from, the clocks' difference at its last keepalive (this node's minus the peer's,
-- transit included), transactions applied and conflicts met since the server started, and the
-- error that stopped it last (cleared by the next applied transaction)
CREATE FUNCTION @extschema@.status(
    OUT peer text, OUT pid integer, OUT applied_commit_ts timestamptz, OUT applied_lsn pg_lsn,
    OUT confirmed_lsn pg_lsn, OUT lag_bytes bigint, OUT lag_seconds double precision,
    OUT last_message_at timestamptz, OUT clock_difference_ms double precision,
    OUT applied_transactions bigint, OUT conflicts bigint, OUT last_error text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'pgvigil_aa_status'
    LANGUAGE C STRICT;

-- the group's slots on this node (one per peer reading it): the WAL each holds back, and how much
-- of this node's WAL its reader has not confirmed yet (the reader's exact lag in bytes)
CREATE VIEW @extschema@.slots AS
    SELECT slot_name, active, confirmed_flush_lsn,
           pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained_bytes,
           pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS unconfirmed_bytes,
           wal_status, safe_wal_size
      FROM pg_catalog.pg_replication_slots
     WHERE plugin = 'pgvigil_aa';
