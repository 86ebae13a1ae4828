/* Node configuration: a YAML file with Patroni's key names where the meaning is the same,
 * plus the dynamic cluster settings that live in the etcd `config` key.
 * Ownership: config_load() returns a Config the caller frees with config_free(). */
#ifndef PGVIGIL_CONFIG_H
#define PGVIGIL_CONFIG_H

#include "common/common.h"

typedef struct KeyValue {
    char *key;
    char *value;              /* scalar values are kept as text, as PostgreSQL takes them */
} KeyValue;

typedef struct KvList {
    KeyValue *items;
    int n;
} KvList;

/* Settings shared by the cluster, stored as JSON in the etcd `config` key (Patroni shape):
 * {"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,
 *  "synchronous_mode":false,"synchronous_mode_strict":false,"synchronous_node_count":1,
 *  "pause":false,"primary_start_timeout":300,
 *  "postgresql":{"use_pg_rewind":true,"parameters":{"max_connections":100}}} */
/* standby_cluster (Patroni's shape): this cluster follows another one. Its leader is a standby
 * leader that replicates from host:port (or only through restore_command when there is no
 * host); the other members cascade from it. Removing the key promotes the standby leader. */
typedef struct StandbyCluster {
    bool present;
    char *host;                     /* one host, or a libpq list "a,b" (the writable one is used) */
    int port;                       /* default 5432 */
    char *primary_slot_name;        /* slot on the source (NULL none) */
    char *restore_command;          /* NULL: wal-fetch from this node's backup.repository, if any */
    char *recovery_min_apply_delay; /* PostgreSQL's text ("1h"); NULL none */
    char **create_replica_methods;  /* "basebackup" (from host:port), "pgvigil" (repository) */
    int n_create_replica_methods;
} StandbyCluster;

typedef struct DynConfig {
    int ttl;                        /* seconds, leader lease TTL; default 5 */
    int loop_wait_ms;               /* between HA ticks and lease renewals; "loop_wait" in
                                     * seconds, fractions allowed (0.5); default 1000 */
    int retry_timeout;              /* seconds for DCS/PG operation retries; default 3 */
    int64_t maximum_lag_on_failover;/* bytes; default 1048576 */
    bool synchronous_mode;
    bool synchronous_mode_strict;
    int synchronous_node_count;     /* default 1 */
    bool pause;
    int primary_start_timeout;      /* seconds; default 300 */
    bool use_pg_rewind;             /* default true */
    bool use_slots;                 /* default true */
    KvList pg_parameters;           /* postgresql.parameters */
    StandbyCluster standby;         /* standby_cluster */
    bool site_start_without_peer;   /* site_start_without_peer: a site that starts cold (postgres
                                     * down) may take the primary role without reading the other
                                     * site first (default false: it waits for that read) */
    int64_t site_lag_guard_bytes;   /* site_lag_guard_bytes: when a permanent slot (another site)
                                     * lags more, commits wait for that site (0: off) */
    char **slots;                   /* slots: permanent physical slots the primary keeps (for
                                     * another site following this one), {"name":{"type":"physical"}} */
    int n_slots;
} DynConfig;

typedef struct Credentials {
    char *username;
    char *password;
} Credentials;

typedef struct Tags {
    bool nofailover;
    bool noloadbalance;
    bool nosync;
    bool clonefrom;
    int failover_priority;          /* default 1; 0 means never promote (like nofailover) */
} Tags;


/* vip: a floating address held by the leader. address NULL = no VIP. */
typedef struct VipConfig {
    char *address;      /* vip.address: "192.0.2.10/24" (IPv4; /32 when no prefix) */
    char *interface;    /* vip.interface: e.g. "eth0" (required with address) */
    int arp_count;      /* vip.arp_count: gratuitous ARPs sent after adding; default 3 */
} VipConfig;

/* dns: RFC 2136 update of one A/AAAA record to the leader's address. server NULL = off. */
typedef struct DnsConfig {
    char *server;       /* dns.server: "127.0.0.1:53" */
    char *zone;         /* dns.zone: "example.test." */
    char *record;       /* dns.record: "db.example.test." */
    char *address;      /* dns.address: this node's address; default: postgresql.connect_address host */
    int ttl;            /* dns.ttl: the record's TTL in seconds; default 5 */
    char *tsig_key_name;/* dns.tsig_key_name (required with server) */
    char *tsig_secret;  /* dns.tsig_secret: base64 (required with server) */
    char *tsig_algorithm; /* dns.tsig_algorithm: default "hmac-sha256" */
    int timeout;        /* dns.timeout: seconds per attempt; default 2 */
} DnsConfig;

