/* `pgvigil aa` subcommands other than status (cmd_aa_leader.c, cmd_aa_join.c). */
#ifndef PGVIGIL_CMD_AA_H
#define PGVIGIL_CMD_AA_H

int aa_leader_cmd(int argc, char **argv);       /* argv[0] = "leader" */
int aa_switchover_cmd(int argc, char **argv);   /* argv[0] = "switchover" */
/* cmd_aa_join.c */
int aa_join_cmd(int argc, char **argv);         /* argv[0] = "join" */
int aa_remove_cmd(int argc, char **argv);       /* argv[0] = "remove" */

#endif
