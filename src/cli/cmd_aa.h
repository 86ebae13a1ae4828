/* `pgvigil aa` subcommands other than status (cmd_aa_leader.c, cmd_aa_join.c). */
#ifndef PGVIGIL_CMD_AA_H
#define PGVIGIL_CMD_AA_H

int aa_leader_cmd(int argc, char **argv);       /* argv[0] = "leader" */
int aa_switchover_cmd(int argc, char **argv);   /* argv[0] = "switchover" */
/* Move the write lead of location ("" the group's) to node to over ctx (a group's), letting
 * the old leader's transactions in flight end for up to drain_ms; an exit code, said. */
struct CliCtx;
int aa_switchover_to(struct CliCtx *ctx, const char *location, const char *to, int drain_ms, int timeout);
/* cmd_aa_maintenance.c */
int aa_maintenance_cmd(int argc, char **argv);  /* argv[0] = "maintenance" */
/* cmd_aa_join.c */
int aa_join_cmd(int argc, char **argv);         /* argv[0] = "join" */
int aa_remove_cmd(int argc, char **argv);       /* argv[0] = "remove" */

#endif