/* notify: event notifications. Each sink is off while its URL/command is NULL. */
typedef struct NotifyConfig {
    char *webhook_url;      /* notify.webhook.url */
    char *webhook_secret;   /* notify.webhook.secret: HMAC-SHA256 key for the signature header */
    char *pushover_url;     /* notify.pushover.url: default https://api.pushover.net/1/messages.json */
    char *pushover_token;   /* notify.pushover.token (pushover is on when token and user are set) */
    char *pushover_user;    /* notify.pushover.user */
    char *command;          /* notify.command: run through /bin/sh with the event in the environment */
    int64_t lag_threshold;  /* notify.lag_threshold: bytes of replica lag that raise lag_high; 0 = off */
    int max_attempts;       /* notify.max_attempts: per event and sink; default 6 */
    int timeout;            /* notify.timeout: seconds per delivery attempt; default 5 */
} NotifyConfig;

/* proxy.routes[]: one listener and where its connections go. */
typedef enum RouteRole { ROUTE_PRIMARY, ROUTE_REPLICA, ROUTE_WRITE_LEADER } RouteRole;
typedef struct ProxyRoute {
    char *name;             /* metrics label; default "<role>-<port>" */
    char *listen;           /* "127.0.0.1:5000" */
    RouteRole role;         /* role: primary | replica | write_leader (an active-active group's) */
    char *location;         /* write_leader routes: the location whose own write leader is used while
                             * there is one (NULL: the group's) */
    bool postgres;          /* protocol: postgres (default) | tcp */
    int target_port;        /* tcp routes: port on the member's host; 0 = the member's PostgreSQL port */
    bool fallback_primary;  /* replica routes: use the primary when no replica qualifies (default true) */
} ProxyRoute;

typedef struct ProxyConfig {
    char *admin_listen;     /* proxy.admin_listen: /health and /metrics; NULL = off */
    int workers;            /* proxy.workers: event-loop threads; default: online CPUs */
    int connect_wait;       /* proxy.connect_wait: seconds a new connection is held; default 30 */
    int connect_timeout;    /* proxy.connect_timeout: seconds per backend connect; default 3 */
    int64_t max_replica_lag;/* proxy.max_replica_lag: bytes; default 1048576 */
    int backend_user_timeout; /* proxy.backend_user_timeout: TCP_USER_TIMEOUT seconds; default 10 */
    ProxyRoute *routes;     /* proxy.routes */
    int n_routes;
} ProxyConfig;

/* backup: the cluster's repository (every agent of the cluster shares it) and WAL archiving.
 * No repository (config_has_repository false: type posix without a path) = no archiving. */
typedef struct BackupConfig {
    char *repo_type;        /* backup.repository.type: "posix" (the default) or "s3" */
    char *repo_path;        /* backup.repository.path: absolute directory (posix) */
    /* type s3: an S3-compatible object store (AWS Signature Version 4) */
    char *s3_endpoint;      /* backup.repository.s3_endpoint: "http://127.0.0.1:9000", "https://s3.eu-west-3.amazonaws.com" */
    char *s3_bucket;        /* backup.repository.s3_bucket */
    char *s3_region;        /* backup.repository.s3_region: default us-east-1 */
    char *s3_uri_style;     /* backup.repository.s3_uri_style: "path" (default: host:port/bucket/key) or "host" (bucket.host/key) */
    char *s3_key;           /* backup.repository.s3_key, else $PGVIGIL_S3_KEY */
    char *s3_secret;        /* backup.repository.s3_secret, else $PGVIGIL_S3_SECRET; never logged */
    int64_t s3_part_size;   /* backup.repository.s3_part_size: bytes; larger objects go up in parts (default 16 MiB) */
    char *compression;      /* backup.compression: zstd (default), lz4, gzip, none */
    int compression_level;  /* backup.compression_level: default per kind (zstd 3, lz4 1, gzip 6) */
    bool archive;           /* backup.archive: archive WAL from the primary; default on with a repository */
    int archive_workers;    /* backup.archive_workers: WAL files pushed in parallel; default 2 */
    int prefetch;           /* backup.prefetch: WAL segments restore_command fetches ahead; default 8, 0 none */
    int retention_full;     /* backup.retention_full: keep the newest N full backups (0: all) */
    int retention_days;     /* backup.retention_days: keep what restores the last N days (0: no window) */
    char *schedule;         /* backup.schedule: cron fields, UTC ("0 2 * * *"); NULL: no scheduled backups */
    char *encryption;       /* backup.encryption: "none" (default) or "aes-256-gcm" (backup/cipher.h) */
    char *encryption_key_file; /* backup.encryption_key_file: the key material (mode 0600), else $PGVIGIL_BACKUP_KEY */
} BackupConfig;

/* bootstrap.method pgvigil_restore: the member that wins the initialize key restores a backup
 * instead of running initdb, recovers from the archive (to the end, or to a target) and
 * promotes; the new cluster keeps the backup's system identifier. */
