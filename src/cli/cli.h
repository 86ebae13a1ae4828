/* Subcommands of the pgvigil binary. Each returns a process exit code:
 *  0 ok, 1 operation failed, 2 usage error, 3 configuration error, 4 DCS (etcd) unreachable,
 *  5 cluster state forbids the operation (e.g. no healthy candidate). */
#ifndef PGVIGIL_CLI_H
#define PGVIGIL_CLI_H

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_CONFIG = 3,
    EXIT_DCS = 4,
    EXIT_STATE = 5,
};

int cmd_agent(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_switchover(int argc, char **argv);
int cmd_failover(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_reinit(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_show_config(int argc, char **argv);
int cmd_edit_config(int argc, char **argv);
int cmd_site(int argc, char **argv);
int cmd_drill(int argc, char **argv);
int cmd_rescue(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_wal_fetch(int argc, char **argv);
int cmd_wal_push(int argc, char **argv);
int cmd_wal_summary(int argc, char **argv);
int cmd_rewind(int argc, char **argv);
int cmd_aa(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);

/* Print "error: <msg>" and, when hint is non-NULL, "hint: <hint>" to stderr. */
void cli_error(const char *hint, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
