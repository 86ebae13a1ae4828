/* `pgvigil aa` subcommands other than status (cmd_aa_leader.c). */
#ifndef PGVIGIL_CMD_AA_H
#define PGVIGIL_CMD_AA_H

int aa_leader_cmd(int argc, char **argv);       /* argv[0] = "leader" */
int aa_switchover_cmd(int argc, char **argv);   /* argv[0] = "switchover" */

#endif
