/* Fuzz the REST API over a real loopback socket: each input is sent as raw bytes to a running
 * server (libmicrohttpd's parser, then our routing, authentication, query and body handling),
 * and the answer must be a well-formed HTTP status line or a closed connection. The backend
 * is a stub: only the HTTP side is under test here. */
#include "common/common.h"
#include "api/rest.h"
#include "common/log.h"
#include "fuzz_util.h"

#include <signal.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static RestServer *server;
static int port;

static void get_status(void *ctx, NodeStatus *out)
{
    memset(out, 0, sizeof(*out));
    str_copy(out->name, sizeof(out->name), "node1");
    str_copy(out->scope, sizeof(out->scope), "fuzz");
    str_copy(out->role, sizeof(out->role), "primary");
    str_copy(out->state, sizeof(out->state), "running");
    str_copy(out->leader_name, sizeof(out->leader_name), "node1");
    out->pg_running = out->is_leader = out->dcs_ok = true;
    out->timeline = 1;
    out->lag_bytes = -1;
    out->tags.failover_priority = 1;
}

static char *document(void *ctx)
{
    return str_dup("{\"members\":[]}");
}

static int switchover(void *ctx, const char *leader, const char *candidate, bool is_failover,
                      char **body)
{
    *body = str_printf("%s -> %s", leader ? leader : "-", candidate ? candidate : "-");
    return 412;
}

static int action(void *ctx, char **body)
{
    *body = str_dup("not now");
    return 503;
}

static int reinitialize(void *ctx, bool force, char **body)
{
    *body = NULL;
    return 200;
}

static int patch_config(void *ctx, const char *patch_json, char **body)
{
    FUZZ_CHECK(patch_json != NULL);
    *body = str_dup(patch_json);
    return 200;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    static const RestBackend backend = {
        .get_status = get_status, .cluster_json = document, .history_json = document,
        .config_json = document, .switchover = switchover, .restart = action,
        .reinitialize = reinitialize, .reload = action, .patch_config = patch_config,
    };
    Err err = {{0}};
    server = rest_start("127.0.0.1:0", &backend, "admin", "secret", &err);
    if (!server) {
        fprintf(stderr, "fuzz_rest_http: %s\n", err.msg);
        exit(1);
    }
    port = rest_port(server);
    return 0;
}

static int local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    return getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = fuzz_connect_loopback(port);
    if (fd < 0) {
        fprintf(stderr, "fuzz_rest_http: connect to port %d: %s\n", port, strerror(errno));
        abort();
    }
    (void)fuzz_send_all(fd, data, size);    /* the server may close on garbage first */
    shutdown(fd, SHUT_WR);
    char head[16];
    size_t got = 0;
    for (;;) {
        char buf[4096];
        /* the server must answer or close well within its own connection timeout (10 s) */
        ssize_t r = fuzz_recv(fd, buf, sizeof(buf), 15000);
        if (r < 0) {
            fprintf(stderr, "fuzz_rest_http: no answer and no close in 15 s (%zu bytes so far, "
                    "local port %d)\n", got, local_port(fd));
            abort();
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r && got < sizeof(head); i++)
            head[got++] = buf[i];
    }
    close(fd);
    if (got > 0)
        FUZZ_CHECK(got >= 12 && memcmp(head, "HTTP/1.", 7) == 0);
    return 0;
}
