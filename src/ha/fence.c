/* Fencing process: reads deadlines from a pipe; when the current one passes (or the agent is
 * gone and it passes), removes the floating IP and stops the local postmaster with an immediate
 * shutdown. A dead agent cannot keep the floating IP: it goes as soon as the pipe closes. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "ha/fence.h"
#include "net/vip.h"
#include "pg/pg.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#define FENCE_EXIT ((int64_t)-1)

/* The address goes first: clients stop reaching this node at once, even while postgres takes
 * its grace period to die. */
static bool drop_vip(Vip *vip, const char *why)
{
    if (!vip)
        return true;
    Err err = {{0}};
    bool removed = false;
    if (!vip_remove(vip, &removed, &err)) {
        log_error("fence: removing vip %s: %s", vip_describe(vip), err.msg);
        return false;
    }
    if (removed)
        log_warn("fence: removed vip %s: %s", vip_describe(vip), why);
    return true;
}

static void fence_main(int rfd, const char *data_dir, Vip *vip)
{
    prctl(PR_SET_NAME, "pgvigil-fence", 0, 0, 0);
    signal(SIGINT, SIG_IGN);   /* the agent decides when we stop, not the terminal */
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    int64_t deadline = 0;
    bool agent_gone = false;
    for (;;) {
        int wait = 1000;
        if (deadline) {
            int64_t left = deadline - mono_ms();
            wait = left <= 0 ? 0 : (left < 1000 ? (int)left : 1000);
        }
        if (!agent_gone) {
            struct pollfd p = {.fd = rfd, .events = POLLIN};
            int r = poll(&p, 1, wait);
            if (r > 0) {
                int64_t msg;
                ssize_t n = read(rfd, &msg, sizeof(msg));
                if (n == (ssize_t)sizeof(msg)) {
                    if (msg == FENCE_EXIT)
                        return;
                    deadline = msg;
                    continue;
                }
                if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                    agent_gone = true;
                    drop_vip(vip, "the agent is gone");
                    if (!deadline)
                        return;
                    log_warn("fence: agent is gone while postgres may be primary; stopping it at the lease deadline");
                }
            }
        } else {
            sleep_ms(wait);
        }
        if (deadline && mono_ms() >= deadline) {
            bool vip_gone = drop_vip(vip, "the agent missed its heartbeat deadline");
            log_error("fence: agent missed its heartbeat deadline: stopping postgres (immediate) so it cannot accept writes without a lease");
            pg_kill_postmaster(data_dir, 3000);
            if (!vip_gone)
                drop_vip(vip, "the agent missed its heartbeat deadline");
            deadline = 0;
            if (agent_gone)
                return;
        }
    }
}

bool fence_start(Fence *f, const char *data_dir, const VipConfig *vip_cfg, Err *err)
{
    Vip *vip = NULL;
    if (vip_cfg && !(vip = vip_new(vip_cfg, err)))
        return false;
    int p[2];
    if (pipe(p) != 0) {
        err_set(err, "fence: pipe: %s", strerror(errno));
        vip_free(vip);
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        err_set(err, "fence: fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        vip_free(vip);
        return false;
    }
    if (pid == 0) {
        close(p[1]);
        fence_main(p[0], data_dir, vip);
        vip_free(vip);
        _exit(0);
    }
    vip_free(vip); /* the fencing process has its own copy */
    close(p[0]);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    f->pid = pid;
    f->fd = p[1];
    f->armed_until = 0;
    return true;
}

static void send_msg(Fence *f, int64_t v)
{
    if (f->fd < 0)
        return;
    ssize_t n = write(f->fd, &v, sizeof(v));
    (void)n;
}

void fence_arm(Fence *f, int64_t deadline_ms)
{
    if (deadline_ms == f->armed_until)
        return;
    f->armed_until = deadline_ms;
    send_msg(f, deadline_ms);
}

void fence_disarm(Fence *f)
{
    if (f->armed_until == 0)
        return;
    f->armed_until = 0;
    send_msg(f, 0);
}

void fence_stop(Fence *f)
{
    if (f->fd < 0)
        return;
    send_msg(f, FENCE_EXIT);
    close(f->fd);
    f->fd = -1;
}
