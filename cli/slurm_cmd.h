/* cli/slurm_cmd.h — `loom slurm start|submit|status|cancel` (cli/slurm_cmd.c). */
#ifndef LOOM_CLI_SLURM_CMD_H
#define LOOM_CLI_SLURM_CMD_H

/* argv[0] is "start", "submit", "status" or "cancel"; the arguments after a
 * lone "--" are the driver's.  Returns the process exit status. */
int slurm_cli(int argc, char **argv);

/* Send sig to the tasks of Slurm job `job`'s loom steps (head and daemons),
 * so they stop cleanly; 0, or -1 when Slurm could not be asked. */
int slurm_signal_steps(const char *job, int sig);

#endif
