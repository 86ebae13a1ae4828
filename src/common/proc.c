/* fork/exec with timeouts, output capture and privilege drop. */
#include "common/common.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t *cancel_flag;

/* pids proc_run() waits for: proc_reap_orphans() leaves them alone. The mutex is held across
 * fork() and registration so a fast-exiting child is never reaped by the wrong thread. */
static pthread_mutex_t waiting_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t waiting[32];

static void waiting_set(pid_t pid, pid_t to)
{
    for (size_t i = 0; i < ARRAY_LEN(waiting); i++)
        if (waiting[i] == pid) {
            waiting[i] = to;
            return;
        }
}

void proc_leave_alone(pid_t pid, bool on)
{
    pthread_mutex_lock(&waiting_mu);
    waiting_set(on ? 0 : pid, on ? pid : 0);
    pthread_mutex_unlock(&waiting_mu);
}

/* The state letter and parent of pid from /proc/PID/stat; false when it is gone. The command
 * name may hold spaces and parentheses, so fields are read after the last ')'. */
static bool read_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[512];
    str_fmt(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close = strrchr(buf, ')');
    int pp = 0;
    char st = 0;
    if (!close || sscanf(close + 1, " %c %d", &st, &pp) != 2)
        return false;
    if (state)
        *state = st;
    if (ppid)
        *ppid = (pid_t)pp;
    return true;
}

char proc_state(pid_t pid)
{
    char st = 0;
    return read_stat(pid, &st, NULL) ? st : 0;
}

bool proc_is_zombie(pid_t pid)
{
    return proc_state(pid) == 'Z';
}

int proc_children(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char st;
        pid_t pp;
        if (read_stat((pid_t)pid, &st, &pp) && pp == parent && st != 'Z' && st != 'X') {
            if (n < max)
                out[n] = (pid_t)pid;
            n++;
        }
    }
    closedir(d);
    return n;
}

void proc_reap_orphans(void)
{
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks)
        return;
    pthread_mutex_lock(&waiting_mu);
    struct dirent *t;
    while ((t = readdir(tasks)) != NULL) {
        if (t->d_name[0] == '.')
            continue;
        char path[128];
        str_fmt(path, sizeof(path), "/proc/self/task/%s/children", t->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int pid;
        while (fscanf(f, "%d", &pid) == 1) {
            bool ours = false;
            for (size_t i = 0; i < ARRAY_LEN(waiting); i++)
                if (waiting[i] == pid)
                    ours = true;
            if (!ours && proc_is_zombie(pid))
                waitpid(pid, NULL, WNOHANG);
        }
        fclose(f);
    }
    pthread_mutex_unlock(&waiting_mu);
    closedir(tasks);
}

void proc_set_cancel_flag(volatile sig_atomic_t *flag)
{
    cancel_flag = flag;
}

/* SIGTERM, then SIGKILL after a grace period; the whole group when the child leads one */
static void stop_child(pid_t pid, bool group, int *status)
{
    kill(group ? -pid : pid, SIGTERM);
    int64_t deadline = mono_ms() + 2000;
    while (mono_ms() < deadline) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return;
        sleep_ms(20);
    }
    kill(group ? -pid : pid, SIGKILL);
    waitpid(pid, status, 0);
}

static bool run_as_set;
static uid_t run_as_uid;
static gid_t run_as_gid;
static char run_as_name[64];
static char run_as_home[256];

bool proc_set_run_as(const char *user, Err *err)
{
    if (geteuid() != 0 || str_empty(user))
        return true;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        err_set(err, "run-as user \"%s\" does not exist (PostgreSQL refuses to run as root; "
                     "create the user or set postgresql.run_as)", user);
        return false;
    }
    run_as_uid = pw->pw_uid;
    run_as_gid = pw->pw_gid;
    str_copy(run_as_name, sizeof(run_as_name), user);
    str_copy(run_as_home, sizeof(run_as_home), pw->pw_dir ? pw->pw_dir : "/");
    run_as_set = true;
    return true;
}

