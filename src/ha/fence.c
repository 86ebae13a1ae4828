/* Fencing process: reads deadlines from a pipe; when the current one passes (or the agent is
 * gone and it passes), removes the floating IP and kills the local postgres, backends included.
 * An agent that dies with no deadline set leaves no guard at all, so then a postgres running
 * without standby.signal is killed at once, unless the cluster is paused. A dead agent cannot
 * keep the floating IP: it goes as soon as the pipe closes. The agent side (fence_*) watches
 * the process and starts a new one when it dies or stops reading. */
#include "common/common.h"
#include "cli/cli.h"
#include "common/fileutil.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "ha/fence.h"
#include "net/vip.h"
#include "pg/pg.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* messages other than a deadline (> 0) or 0 (disarm) */
#define FENCE_EXIT ((int64_t)-1)
#define FENCE_PAUSED ((int64_t)-2)
#define FENCE_RUNNING ((int64_t)-3)

/* killing postgres takes a few milliseconds; this bounds a postmaster that will not die */
#define KILL_TIMEOUT_MS 2000

/* ---- the fencing process ------------------------------------------------------------------ */

/* The address goes first: clients stop reaching this node at once. */
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

static void kill_postgres(const char *data_dir, Vip *vip, const char *why)
{
    bool vip_gone = drop_vip(vip, why);
    if (pg_postmaster_pid(data_dir) == 0) {
        log_info("fence: %s; postgres is not running", why);
    } else {
        log_error("fence: %s: killing postgres and its backends so it cannot accept writes without a lease", why);
        if (!pg_kill_postmaster(data_dir, KILL_TIMEOUT_MS))
            log_error("fence: postgres of %s did not die within %d ms", data_dir, KILL_TIMEOUT_MS);
    }
    if (!vip_gone)
        drop_vip(vip, why);
}

/* Would a postgres here accept writes? It runs, and not as a standby. */
static bool runs_as_primary(const char *data_dir)
{
    char sig[4200];
    str_fmt(sig, sizeof(sig), "%s/standby.signal", data_dir);
    return pg_postmaster_pid(data_dir) != 0 && !file_exists(sig);
}

static void fence_main(int rfd, const char *data_dir, Vip *vip)
{
    prctl(PR_SET_NAME, "pgvigil-fence", 0, 0, 0);
    signal(SIGINT, SIG_IGN);   /* the agent decides when we stop, not the terminal */
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    int64_t deadline = 0;
    bool paused = false;
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
                    /* resumed with the agent after both were frozen past the deadline: the
                     * message may be a new deadline sent after a renewal, but the old one
                     * passed first, and another node may already be primary */
                    if (deadline && mono_ms() >= deadline) {
                        kill_postgres(data_dir, vip, "agent missed its heartbeat deadline");
                        deadline = 0;
                    }
                    if (msg == FENCE_PAUSED || msg == FENCE_RUNNING)
                        paused = msg == FENCE_PAUSED;
                    else
                        deadline = msg;
                    continue;
                }
                if (n >= 0 || (errno != EINTR && errno != EAGAIN)) {
                    /* closed, a torn message, or a broken pipe: the agent is gone */
                    agent_gone = true;
                    drop_vip(vip, "the agent is gone");
                    if (!deadline) {
                        if (!paused && runs_as_primary(data_dir))
                            kill_postgres(data_dir, vip, "agent died while postgres runs as a primary with no deadline set");
                        return;
                    }
                    log_warn("fence: agent is gone while postgres may be primary; killing it at the lease deadline");
                }
            }
        } else {
            sleep_ms(wait);
        }
        if (deadline && mono_ms() >= deadline) {
            kill_postgres(data_dir, vip, "agent missed its heartbeat deadline");
            deadline = 0;
            if (agent_gone)
                return;
        }
    }
}

static void fence_usage(FILE *out)
{
    fprintf(out, "usage: pgvigil fence --name N --data-dir D --fd FD [--vip A --vip-interface I --vip-arp-count N]\n"
                 "The fencing process of an agent (started by the agent; not for use by hand).\n");
}

