/* `pgvigil demo up|down|status`: a local cluster on loopback (one etcd, three nodes) under a
 * directory it creates, for trying pgvigil out and for watching a failover. */
#include "common/common.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "cli/cli.h"
#include "cli/cli_common.h"
#include "pg/pg.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_SCOPE "demo"

typedef struct DemoOpts {
    const char *dir;
    int nodes;
    int ttl;
} DemoOpts;

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* first port >= want that is free and not already handed out in taken[] */
static int pick_port(int want, const int *taken, int n_taken)
{
    for (int p = want; p < want + 2000 && p < 65535; p++) {
        bool used = false;
        for (int i = 0; i < n_taken; i++)
            if (taken[i] == p)
                used = true;
        if (!used && port_free(p))
            return p;
    }
    return -1;
}

static pid_t read_pid(const char *path)
{
    char *s = file_read_all(path, NULL, NULL);
    if (!s)
        return 0;
    pid_t p = (pid_t)atol(s);
    free(s);
    return p;
}

static bool write_pid(const char *path, pid_t pid, Err *err)
{
    char buf[32];
    str_fmt(buf, sizeof(buf), "%d\n", (int)pid);
    return file_write_atomic(path, buf, strlen(buf), 0644, err);
}

static bool pid_alive(pid_t p)
{
    return p > 0 && kill(p, 0) == 0;
}

static int demo_usage(FILE *out)
{
    fprintf(out,
            "usage: pgvigil demo up [--dir DIR] [--nodes N] [--ttl S]\n"
            "       pgvigil demo status [--dir DIR]\n"
            "       pgvigil demo down [--dir DIR] [--purge]\n"
            "Starts (or stops) a local cluster on 127.0.0.1: one etcd and N (default 3) PostgreSQL 15\n"
            "nodes each run by a pgvigil agent. Files live under DIR (default /tmp/pgvigil-demo).\n");
    return out == stdout ? EXIT_OK : EXIT_USAGE;
}

static int demo_list(const char *dir)
{
    char url[256];
    char path[4096];
    str_fmt(path, sizeof(path), "%s/etcd.url", dir);
    char *u = file_read_all(path, NULL, NULL);
    if (!u) {
        cli_error("start it with 'pgvigil demo up'", "no demo cluster in %s", dir);
        return EXIT_STATE;
    }
    str_copy(url, sizeof(url), u);
    free(u);
    url[strcspn(url, "\n")] = '\0';
    CliConnOpts o = {.dcs_url = url, .scope = DEMO_SCOPE};
    CliCtx ctx;
    memset(&ctx, 0, sizeof(ctx));
    int rc = cli_open(&o, &ctx);
    if (rc != EXIT_OK)
        return rc;
    char *t = cli_format_members(&ctx.cluster, DEMO_SCOPE);
    fputs(t, stdout);
    free(t);
    cli_close(&ctx);
    return EXIT_OK;
}

/* one primary and every other node a running, streaming replica (as list shows them) */
static bool demo_ready(const char *url, int nodes, Cluster *c)
{
    CliConnOpts o = {.dcs_url = url, .scope = DEMO_SCOPE};
    CliCtx ctx;
    memset(&ctx, 0, sizeof(ctx));
    /* cli_open prints errors; etcd may still be starting, so silence stderr meanwhile */
    int saved = dup(STDERR_FILENO);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        dup2(fileno(devnull), STDERR_FILENO);
        fclose(devnull);
    }
    int rc = cli_open(&o, &ctx);
    dup2(saved, STDERR_FILENO);
    close(saved);
    if (rc != EXIT_OK)
        return false;
    int primaries = 0, streaming = 0;
    for (int i = 0; i < ctx.cluster.n_members; i++) {
        const Member *m = &ctx.cluster.members[i];
        if (strcmp(m->name, ctx.cluster.leader) == 0 && strcmp(m->state, "running") == 0 && strcmp(m->role, "primary") == 0)
            primaries++;
        else if (strcmp(m->state, "running") == 0 && strcmp(m->replication_state, "streaming") == 0)
            streaming++; /* postgres streams before its clone job is collected ("creating replica") */
    }
    bool ok = primaries == 1 && streaming == nodes - 1;
    if (ok && c) {
        *c = ctx.cluster;
        memset(&ctx.cluster, 0, sizeof(ctx.cluster));
        cluster_init(&ctx.cluster);
    }
    cli_close(&ctx);
    return ok;
}

