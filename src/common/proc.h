/* Running external programs (initdb, pg_ctl, pg_basebackup, pg_rewind, callbacks):
 * synchronously with a timeout and captured output, or in the background.
 * When pgvigil runs as root, PostgreSQL programs run as an unprivileged user
 * (PostgreSQL refuses root): see proc_set_run_as(). */
#ifndef PGVIGIL_PROC_H
#define PGVIGIL_PROC_H

#include "common/common.h"

#include <signal.h>
#include <sys/types.h>

typedef struct ProcOpts {
    bool as_pg_user;         /* drop to the run-as user (if one is set) in the child */
    int timeout_ms;          /* proc_run only: 0 = wait forever; on expiry the child gets SIGKILL */
    const char *const *env;  /* extra "KEY=value" entries, NULL-terminated; may be NULL */
    const char *log_path;    /* child's stdout+stderr appended here (else inherited or captured) */
    bool new_session;        /* setsid() in the child so signals to our group don't reach it */
} ProcOpts;

/* Run argv and wait. Returns the exit status (0-255), or -1 when it could not be started,
 * was killed by a signal or timed out (err says which). When output is non-NULL, stdout and
 * stderr are captured into a malloc'd string the caller frees (even on failure). */
int proc_run(const char *const argv[], const ProcOpts *opts, char **output, Err *err);

/* While *flag is non-zero, proc_run() stops the program it waits for (its whole process group
 * when it has its own session) and fails with "cancelled". Used at shutdown so a long
 * pg_basebackup does not hold the agent. NULL disables. */
void proc_set_cancel_flag(volatile sig_atomic_t *flag);

/* Start argv in the background; returns its pid or -1. The caller reaps it (proc_reap). */
pid_t proc_spawn(const char *const argv[], const ProcOpts *opts, Err *err);

/* Reap zombie children that no proc_run() call is waiting for: with the agent as child
 * subreaper, an orphaned postmaster (and its backends) become our children when they die. */
void proc_reap_orphans(void);
/* Has pid exited without being reaped yet? (false when it is gone or cannot be read) */
bool proc_is_zombie(pid_t pid);
/* The state letter of pid in /proc (R, S, D, T, Z...), 0 when it is gone. */
char proc_state(pid_t pid);
/* The live (not zombie) children of parent, found by their parent pid in /proc: up to max in
 * out; returns how many there are (may exceed max), -1 when /proc cannot be read. */
int proc_children(pid_t parent, pid_t *out, int max);
/* A child the caller reaps itself (the fencing process): proc_reap_orphans() leaves it alone
 * while on. */
void proc_leave_alone(pid_t pid, bool on);

/* Non-blocking reap: true when pid has exited (status in *status, may be NULL). */
bool proc_reap(pid_t pid, int *status);

/* Resolve the OS user PostgreSQL runs as. Only takes effect when geteuid() == 0. */
bool proc_set_run_as(const char *user, Err *err);
/* True when a run-as user is active; fills uid/gid (either may be NULL). */
bool proc_run_as(uid_t *uid, gid_t *gid);
/* chown path to the run-as user when one is active; no-op otherwise. */
bool proc_chown_run_as(const char *path, Err *err);
/* The same without following a symbolic link at path (lchown): for paths in a directory another
 * user can write. */
bool proc_lchown_run_as(const char *path, Err *err);
/* Give the open file fd to the run-as user's group (owner unchanged) with mode: what root
 * writes for postgres to read, not to change. No-op when no run-as user is active. */
bool proc_fchgrp_run_as(int fd, int mode, Err *err);

/* Join argv into one printable line (for logs). Caller frees. */
char *proc_argv_str(const char *const argv[]);

#endif