int cmd_fence(int argc, char **argv)
{
    const char *name = NULL, *data_dir = NULL, *fd_s = NULL;
    VipConfig vc = {0};
    const char *arp = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--name") == 0)
            dst = &name;
        else if (strcmp(argv[i], "--data-dir") == 0)
            dst = &data_dir;
        else if (strcmp(argv[i], "--fd") == 0)
            dst = &fd_s;
        else if (strcmp(argv[i], "--vip") == 0)
            dst = (const char **)&vc.address;
        else if (strcmp(argv[i], "--vip-interface") == 0)
            dst = (const char **)&vc.interface;
        else if (strcmp(argv[i], "--vip-arp-count") == 0)
            dst = &arp;
        if (!dst || i + 1 >= argc) {
            fence_usage(stderr);
            return EXIT_USAGE;
        }
        *dst = argv[++i];
    }
    char *end = NULL;
    long fd = fd_s ? strtol(fd_s, &end, 10) : -1;
    if (!data_dir || fd < 0 || (end && *end)) {
        fence_usage(stderr);
        return EXIT_USAGE;
    }
    if (name)
        log_set_name(name);
    vc.arp_count = arp ? atoi(arp) : 3;
    Err err = {{0}};
    Vip *vip = NULL;
    if (vc.address && !(vip = vip_new(&vc, &err))) {
        log_error("fence: %s", err.msg);
        return EXIT_CONFIG;
    }
    fence_main((int)fd, data_dir, vip);
    vip_free(vip);
    return EXIT_OK;
}

/* ---- the agent's side --------------------------------------------------------------------- */

/* the pgvigil binary: the agent's own (a unit test names it, being another program) */
static const char *fence_program = "/proc/self/exe";

void fence_set_program(const char *path)
{
    fence_program = path;
}

static void send_msg(Fence *f, int64_t v)
{
    if (f->fd < 0 || f->failed)
        return;
    ssize_t n = write(f->fd, &v, sizeof(v));
    if (n == (ssize_t)sizeof(v))
        return;
    /* EAGAIN: the fence stopped reading (frozen or stuck), EPIPE: it is gone. Either way it no
     * longer guards anything; fence_check replaces it. (8 bytes are below PIPE_BUF: a write is
     * never torn.) */
    log_error("fence: cannot reach the fencing process (pid %d): %s", (int)f->pid,
              n < 0 ? strerror(errno) : "short write");
    f->failed = true;
}

static bool spawn(Fence *f, Err *err)
{
    char fdbuf[16], arpbuf[16];
    str_fmt(fdbuf, sizeof(fdbuf), "%d", 3);
    str_fmt(arpbuf, sizeof(arpbuf), "%d", f->vip_arp_count);
    const char *argv[16];
    int n = 0;
    argv[n++] = "pgvigil";
    argv[n++] = "fence";
    argv[n++] = "--name";
    argv[n++] = f->name;
    argv[n++] = "--data-dir";
    argv[n++] = f->data_dir;
    argv[n++] = "--fd";
    argv[n++] = fdbuf;
    if (f->vip_address) {
        argv[n++] = "--vip";
        argv[n++] = f->vip_address;
        argv[n++] = "--vip-interface";
        argv[n++] = f->vip_interface ? f->vip_interface : "";
        argv[n++] = "--vip-arp-count";
        argv[n++] = arpbuf;
    }
    argv[n] = NULL;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
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
        /* only async-signal-safe calls until exec: the agent may have threads */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (p[0] == 3)
            fcntl(3, F_SETFD, 0);
        else if (dup2(p[0], 3) < 0)
            _exit(127);
        /* no socket or file of the agent's may outlive it in the fence (a REST port, say) */
        close_range(4, ~0U, 0);
        execv(fence_program, (char *const *)argv);
        _exit(127);
    }
    close(p[0]);
    /* a fence that stops reading must not block the agent: a full pipe is a fence failure */
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    f->pid = pid;
    f->fd = p[1];
    f->failed = false;
    proc_leave_alone(pid, true);
    return true;
}

bool fence_start(Fence *f, const char *name, const char *data_dir, const VipConfig *vip_cfg, Err *err)
{
    memset(&f->guard, 0, sizeof(f->guard));
    if (vip_cfg && vip_cfg->address) {
        Vip *v = vip_new(vip_cfg, err);
        if (!v)
            return false;
        vip_free(v);
    }
    f->pid = 0;
    f->fd = -1;
    f->armed_until = 0;
    f->paused = false;
    f->failed = false;
    f->name = str_dup(name ? name : "");
    f->data_dir = str_dup(data_dir);
    f->vip_address = vip_cfg && vip_cfg->address ? str_dup(vip_cfg->address) : NULL;
    f->vip_interface = vip_cfg && vip_cfg->interface ? str_dup(vip_cfg->interface) : NULL;
    f->vip_arp_count = vip_cfg ? vip_cfg->arp_count : 0;
    return spawn(f, err);
}

void fence_guard_commits(Fence *f, const char *lease_file)
{
    if (f->guard.path)
        return;
    Err err = {{0}};
    if (!commit_guard_open(&f->guard, lease_file, f->lease_gen, &err))
        log_error("%s (made again on the next check; until then commits are not guarded)", err.msg);
    commit_guard_set(&f->guard, f->armed_until);
}