static int demo_up(const DemoOpts *d)
{
    Err err = {{0}};
    char path[4096];
    if (!file_exists("/usr/bin/etcd") || !file_exists("/usr/lib/postgresql/15/bin/postgres")) {
        cli_error("install them: apt-get install etcd-server postgresql-15 (or run scripts/setup.sh)",
                  "etcd (/usr/bin/etcd) or PostgreSQL 15 (/usr/lib/postgresql/15/bin) is missing");
        return EXIT_STATE;
    }
    str_fmt(path, sizeof(path), "%s/etcd.pid", d->dir);
    if (pid_alive(read_pid(path))) {
        cli_error("stop it first with 'pgvigil demo down'", "a demo cluster is already running in %s", d->dir);
        return EXIT_STATE;
    }
    if (!dir_make_all(d->dir, 0755, &err)) {
        cli_error(NULL, "%s", err.msg);
        return EXIT_FAILED;
    }
    chmod(d->dir, 0755);
    int taken[64] = {0}, nt = 0;
    int etcd_port = pick_port(2379, taken, nt);
    taken[nt++] = etcd_port;
    int peer_port = pick_port(2380, taken, nt);
    taken[nt++] = peer_port;
    int pg_ports[16], api_ports[16];
    for (int i = 0; i < d->nodes; i++) {
        pg_ports[i] = pick_port(5432 + i, taken, nt);
        taken[nt++] = pg_ports[i];
        api_ports[i] = pick_port(8008 + i, taken, nt);
        taken[nt++] = api_ports[i];
    }
    int px_rw = pick_port(5000, taken, nt);
    taken[nt++] = px_rw;
    int px_ro = pick_port(5001, taken, nt);
    taken[nt++] = px_ro;
    int px_admin = pick_port(5010, taken, nt);
    taken[nt++] = px_admin;
    for (int i = 0; i < nt; i++)
        if (taken[i] < 0) {
            cli_error(NULL, "no free port found on 127.0.0.1");
            return EXIT_FAILED;
        }

    /* etcd */
    char client_url[128], peer_url[128], etcd_dir[4096], etcd_log[4096], initial[200];
    str_fmt(client_url, sizeof(client_url), "http://127.0.0.1:%d", etcd_port);
    str_fmt(peer_url, sizeof(peer_url), "http://127.0.0.1:%d", peer_port);
    str_fmt(initial, sizeof(initial), "demo=%s", peer_url);
    str_fmt(etcd_dir, sizeof(etcd_dir), "%s/etcd", d->dir);
    str_fmt(etcd_log, sizeof(etcd_log), "%s/etcd.log", d->dir);
    const char *eargv[] = {"/usr/bin/etcd", "--name", "demo", "--data-dir", etcd_dir,
                           "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                           "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                           "--initial-cluster", initial, "--heartbeat-interval", "100",
                           "--election-timeout", "1000", NULL};
    ProcOpts po = {.log_path = etcd_log, .new_session = true};
    pid_t etcd = proc_spawn(eargv, &po, &err);
    if (etcd < 0) {
        cli_error(NULL, "%s", err.msg);
        return EXIT_FAILED;
    }
    str_fmt(path, sizeof(path), "%s/etcd.pid", d->dir);
    write_pid(path, etcd, &err);
    str_fmt(path, sizeof(path), "%s/etcd.url", d->dir);
    file_write_atomic(path, client_url, strlen(client_url), 0644, &err);
    printf("etcd        %s (pid %d, log %s)\n", client_url, (int)etcd, etcd_log);

    /* nodes */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        cli_error(NULL, "cannot find my own binary");
        return EXIT_FAILED;
    }
    self[n] = '\0';
    for (int i = 0; i < d->nodes; i++) {
        char name[32], yml[4096], logp[4096];
        str_fmt(name, sizeof(name), "node%d", i + 1);
        str_fmt(yml, sizeof(yml), "%s/%s.yml", d->dir, name);
        str_fmt(logp, sizeof(logp), "%s/%s.log", d->dir, name);
        char *conf = str_printf(
            "scope: %s\nname: %s\npid_file: %s/%s.pid\n"
            "etcd3:\n  hosts: 127.0.0.1:%d\n"
            "restapi:\n  listen: 127.0.0.1:%d\n  connect_address: 127.0.0.1:%d\n"
            "bootstrap:\n  dcs:\n    ttl: %d\n    loop_wait: 1\n    retry_timeout: 3\n"
            "    maximum_lag_on_failover: 1048576\n    postgresql:\n      use_pg_rewind: true\n"
            "      parameters:\n        max_connections: 50\n        shared_buffers: 32MB\n"
            "postgresql:\n  listen: 127.0.0.1:%d\n  connect_address: 127.0.0.1:%d\n"
            "  data_dir: %s/%s/data\n  bin_dir: /usr/lib/postgresql/15/bin\n"
            "  authentication:\n    superuser:\n      username: postgres\n      password: demo-super\n"
            "    replication:\n      username: replicator\n      password: demo-repl\n"
            "  remove_data_directory_on_rewind_failure: true\n",
            DEMO_SCOPE, name, d->dir, name, etcd_port, api_ports[i], api_ports[i], d->ttl, pg_ports[i], pg_ports[i],
            d->dir, name);
        bool ok = file_write_atomic(yml, conf, strlen(conf), 0600, &err);
        free(conf);
        if (!ok) {
            cli_error(NULL, "%s", err.msg);
            return EXIT_FAILED;
        }
        const char *aargv[] = {self, "agent", "-c", yml, NULL};
        ProcOpts ao = {.log_path = logp, .new_session = true};
        pid_t pid = proc_spawn(aargv, &ao, &err);
        if (pid < 0) {
            cli_error(NULL, "%s", err.msg);
            return EXIT_FAILED;
        }
        /* the agent writes and locks its pid file itself (pid_file), also when started by hand */
        printf("%-11s postgres 127.0.0.1:%d, REST http://127.0.0.1:%d (agent pid %d, log %s)\n", name,
               pg_ports[i], api_ports[i], (int)pid, logp);
        /* let the first node win the bootstrap race so the demo is predictable */
        if (i == 0)
            sleep_ms(1500);
    }
    /* the proxy: one address for writes, one for reads, whichever node leads */
    {
        char yml[4096], logp[4096];
        str_fmt(yml, sizeof(yml), "%s/proxy.yml", d->dir);
        str_fmt(logp, sizeof(logp), "%s/proxy.log", d->dir);
        char *conf = str_printf("scope: %s\netcd3:\n  hosts: 127.0.0.1:%d\n"
                                "proxy:\n  admin_listen: 127.0.0.1:%d\n  routes:\n"
                                "    - {name: rw, listen: 127.0.0.1:%d, role: primary}\n"
                                "    - {name: ro, listen: 127.0.0.1:%d, role: replica}\n",
                                DEMO_SCOPE, etcd_port, px_admin, px_rw, px_ro);
        bool ok = file_write_atomic(yml, conf, strlen(conf), 0644, &err);
        free(conf);
        const char *pargv[] = {self, "proxy", "-c", yml, NULL};
        ProcOpts xo = {.log_path = logp, .new_session = true};
        pid_t pid = ok ? proc_spawn(pargv, &xo, &err) : -1;
        if (pid < 0) {
            cli_error(NULL, "%s", err.msg);
            return EXIT_FAILED;
        }
        str_fmt(path, sizeof(path), "%s/proxy.pid", d->dir);
        write_pid(path, pid, &err);
        printf("%-11s read-write 127.0.0.1:%d, read-only 127.0.0.1:%d, http://127.0.0.1:%d/metrics (pid %d, log %s)\n",
               "proxy", px_rw, px_ro, px_admin, (int)pid, logp);
    }
    printf("waiting for one primary and %d streaming replicas...\n", d->nodes - 1);
    fflush(stdout);
    int64_t deadline = mono_ms() + 180000;
    Cluster c;
    bool ready = false;
    while (mono_ms() < deadline) {
        if (demo_ready(client_url, d->nodes, &c)) {
            ready = true;
            break;
        }
        sleep_ms(500);
    }
    if (!ready) {
        cli_error("look at the logs in the demo directory", "the demo cluster did not come up within 180 s");
        demo_list(d->dir);
        return EXIT_FAILED;
    }
    char *t = cli_format_members(&c, DEMO_SCOPE);
    fputs(t, stdout);
    free(t);
    cluster_free(&c);
    printf("\nconnect to the primary:  psql 'postgresql://postgres:demo-super@127.0.0.1:%d/postgres' (through the proxy)\n"
           "   or to a replica:      psql 'postgresql://postgres:demo-super@127.0.0.1:%d/postgres'\n"
           "   or without the proxy: psql 'postgresql://postgres:demo-super@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/postgres?target_session_attrs=read-write'\n",
           px_rw, px_ro, pg_ports[0], d->nodes > 1 ? pg_ports[1] : pg_ports[0], d->nodes > 2 ? pg_ports[2] : pg_ports[0]);
    printf("watch the cluster:       watch -n1 %s list --dcs-url %s --scope %s\n", self, client_url, DEMO_SCOPE);
    printf("try a failover:          kill -9 the primary's agent and postmaster (see README), then list again\n");
    printf("stop everything:         %s demo down --dir %s\n", self, d->dir);
    return EXIT_OK;
}