typedef struct BootstrapRestore {
    char *backup;           /* bootstrap.pgvigil_restore.backup: a label; NULL: the newest (that ended
                             * before the target, when one is set) */
    char *target_time;      /* bootstrap.pgvigil_restore.target_time: recovery_target_time, or NULL */
    char *target_lsn;       /* bootstrap.pgvigil_restore.target_lsn: recovery_target_lsn, or NULL */
    /* bootstrap.pgvigil_restore.repository (type, path, s3_*), .encryption, .encryption_key_file:
     * where the backup and its WAL are; required, and never this node's own backup.repository
     * (a restored cluster writes only into its own). Only those fields are used. */
    BackupConfig repo;
} BootstrapRestore;

/* site: the other data center's cluster, for `pgvigil site` (switchover, promote, status). */
typedef struct SiteConfig {
    char *peer_scope;               /* site.peer.scope */
    char *peer_namespace;           /* site.peer.namespace (default: this file's namespace) */
    char **peer_etcd_hosts;         /* site.peer.etcd3.hosts */
    int n_peer_etcd_hosts;
    char *failover;                 /* site.failover: "manual" (default) or "automatic" */
    bool automatic;                 /* ... == "automatic": needs the peer and a witness */
    char **witness_etcd_hosts;      /* site.witness.etcd3.hosts: a third site's etcd */
    int n_witness_etcd_hosts;
    char *witness_namespace;        /* site.witness.namespace (default: this file's namespace) */
    int witness_ttl;                /* site.witness.ttl, seconds (default 10) */
} SiteConfig;

/* active_active: this node is one node of an active-active group (pgvigil_aa); its agent takes
 * part in choosing the group's write leader, a key under <namespace><group>/aa/ on a lease. */
typedef struct AaConfig {
    char *group;                    /* active_active.group (NULL: not in a group) */
    char *location;                 /* active_active.location: also lead this location (NULL none) */
    int ttl;                        /* active_active.ttl: the write-leader lease, seconds (default 5) */
} AaConfig;

/* A group or location name of active_active (it becomes a part of etcd keys): 1 to 63 of
 * letters, digits, '-', '_', '.', and not "." or "..". */
bool config_aa_name_ok(const char *s);

typedef struct Config {
    char *path;                     /* file it was read from */
    char *scope;                    /* required */
    char *namespace_;               /* default "/service/" (always ends with '/') */
    char *name;                     /* required */
    char *log_level;                /* log.level; default "info" */
    char *pid_file;                 /* pid_file: the agent writes its pid here and locks it (NULL none) */

    char **etcd_hosts;              /* etcd3.hosts (list or "h1:p,h2:p") or etcd3.host; "127.0.0.1:2379" */
    int n_etcd_hosts;
    char *etcd_protocol;            /* etcd3.protocol: "http" (default) */
    char *etcd_username, *etcd_password;

    char *restapi_listen;           /* "127.0.0.1:8008" */
    char *restapi_connect_address;  /* default: restapi_listen */
    Credentials restapi_auth;       /* restapi.authentication.username/password; NULL = no auth */

    char *pg_listen;                /* postgresql.listen "127.0.0.1:5432" (host may be a list "a,b:port") */
    char *pg_connect_address;       /* default: pg_listen */
    char *pg_data_dir;              /* required */
    char *pg_bin_dir;               /* default "/usr/lib/postgresql/15/bin" */
    char *pg_run_as;                /* postgresql.run_as: OS user when started as root; default "postgres" */
    char *pg_socket_dir;            /* postgresql.unix_socket_directories; default "/tmp" */
    Credentials pg_superuser;       /* postgresql.authentication.superuser; default postgres/(none) */
    Credentials pg_replication;     /* postgresql.authentication.replication; default replicator/(none) */
    Credentials pg_rewind;          /* postgresql.authentication.rewind; default = superuser */
    KvList pg_parameters;           /* postgresql.parameters (local, override dynamic ones) */
    char **pg_hba;                  /* postgresql.pg_hba: list of lines; NULL = built-in default */
    int n_pg_hba;
    char *rewind_method;            /* postgresql.rewind_method: "pgvigil" (its own block-level
                                     * rewind, pg_rewind when it cannot) or "pg_rewind" */
    bool remove_data_directory_on_rewind_failure;  /* postgresql.remove_data_directory_on_rewind_failure */
    bool remove_data_directory_on_diverged_timelines;
    char *cb_on_start, *cb_on_stop, *cb_on_role_change, *cb_on_restart, *cb_on_reload; /* postgresql.callbacks.* */

    /* postgresql.create_replica_methods (Patroni's): how a replica's data directory is made, tried
     * in order: "pgvigil" (restore from backup.repository), "basebackup" (pg_basebackup from the
     * leader). Default: basebackup alone. */
    char **replica_methods;
    int n_replica_methods;

    Tags tags;
    DynConfig bootstrap_dcs;        /* bootstrap.dcs: written to etcd once, at cluster creation */
    KvList initdb_options;          /* bootstrap.initdb: list of "key: value" or flags ("data-checksums") */
    char *bootstrap_method;         /* bootstrap.method: "initdb" (default) or "pgvigil_restore" */
    BootstrapRestore boot_restore;  /* bootstrap.pgvigil_restore */

    VipConfig vip;
    DnsConfig dns;
    NotifyConfig notify;
    BackupConfig backup;
    ProxyConfig proxy;              /* only read by config_load_proxy() */
    SiteConfig site;
    AaConfig aa;
} Config;