void fence_new_lease(Fence *f, uint64_t lease_gen)
{
    f->lease_gen = lease_gen;
    commit_guard_new_lease(&f->guard, lease_gen);
}

void fence_strays_gone(Fence *f)
{
    commit_guard_forget_inherited(&f->guard);
}

void fence_arm(Fence *f, int64_t deadline_ms)
{
    if (deadline_ms <= 0)
        deadline_ms = 1; /* 0 means disarmed: a deadline in the past acts at once */
    /* the guard first: past the deadline, postgres refuses commits before the fence kills it */
    commit_guard_set(&f->guard, deadline_ms);
    if (deadline_ms == f->armed_until)
        return;
    f->armed_until = deadline_ms;
    send_msg(f, deadline_ms);
}

void fence_disarm(Fence *f)
{
    commit_guard_set(&f->guard, 0);
    if (f->armed_until == 0)
        return;
    f->armed_until = 0;
    send_msg(f, 0);
}

void fence_set_paused(Fence *f, bool paused)
{
    if (paused == f->paused)
        return;
    f->paused = paused;
    send_msg(f, paused ? FENCE_PAUSED : FENCE_RUNNING);
}

bool fence_check(Fence *f, Err *err)
{
    commit_guard_check(&f->guard);
    const char *what = NULL;
    int status = 0;
    if (f->pid > 0) {
        pid_t r = waitpid(f->pid, &status, WNOHANG);
        if (r == f->pid || (r < 0 && errno == ECHILD)) {
            what = r == f->pid && WIFSIGNALED(status) ? "was killed" : "exited";
            proc_leave_alone(f->pid, false);
            f->pid = 0;
        }
    } else {
        what = "is not running";
    }
    if (!what && f->failed)
        what = "does not read its messages";
    if (!what)
        return true;
    if (f->pid > 0) {
        /* stuck or frozen: it guards nothing; its replacement takes over its deadline */
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        proc_leave_alone(f->pid, false);
        log_error("fence: the fencing process (pid %d) %s; killed it", (int)f->pid, what);
    } else {
        log_error("fence: the fencing process %s", what);
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->pid = 0;
    if (!spawn(f, err))
        return false;
    /* the new one starts disarmed and not paused: tell it the current state */
    int64_t armed = f->armed_until;
    bool paused = f->paused;
    f->armed_until = 0;
    f->paused = false;
    fence_set_paused(f, paused);
    if (armed)
        fence_arm(f, armed);
    if (f->failed) {
        err_set(err, "fence: the new fencing process does not read its messages");
        return false;
    }
    log_warn("fence: started a new fencing process (pid %d)%s", (int)f->pid, armed ? " with the current deadline" : "");
    return true;
}

int fence_kill_strays(const Fence *f)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int killed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || (pid_t)pid == f->pid || (pid_t)pid == getpid())
            continue;
        char path[64];
        str_fmt(path, sizeof(path), "/proc/%ld/comm", pid);
        char *comm = file_read_all(path, NULL, NULL);
        bool fence = comm && strncmp(comm, "pgvigil-fence", 13) == 0;
        free(comm);
        if (!fence)
            continue;
        str_fmt(path, sizeof(path), "/proc/%ld/cmdline", pid);
        size_t n = 0;
        char *cmd = file_read_all(path, &n, NULL);
        bool ours = false;
        for (size_t i = 0; cmd && i < n; i += strlen(cmd + i) + 1)
            if (strcmp(cmd + i, "--data-dir") == 0 && i + strlen(cmd + i) + 1 < n)
                ours = strcmp(cmd + i + strlen(cmd + i) + 1, f->data_dir) == 0;
        free(cmd);
        if (ours && kill((pid_t)pid, SIGKILL) == 0) {
            log_warn("fence: killed the fencing process %ld of an earlier agent of %s (this agent's fence guards it now)",
                     pid, f->data_dir);
            killed++;
        }
    }
    closedir(d);
    return killed;
}

void fence_stop(Fence *f)
{
    commit_guard_set(&f->guard, 0);
    if (f->fd < 0)
        return;
    f->failed = false;
    send_msg(f, FENCE_EXIT);
    close(f->fd);
    f->fd = -1;
    if (f->pid > 0)
        proc_leave_alone(f->pid, false);
}

void fence_abandon(Fence *f)
{
    if (f->fd < 0)
        return;
    close(f->fd);
    f->fd = -1;
    if (f->pid > 0)
        proc_leave_alone(f->pid, false);
}

void fence_free(Fence *f)
{
    commit_guard_close(&f->guard);
    free(f->name);
    free(f->data_dir);
    free(f->vip_address);
    free(f->vip_interface);
    f->name = f->data_dir = f->vip_address = f->vip_interface = NULL;
}