static void stop_pid(const char *what, pid_t pid, int sig, int wait_ms)
{
    if (!pid_alive(pid))
        return;
    kill(pid, sig);
    int64_t deadline = mono_ms() + wait_ms;
    while (pid_alive(pid) && mono_ms() < deadline)
        sleep_ms(100);
    if (pid_alive(pid)) {
        fprintf(stderr, "%s (pid %d) did not stop; killing it\n", what, (int)pid);
        kill(pid, SIGKILL);
    }
}

/* Is pid a pgvigil agent? A pid file left by a killed agent may name a reused pid. */
static bool is_agent(pid_t pid)
{
    char path[64];
    str_fmt(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    size_t n = 0;
    char *cmd = file_read_all(path, &n, NULL);
    if (!cmd)
        return false;
    bool prog = false, agent = false;
    for (size_t i = 0; i < n; i += strlen(cmd + i) + 1) {
        if (i == 0)
            prog = strstr(cmd, "pgvigil") != NULL;
        else if (strcmp(cmd + i, "agent") == 0)
            agent = true;
    }
    free(cmd);
    return prog && agent;
}

static int demo_down(const DemoOpts *d, bool purge)
{
    char path[4096];
    str_fmt(path, sizeof(path), "%s/proxy.pid", d->dir);
    stop_pid("proxy", read_pid(path), SIGTERM, 10000);
    unlink(path);
    for (int i = 0; i < 16; i++) {
        char name[32];
        str_fmt(name, sizeof(name), "node%d", i + 1);
        str_fmt(path, sizeof(path), "%s/%s.pid", d->dir, name);
        /* written by the agent itself, so an agent restarted by hand is found too */
        pid_t p = read_pid(path);
        if (p && is_agent(p))
            stop_pid(name, p, SIGTERM, 40000);
        unlink(path);
        /* a postmaster left behind (agent killed by hand) */
        str_fmt(path, sizeof(path), "%s/%s/data", d->dir, name);
        if (file_exists(path)) {
            char pidf[4200];
            str_fmt(pidf, sizeof(pidf), "%s/postmaster.pid", path);
            if (file_exists(pidf)) {
                pg_kill_postmaster(path, 5000);
            }
        }
    }
    str_fmt(path, sizeof(path), "%s/etcd.pid", d->dir);
    stop_pid("etcd", read_pid(path), SIGTERM, 10000);
    unlink(path);
    printf("demo cluster in %s stopped\n", d->dir);
    if (purge) {
        Err err;
        if (!dir_remove_all(d->dir, &err)) {
            cli_error(NULL, "%s", err.msg);
            return EXIT_FAILED;
        }
        printf("removed %s\n", d->dir);
    }
    return EXIT_OK;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"nodes", required_argument, NULL, 'n'},
        {"ttl", required_argument, NULL, 't'},
        {"purge", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    DemoOpts d = {.dir = "/tmp/pgvigil-demo", .nodes = 3, .ttl = 5};
    bool purge = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:n:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': d.dir = optarg; break;
        case 'n':
            if (!cli_parse_int(optarg, 1, 9, &d.nodes))
                return demo_usage(stderr);
            break;
        case 't':
            if (!cli_parse_int(optarg, 2, 3600, &d.ttl))
                return demo_usage(stderr);
            break;
        case 'p': purge = true; break;
        case 'h': return demo_usage(stdout);
        default: return demo_usage(stderr);
        }
    }
    if (optind >= argc)
        return demo_usage(stderr);
    const char *verb = argv[optind];
    if (d.dir[0] != '/') {
        cli_error("pass an absolute path", "--dir must be absolute: %s", d.dir);
        return EXIT_USAGE;
    }
    if (strcmp(verb, "up") == 0)
        return demo_up(&d);
    if (strcmp(verb, "down") == 0)
        return demo_down(&d, purge);
    if (strcmp(verb, "status") == 0)
        return demo_list(d.dir);
    return demo_usage(stderr);
}