/* Load and validate a YAML file. On error returns NULL and err names file, line and key,
 * e.g. "node.yml:7: postgresql.data_dir: expected a string". */
Config *config_load(const char *path, Err *err);
/* Same file format for CLI use: only `scope` (and etcd3 hosts, defaulted) are required;
 * node-only keys (name, postgresql.data_dir) may be absent. */
Config *config_load_client(const char *path, Err *err);
/* A proxy's file: `scope`, etcd3 and a `proxy` section with at least one route. */
Config *config_load_proxy(const char *path, Err *err);
void config_free(Config *cfg);
/* A repository is configured: a posix path, or type s3 (checked complete at load). */
bool config_has_repository(const BackupConfig *bc);
/* Do a and b name the same repository (the same directory, or the same bucket of one endpoint)? */
bool config_same_repository(const BackupConfig *a, const BackupConfig *b);
/* Is method ("pgvigil", "basebackup") in postgresql.create_replica_methods? */
bool config_replica_method(const Config *cfg, const char *method);
/* bootstrap.method is pgvigil_restore */
bool config_bootstrap_restores(const Config *cfg);

/* Defaults for DynConfig (used before etcd has a config key). */
void dynconfig_defaults(DynConfig *dc);
void dynconfig_free(DynConfig *dc);     /* frees members, not dc itself */
void dynconfig_copy(DynConfig *dst, const DynConfig *src); /* deep copy; dst must be free/zeroed */
/* From a config text that does not parse as a whole: its standby_cluster, present whenever the
 * key holds an object there (fields as far as they parse). A standby cluster stays one. */
void dynconfig_salvage_standby(const char *json, StandbyCluster *out);
/* JSON (etcd `config` key) <-> DynConfig. Unknown keys are ignored by parse; parse starts
 * from defaults. to_json returns a malloc'd compact JSON string. */
bool dynconfig_from_json(const char *json, DynConfig *out, Err *err);
char *dynconfig_to_json(const DynConfig *dc);
/* Apply "key=value" edits (edit-config --set): "ttl=20", "postgresql.parameters.work_mem=8MB",
 * "synchronous_mode=true". Works on the JSON text; returns new malloc'd JSON or NULL + err. */
char *dynconfig_json_set(const char *json, const char *assignment, Err *err);
/* Merge a JSON object patch (PATCH /config: RFC 7386 style, null deletes) into json. */
char *dynconfig_json_merge(const char *json, const char *patch, Err *err);

/* Range checks shared by config_load (bootstrap.dcs) and dynconfig_from_json: ttl >= 2,
 * 0.1 <= loop_wait < ttl, ttl >= 1, retry_timeout >= 1, synchronous_node_count >= 1, the rest >= 0.
 * Returns NULL when valid, else the offending key as named in the JSON ("loop_wait") with
 * err holding the reason alone ("must be less than ttl (10), got 10"). */
const char *dynconfig_check(const DynConfig *dc, Err *err);
/* Note: dynconfig_from_json overwrites *out (treat it as uninitialised; on failure it holds
 * the defaults). NULL or blank json gives the defaults. dynconfig_json_set/merge check JSON
 * syntax only: run dynconfig_from_json on the final text to check types and ranges. */

/* Scalar parsing shared by the YAML and JSON readers. Booleans: true/false, yes/no, on/off,
 * 1/0 (any case). Integers: optional sign and decimal digits only. */
bool config_parse_bool(const char *s, bool *out);
bool config_parse_int64(const char *s, int64_t *out);
/* "0.5", "2", "1.25": a non-negative finite number of seconds. */
bool config_parse_seconds(const char *s, double *out);

const char *kvlist_get(const KvList *l, const char *key);
void kvlist_set(KvList *l, const char *key, const char *value); /* replace or append, copies */
void kvlist_free(KvList *l);

/* Split "host:port" (port required, 1..65535). host is malloc'd; "[v6addr]:port" gives the
 * address without brackets. host and port may be NULL to only validate. */
bool config_split_hostport(const char *s, char **host, int *port, Err *err);

#endif