bool proc_run_as(uid_t *uid, gid_t *gid)
{
    if (uid)
        *uid = run_as_uid;
    if (gid)
        *gid = run_as_gid;
    return run_as_set;
}

bool proc_chown_run_as(const char *path, Err *err)
{
    if (!run_as_set)
        return true;
    if (chown(path, run_as_uid, run_as_gid) != 0) {
        err_set(err, "chown %s to %s: %s", path, run_as_name, strerror(errno));
        return false;
    }
    return true;
}

bool proc_lchown_run_as(const char *path, Err *err)
{
    if (!run_as_set)
        return true;
    if (lchown(path, run_as_uid, run_as_gid) != 0) {
        err_set(err, "chown %s to %s: %s", path, run_as_name, strerror(errno));
        return false;
    }
    return true;
}

bool proc_fchgrp_run_as(int fd, int mode, Err *err)
{
    if (!run_as_set)
        return true;
    if (fchown(fd, (uid_t)-1, run_as_gid) != 0 || fchmod(fd, (mode_t)mode) != 0) {
        err_set(err, "cannot give a file to the group of %s: %s", run_as_name, strerror(errno));
        return false;
    }
    return true;
}

char *proc_argv_str(const char *const argv[])
{
    size_t len = 1;
    for (int i = 0; argv[i]; i++)
        len += strlen(argv[i]) + 1;
    char *s = xmalloc(len);
    s[0] = '\0';
    size_t off = 0;
    for (int i = 0; argv[i]; i++) {
        size_t n = strlen(argv[i]);
        if (i)
            s[off++] = ' ';
        memcpy(s + off, argv[i], n);
        off += n;
        s[off] = '\0';
    }
    return s;
}

