/* Fencing process: reads deadlines from a pipe; when the current one passes (or the agent is
 * gone and it passes), stops the local postmaster with an immediate shutdown. */
#include "common/common.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "ha/fence.h"
#include "pg/pg.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#define FENCE_EXIT ((int64_t)-1)

static void fence_main(int rfd, const char *data_dir)
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
                        _exit(0);
                    deadline = msg;
                    continue;
                }
                if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                    agent_gone = true;
                    if (!deadline)
                        _exit(0);
                    log_warn("fence: agent is gone while postgres may be primary; stopping it at the lease deadline");
                }
            }
        } else {
            sleep_ms(wait);
        }
        if (deadline && mono_ms() >= deadline) {
            log_error("fence: agent missed its heartbeat deadline: stopping postgres (immediate) so it cannot accept writes without a lease");
            pg_kill_postmaster(data_dir, 3000);
            deadline = 0;
            if (agent_gone)
                _exit(0);
        }
    }
}

bool fence_start(Fence *f, const char *data_dir, Err *err)
{
    int p[2];
    if (pipe(p) != 0) {
        err_set(err, "fence: pipe: %s", strerror(errno));
        return false;
    }
    pid_t pid = fork();
    if (pid < 0) {
        err_set(err, "fence: fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return false;
    }
    if (pid == 0) {
        close(p[1]);
        fence_main(p[0], data_dir);
        _exit(0);
    }
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
