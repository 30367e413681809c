/* cli/cli.h — what the parts of the `loom` command share: the parsed command
 * line (opts), the table of commands (cli/commands.c) that both dispatch and
 * help come from, option helpers and connecting (cli/opts.c), the user
 * commands (cli/main.c) and the processes loom starts itself (cli/procs.c). */
#ifndef LOOM_CLI_CLI_H
#define LOOM_CLI_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "loom/loom.h"

#define MAX_OPTS 32

typedef struct opts {
    const char *key[MAX_OPTS];   /* into argv, or into keybuf for --key=value */
    const char *val[MAX_OPTS];
    int n;
    char keybuf[MAX_OPTS][40];   /* the keys of --key=value, cut out of argv */
    const char *pos[MAX_OPTS];
    int npos;
    int argc;    /* the raw arguments after the command's name (for slurm) */
    char **argv;
    const struct cli_cmd *cmd; /* the (sub)command being run */
} opts;

typedef struct cli_cmd cli_cmd;
typedef int (*cli_run_fn)(const opts *o);

enum {
    CLI_HIDDEN = 1,   /* a process loom starts itself: not listed, any option taken */
    CLI_RAW = 2,      /* parses its own arguments (o->argc, o->argv) */
};

/* One (sub)command: `name` is "status" or, for a subcommand, "kv put".  A
 * subcommand runs its group's handler, which reads the operation from pos[0]. */
struct cli_cmd {
    const char *name;
    const char *section;  /* heading in `loom help` (groups and commands) */
    const char *synopsis; /* lines after "usage: " (several: '\n' between) */
    const char *summary;  /* one line, for listings */
    const char *details;  /* description and options, or NULL */
    const char *example;  /* one or more command lines */
    const char *options;  /* "json timeout= ..." ('=': takes a value); NULL: see the subcommands */
    int common;           /* takes --address, --state-dir, --secret-file */
    cli_run_fn run;
    int flags;
};

/* ---- the table (cli/commands.c) ------------------------------------------ */

/* The (sub)command that argv names (argv[0] the command, argv[1] perhaps its
 * operation); *used is how many words named it.  NULL: no such command. */
const cli_cmd *cli_find(int argc, char **argv, int *used);
const cli_cmd *cli_lookup(const char *name);
void cli_print_help(const cli_cmd *c, FILE *f);
void cli_print_usage(FILE *f);
/* "usage: ..." of one command and the hint where its help is (stderr). */
int cli_usage_error(const cli_cmd *c);
/* `loom _completion`: a bash completion script made from the table. */
void cli_print_completion(FILE *f);
/* Is --key (klen bytes) an option of c?  -1: no; 0: a flag; 1: takes a value */
int cli_option_kind(const cli_cmd *c, const char *key, size_t klen);
/* 1 when an argument before a lone "--" asks for help (--help or -h) */
int cli_wants_help(int argc, char **argv);

/* ---- options (cli/opts.c) ------------------------------------------------- */

/* Parse argv by c's options: flags take no value, the others the next
 * argument; an unknown option or a missing value is a usage error (printed,
 * 2 returned).  Hidden commands take any --key [VALUE] as before. */
int parse_opts(const cli_cmd *c, int argc, char **argv, opts *o);
const char *opt(const opts *o, const char *key);
int opt_int(const opts *o, const char *key, int def);
void opt_default(opts *o, const char *key, const char *val);
uint64_t parse_bytes(const char *s);
const char *state_dir(const opts *o, char *buf, size_t len);
int prepare_state_dir(const char *sd, char *why, size_t len);
int connect_cli(const opts *o, loom_client **c);

/* ---- the processes loom starts itself (cli/procs.c) ----------------------- */

int cmd_head(const opts *o);
int cmd_node(const opts *o);
int cmd_executor(const opts *o);
/* Check the node options of `start` and `_node`; 1 (printed) when wrong. */
int check_node_opts(const opts *o);

/* ---- user commands (cli/main.c) ------------------------------------------- */

int cmd_start(const opts *o);
int cmd_stop(const opts *o);
int cmd_status(const opts *o);
int cmd_actors(const opts *o);
int cmd_drain(const opts *o);
int cmd_kill_actor(const opts *o);
int cmd_submit(const opts *o);
int cmd_jobs(const opts *o);
int cmd_job(const opts *o);
int cmd_get(const opts *o);
int cmd_logs(const opts *o);
int cmd_cancel(const opts *o);
int cmd_delete(const opts *o);
int cmd_token(const opts *o);
int cmd_kv(const opts *o);
int cmd_usage(const opts *o);
int cmd_quota(const opts *o);
int cmd_infer(const opts *o);
int cmd_tune(const opts *o);
int cmd_slurm(const opts *o);
int cmd_version(const opts *o);
int cmd_help(const opts *o);
int cmd_completion(const opts *o);

#endif