/* In the child: never returns. */
static void child_exec(const char *const argv[], const ProcOpts *o, int out_fd)
{
    if (o && o->new_session)
        setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    if (o && o->log_path) {
        int fd = open(o->log_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
        if (fd >= 0) {
            if (o->as_pg_user && run_as_set && fchown(fd, run_as_uid, run_as_gid) != 0) {
                /* not fatal: the file stays root-owned but is already open */
            }
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
    } else if (out_fd >= 0) {
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
        close(out_fd);
    }
    /* close every other inherited descriptor (sockets, pipes of the agent) */
    long maxfd = sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 1024); fd++)
        close(fd);
    if (o && o->as_pg_user && run_as_set) {
        if (setgroups(0, NULL) != 0 || setgid(run_as_gid) != 0 || setuid(run_as_uid) != 0) {
            dprintf(STDERR_FILENO, "pgvigil: cannot switch to user %s: %s\n", run_as_name, strerror(errno));
            _exit(126);
        }
        setenv("HOME", run_as_home, 1);
        setenv("USER", run_as_name, 1);
        setenv("LOGNAME", run_as_name, 1);
        if (chdir(run_as_home) != 0 && chdir("/") != 0) {
            /* ignore */
        }
    }
    if (o && o->env)
        for (int i = 0; o->env[i]; i++)
            putenv((char *)o->env[i]);
    execvp(argv[0], (char *const *)argv);
    dprintf(STDERR_FILENO, "pgvigil: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

pid_t proc_spawn(const char *const argv[], const ProcOpts *opts, Err *err)
{
    pid_t pid = fork();
    if (pid < 0) {
        err_set(err, "fork for %s: %s", argv[0], strerror(errno));
        return -1;
    }
    if (pid == 0)
        child_exec(argv, opts, -1);
    return pid;
}

bool proc_reap(pid_t pid, int *status)
{
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
        if (status)
            *status = st;
        return true;
    }
    return false;
}

static int proc_run_inner(const char *const argv[], const ProcOpts *opts, char **output, Err *err, pid_t *child)
{
    int pfd[2] = {-1, -1};
    if (output) {
        *output = NULL;
        if (pipe2(pfd, O_CLOEXEC) != 0) {
            err_set(err, "pipe: %s", strerror(errno));
            return -1;
        }
    }
    pthread_mutex_lock(&waiting_mu);
    pid_t pid = fork();
    if (pid > 0)
        waiting_set(0, pid);
    pthread_mutex_unlock(&waiting_mu);
    *child = pid;
    if (pid < 0) {
        err_set(err, "fork for %s: %s", argv[0], strerror(errno));
        if (output) {
            close(pfd[0]);
            close(pfd[1]);
        }
        return -1;
    }
    if (pid == 0) {
        if (output) {
            close(pfd[0]);
            int fd = dup(pfd[1]); /* drop CLOEXEC */
            child_exec(argv, opts, fd);
        }
        child_exec(argv, opts, -1);
    }
    size_t cap = 0, len = 0;
    char *buf = NULL;
    if (output)
        close(pfd[1]);
    int64_t deadline = (opts && opts->timeout_ms > 0) ? mono_ms() + opts->timeout_ms : 0;
    bool timed_out = false, cancelled = false;
    int status = 0;
    for (;;) {
        if (output && pfd[0] >= 0) {
            int wait = 200;
            if (deadline) {
                int64_t left = deadline - mono_ms();
                wait = left <= 0 ? 0 : (left < 200 ? (int)left : 200);
            }
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            int r = poll(&p, 1, wait);
            if (r > 0) {
                if (cap - len < 4096) {
                    cap = cap ? cap * 2 : 8192;
                    buf = xrealloc(buf, cap);
                }
                ssize_t n = read(pfd[0], buf + len, cap - len - 1);
                if (n > 0)
                    len += (size_t)n;
                else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    close(pfd[0]);
                    pfd[0] = -1;
                }
            }
        } else {
            sleep_ms(20);
        }
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r < 0 && errno == ECHILD) {
            /* someone else reaped it: the exit status is lost */
            if (output && pfd[0] >= 0)
                close(pfd[0]);
            if (output) {
                if (!buf)
                    buf = xcalloc(1, 1);
                buf[len] = '\0';
                *output = buf;
            }
            err_set(err, "%s: exit status lost (reaped elsewhere)", argv[0]);
            return -1;
        }
        if (r == pid) {
            /* drain what is left */
            while (output && pfd[0] >= 0) {
                if (cap - len < 4096) {
                    cap = cap ? cap * 2 : 8192;
                    buf = xrealloc(buf, cap);
                }
                ssize_t n = read(pfd[0], buf + len, cap - len - 1);
                if (n <= 0) {
                    close(pfd[0]);
                    pfd[0] = -1;
                } else
                    len += (size_t)n;
            }
            break;
        }
        if (deadline && mono_ms() > deadline) {
            stop_child(pid, opts && opts->new_session, &status);
            timed_out = true;
            break;
        }
        if (cancel_flag && *cancel_flag) {
            stop_child(pid, opts && opts->new_session, &status);
            cancelled = true;
            break;
        }
    }
    if (output && pfd[0] >= 0)
        close(pfd[0]);
    if (output) {
        if (!buf)
            buf = xcalloc(1, 1);
        buf[len] = '\0';
        *output = buf;
    }
    if (timed_out) {
        err_set(err, "%s timed out after %d ms", argv[0], opts->timeout_ms);
        return -1;
    }
    if (cancelled) {
        err_set(err, "%s cancelled (agent shutting down)", argv[0]);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        err_set(err, "%s killed by signal %d", argv[0], WTERMSIG(status));
        return -1;
    }
    int code = WEXITSTATUS(status);
    if (code != 0)
        err_set(err, "%s exited with status %d", argv[0], code);
    return code;
}

int proc_run(const char *const argv[], const ProcOpts *opts, char **output, Err *err)
{
    pid_t child = 0;
    int rc = proc_run_inner(argv, opts, output, err, &child);
    if (child > 0) {
        pthread_mutex_lock(&waiting_mu);
        waiting_set(child, 0);
        pthread_mutex_unlock(&waiting_mu);
    }
    return rc;
}
