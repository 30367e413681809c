/* cli/commands.c — the table of `loom` commands: for each command and
 * subcommand its synopsis, help text, example, options and handler.  main()
 * dispatches from it, `loom help`, `loom COMMAND --help` and the bash
 * completion script (`loom _completion`) are printed from it, so the three
 * cannot disagree. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

#define COMMON_HELP                                                                                     \
    "common options:\n"                                                                                 \
    "  --address HOST:PORT   the head (default: $LOOM_ADDRESS, else the cluster in the state dir)\n"    \
    "  --state-dir DIR       default: $LOOM_STATE_DIR or /tmp/loom-UID\n"                                \
    "  --secret-file FILE    the cluster secret (default: STATE_DIR/secret)\n"

#define COMMON_OPTIONS "address= state-dir= secret-file="
#define NODE_OPTS "num-cpus= memory= store-bytes= store-dir= node-dir= data-port= num-gpus= gpu-memory= resources= labels= "
#define HEAD_OPTS "port= db-dir= heartbeat-timeout-ms= http-port= http-bind= http-lib-dir= http-auth? http-workers= http-queue= http-rate= tls-cert= tls-key= oidc-issuer= oidc-audience= oidc-jwks= oidc-user-claim= oidc-groups-claim= oidc-run-group= oidc-admin-group= "
#define SLURM_DIR "  --dir BASE            job dirs: BASE/JOBID (default: $LOOM_SLURM_DIR or ./loom-slurm)\n"

static const cli_cmd table[] = {
    /* ---- clusters ---- */
    {"start", "clusters",
     "loom start --head [--port P] [--bind HOST] [--no-node] [--block] [--http-port P ...] [node options]\n"
     "loom start --address HOST:PORT [--bind HOST] [--advertise HOST] [--block] [node options]",
     "start a head (and a node daemon here), or a node daemon that joins a head",
     "With --head: a head in the background (and a node daemon on this machine unless\n"
     "--no-node); it prints the address other nodes join with.  With --address: a node\n"
     "daemon that joins the head at HOST:PORT.  --block runs it in the foreground.\n"
     "\n"
     "options:\n"
     "  --head                start a head\n"
     "  --address HOST:PORT   the head to join (without --head)\n"
     "  --port P              the head's port (default: any free port, kept across restarts)\n"
     "  --bind HOST           listen on HOST (default: 127.0.0.1)\n"
     "  --advertise HOST      the address others reach this machine at ('auto': the route to the head)\n"
     "  --no-node             no node daemon beside the head\n"
     "  --block               run in the foreground\n"
     "  --http-port P         the head also serves the HTTP gateway (jobs REST, health, metrics)\n"
     "  --http-bind HOST      the gateway's address (default: 127.0.0.1)\n"
     "  --http-lib-dir DIR    libraries the gateway may load\n"
     "  --http-auth=MODE      tokens (the default: bearer tokens from loom token create)\n"
     "                        or none (anyone who can connect is an admin; loopback only)\n"
     "  --http-workers N      gateway threads (16)\n"
     "  --http-queue N        requests waiting at most (256); beyond, 429 with Retry-After\n"
     "  --http-rate R         requests per second per user (1000; 0: no limit); beyond, 429\n"
     "  --tls-cert FILE       the gateway speaks only HTTPS (TLS 1.2+): its certificate chain (PEM),\n"
     "  --tls-key FILE        with its private key (PEM)\n"
     "  --oidc-issuer URL     also take OIDC access tokens (JWTs) from this issuer, with:\n"
     "  --oidc-audience AUD   the audience the tokens must name\n"
     "  --oidc-jwks FILE      the issuer's keys (JWKS; read again when it changes)\n"
     "  --oidc-user-claim C   the claim naming the user (sub)\n"
     "  --oidc-groups-claim C the claim listing the user's projects (groups)\n"
     "  --oidc-run-group G    members may run code (submit jobs)\n"
     "  --oidc-admin-group G  members are admins\n"
     "  --db-dir DIR          the head's tables (default: in the state dir)\n"
     "  --heartbeat-timeout-ms MS  a node silent this long is dead (10000)\n"
     "node options:\n"
     "  --num-cpus N          CPUs to offer (default: all)\n"
     "  --num-gpus N          GPUs to offer (default: the GPUs found)\n"
     "  --gpu-memory B        memory per GPU, such as 16G\n"
     "  --memory B            memory to offer, such as 8G\n"
     "  --store-bytes B       the object store's memory tier\n"
     "  --store-dir DIR       where the object store lives\n"
     "  --node-dir DIR        the daemon's work dir\n"
     "  --data-port P         the port other nodes fetch objects from\n"
     "  --resources NAME=AMOUNT,...   custom resources\n"
     "  --labels KEY=VALUE,...        node labels for placement\n",
     "loom start --head --num-cpus 8 --http-port 8080\n"
     "loom start --address 10.0.0.1:6380 --num-gpus 4",
     "head address= block no-node bind= advertise= secret-file= state-dir= heartbeat-ms= " HEAD_OPTS NODE_OPTS, 0,
     cmd_start, 0},
    {"stop", "clusters", "loom stop [--state-dir DIR]",
     "stop the head and daemons started from this state dir",
     "Stops the node daemons, then the head, that `loom start` recorded in the state dir.\n"
     "A cluster that `loom slurm start` started on another host is not stopped from here.\n"
     "\n"
     "options:\n"
     "  --state-dir DIR       default: $LOOM_STATE_DIR or /tmp/loom-UID\n",
     "loom stop --state-dir /tmp/mycluster", "state-dir=", 0, cmd_stop, 0},
    {"status", "clusters", "loom status [--json] [common options]", "nodes, resources and task counts",
     "options:\n"
     "  --json                print the status as JSON\n", "loom status --json", "json", 1, cmd_status, 0},
    {"actors", "clusters", "loom actors [--json] [common options]", "actors and their states",
     "options:\n"
     "  --json                print the actors as JSON\n", "loom actors", "json", 1, cmd_actors, 0},
    {"drain", "clusters", "loom drain NODE [common options]",
     "place nothing new on a node; it reads 'drained' once idle",
     "NODE is a node id from `loom status`.\n", "loom drain 2", "", 1, cmd_drain, 0},
    {"kill-actor", "clusters", "loom kill-actor ID|NAME [common options]", "kill an actor",
     "ID is an actor's id (from `loom actors`), NAME a named actor's name.\n", "loom kill-actor my-counter", "", 1,
     cmd_kill_actor, 0},
    /* ---- work ---- */
    {"submit", "work", "loom submit GRAPH.json [--wait] [--timeout S] [--name NAME] [common options]",
     "submit a graph written in JSON; prints the job id",
     "options:\n"
     "  --wait                wait until every task has finished (exit 1 if one failed)\n"
     "  --timeout S           with --wait: give up after S seconds\n"
     "  --name NAME           the job's name (default: the document's \"name\")\n",
     "loom submit graph.json --wait --timeout 60", "wait timeout= name=", 1, cmd_submit, 0},
    {"jobs", "work", "loom jobs [--label L] [--offset N] [--limit N] [--json] [common options]",
     "jobs, newest first",
     "options:\n"
     "  --label L             only jobs with this label\n"
     "  --offset N            skip the N newest\n"
     "  --limit N             at most N jobs (100)\n"
     "  --json                print them as JSON\n",
     "loom jobs --limit 10", "label= offset= limit= json", 1, cmd_jobs, 0},
    {"job", "work", "loom job JOB [common options]", "a job's tasks and their states (JSON)", NULL,
     "loom job 3f2a9c0d1e4b5a67", "", 1, cmd_job, 0},
    {"get", "work",
     "loom get JOB TASK[:OUTPUT] [--json] [--timeout S] [common options]\n"
     "loom get REF [--json] [common options]",
     "print a task's result, or an object by its 40-hex ref",
     "OUTPUT picks one of a task's outputs (0, the default, is its return value or exit status).\n"
     "\n"
     "options:\n"
     "  --json                print a msgpack value as JSON\n"
     "  --timeout S           wait at most S seconds for the task (default: as long as it takes)\n",
     "loom get 3f2a9c0d1e4b5a67 sum --json", "json timeout=", 1, cmd_get, 0},
    {"logs", "work", "loom logs JOB TASK [common options]", "print a task's stdout and stderr", NULL,
     "loom logs 3f2a9c0d1e4b5a67 train", "", 1, cmd_logs, 0},
    {"cancel", "work", "loom cancel JOB [TASK] [common options]", "cancel a job's tasks (or one of them)",
     "The job stays (`loom job` shows what was cancelled); `loom delete` forgets it.\n",
     "loom cancel 3f2a9c0d1e4b5a67", "", 1, cmd_cancel, 0},
    {"delete", "work", "loom delete JOB [common options]", "cancel what still runs and free the job's results",
     NULL, "loom delete 3f2a9c0d1e4b5a67", "", 1, cmd_delete, 0},
    {"token", "work", "loom token create --user NAME [--run] [--project P] [--admin]\nloom token revoke TOKEN",
     "bearer tokens for the HTTP gateway", NULL, "loom token create --user alice", NULL, 0,
     cmd_token, 0},
    {"token create", NULL, "loom token create --user NAME [--run] [--project P] [--admin] [common options]",
     "make a bearer token for the HTTP gateway; prints it",
     "A token reads and changes its user's jobs, models and deployments, reads public\n"
     "models and calls deployments.  Running code (POST /v1/jobs: command and library\n"
     "tasks) needs --run: such code runs as the cluster's user, so give --run only to\n"
     "people you would give a login on the cluster's machines.\n"
     "options:\n"
     "  --user NAME           whose token it is (1-63 bytes: letters, digits, . _ @ + -)\n"
     "  --run                 the token may submit jobs (run code on the cluster)\n"
     "  --project P[,Q...]    the projects the user belongs to (at most 16), whose members\n"
     "                        share what is marked as the project's\n"
     "  --admin               the token may do anything (implies --run)\n",
     "loom token create --user alice --run", "user= run project= admin", 1, cmd_token, 0},
    {"token revoke", NULL, "loom token revoke TOKEN [common options]",
     "revoke a token (the gateway stops taking it within 5 s)", NULL, "loom token revoke 6b1f...", "", 1,
     cmd_token, 0},
    {"usage", "work", "loom usage [--since YYYY-MM-DD] [--by user|project] [--json] [common options]",
     "what each user (or project) used: tasks, CPU-, GPU- and memory-hours, requests, bytes stored",
     "CPU-hours are the CPUs a task or actor held times the time it held them, and so on;\n"
     "days are UTC days.  The same report as GET /v1/usage.\n"
     "options:\n"
     "  --since DATE          from the start of this UTC day (default: today)\n"
     "  --by user|project     one line per user (default) or per project\n"
     "  --json                the report as JSON\n",
     "loom usage --since 2026-12-01 --by project", "since= by= json", 1, cmd_usage, 0},
    {"quota", "work", "loom quota set --user U | --project P [limits]\nloom quota show --user U | --project P",
     "limits on what a user or project runs at once and uses per day", NULL,
     "loom quota set --user alice --cpus 8 --cpu-hours-per-day 100", NULL, 0, cmd_quota, 0},
    {"quota set", NULL, "loom quota set --user U | --project P [limits] [common options]",
     "set (or, with no limits, remove) a user's or project's quota",
     "Running work over a limit waits in the queue; a new REST job of a user whose hours\n"
     "for the day are used up is refused (429).\n"
     "limits:\n"
     "  --tasks N             tasks and actors running at once\n"
     "  --cpus C              CPUs held at once\n"
     "  --gpus G              GPUs held at once\n"
     "  --cpu-hours-per-day H CPU-hours per UTC day\n"
     "  --gpu-hours-per-day H GPU-hours per UTC day\n"
     "  --replicas N          deployment replicas (counted at their max_replicas; default 16)\n"
     "  --stored-bytes B      bytes of model artifacts in the registry (default 1 GiB)\n"
     "  --kept-tasks N        tasks the head keeps (finished ones until their job is\n"
     "                        deleted; at most and by default 50,000)\n",
     "loom quota set --project climate --gpus 4 --gpu-hours-per-day 48",
     "user= project= tasks= cpus= gpus= cpu-hours-per-day= gpu-hours-per-day= replicas= stored-bytes= kept-tasks=", 1, cmd_quota, 0},
    {"quota show", NULL, "loom quota show --user U | --project P [common options]", "print a quota", NULL,
     "loom quota show --user alice", "user= project=", 1, cmd_quota, 0},
    {"kv", "work", "loom kv put KEY VALUE\nloom kv get KEY [--timeout S]\nloom kv del KEY",
     "the cluster's key-value table (kept across head restarts)", NULL, "loom kv put lr 0.01", NULL, 0, cmd_kv,
     0},
    {"kv put", NULL, "loom kv put KEY VALUE [common options]", "set KEY to VALUE", NULL, "loom kv put lr 0.01",
     "", 1, cmd_kv, 0},
    {"kv get", NULL, "loom kv get KEY [--timeout S] [common options]", "print KEY's value",
     "options:\n"
     "  --timeout S           wait up to S seconds for KEY to be set\n",
     "loom kv get lr --timeout 10", "timeout=", 1, cmd_kv, 0},
    {"kv del", NULL, "loom kv del KEY [common options]", "delete KEY", NULL, "loom kv del lr", "", 1, cmd_kv, 0},
    /* ---- batch inference ---- */
    {"infer", "batch inference (shard/README.md)",
     "loom infer --model NAME[:VERSION] --input DATASET --output DIR [options] [common options]",
     "run a registered model over a dataset, one task per shard",
     "DATASET is a .npy, .csv or .jsonl file or a directory of them.  Results are cached\n"
     "in the cluster: running the same command again resumes a run.\n"
     "\n"
     "options:\n"
     "  --model NAME[:VERSION]   a model of the registry\n"
     "  --input DATASET       the rows to run it on\n"
     "  --output DIR          where the results go\n"
     "  --shard-size N        rows per task (1000)\n"
     "  --max-in-flight K     tasks running at once (8)\n"
     "  --params JSON         parameters for the model\n"
     "  --num-cpus C          CPUs per task\n"
     "  --num-gpus G          GPUs per task\n"
     "  --straggler-factor F  start a second copy of a shard F times slower than the median (4)\n"
     "  --no-cache            do not use or keep cached shard results\n"
     "  --quiet               no progress bar\n",
     "loom infer --model digits:1 --input rows.npy --shard-size 2000 --output out/",
     "model= input= output= shard-size= max-in-flight= params= num-cpus= num-gpus= straggler-factor= no-cache quiet",
     1, cmd_infer, 0},
    /* ---- Slurm ---- */
    {"slurm", "Slurm (README: Running on an HPC cluster)",
     "loom slurm start|submit|status|cancel ...", "loom clusters inside Slurm allocations", NULL,
     "loom slurm submit --nodes 4 --time 1:00:00 -- python train.py", NULL, 0, cmd_slurm, CLI_RAW},
    {"slurm start", NULL, "loom slurm start [--http-port P] [--job-dir DIR] [--wait S] [--block] [-- DRIVER ARGS...]",
     "inside an allocation: a head and a daemon per node, then the driver",
     "The head runs on the first node, a node daemon on each (srun); CPUs and GPUs come\n"
     "from Slurm.  DRIVER runs with LOOM_ADDRESS set and the cluster stops after it; with\n"
     "no driver the cluster keeps running (`loom stop` or the allocation's end stops it).\n"
     "\n"
     "options:\n"
     "  --job-dir DIR         the cluster's state dir (default: BASE/$SLURM_JOB_ID)\n"
     SLURM_DIR
     "  --port P              the head's port (default: any free port)\n"
     "  --http-port P         the head also serves the HTTP gateway\n"
     "  --http-bind HOST      the gateway's address (default: 0.0.0.0; tokens are required)\n"
     "  --tls-cert FILE, --tls-key FILE  the gateway speaks HTTPS (do this off loopback)\n"
     "  --wait S              wait up to S seconds for the daemons to join (120)\n"
     "  --block               without a driver: stay until the cluster is stopped\n"
     "  --num-cpus N, --num-gpus N, --store-bytes B, --memory B, --resources R, --labels L\n"
     "                        node options (default: what Slurm gave)\n"
     "  --quiet               fewer messages\n",
     "loom slurm start -- python train.py",
     "job-dir= dir= http-port= http-bind= tls-cert= tls-key= port= wait= block num-cpus= num-gpus= store-bytes= "
     "memory= resources= labels= quiet",
     0, cmd_slurm, CLI_RAW},
    {"slurm submit", NULL,
     "loom slurm submit --nodes N --time T [options] -- DRIVER ARGS...",
     "write JOBDIR/job.sbatch (kept) and submit it; prints the job id",
     "options:\n"
     "  --nodes N             nodes to allocate\n"
     "  --time T              the time limit, as sbatch takes it (MINUTES, HH:MM:SS, D-HH)\n"
     "  --gpus-per-node G, --cpus-per-node C, --mem M, --partition P, --account A\n"
     "                        passed to sbatch\n"
     "  --name NAME           the job's name (loom)\n"
     "  --exclusive           whole nodes\n"
     "  --http-port P         the head also serves the HTTP gateway\n"
     "  --num-cpus N, --num-gpus N, --store-bytes B\n"
     "                        node options for `loom slurm start`\n"
     "  --wait S              how long the daemons have to join\n"
     "  --dry-run             write the script, do not submit it\n"
     SLURM_DIR,
     "loom slurm submit --nodes 4 --time 1:00:00 --gpus-per-node 2 -- python train.py",
     "nodes= gpus-per-node= cpus-per-node= mem= time= partition= account= name= dir= exclusive http-port= "
     "num-cpus= num-gpus= store-bytes= wait= dry-run",
     0, cmd_slurm, CLI_RAW},
    {"slurm status", NULL, "loom slurm status [JOB] [--json] [--dir BASE]",
     "jobs with their state, head address and driver exit code",
     "options:\n"
     "  --json                print them as JSON\n" SLURM_DIR,
     "loom slurm status 12345", "dir= json", 0, cmd_slurm, CLI_RAW},
    {"slurm cancel", NULL, "loom slurm cancel JOB [--wait S] [--dir BASE]",
     "scancel and wait until the job has left the queue",
     "options:\n"
     "  --wait S              wait at most S seconds (60)\n" SLURM_DIR,
     "loom slurm cancel 12345", "dir= wait=", 0, cmd_slurm, CLI_RAW},
    /* ---- sweeps ---- */
    {"tune", "sweeps (tune/README.md)", "loom tune run|status|stop|resume ...",
     "hyperparameter sweeps", NULL, "loom tune run sweep.json --output results/", NULL, 0, cmd_tune, 0},
    {"tune run", NULL, "loom tune run SWEEP.json [--output DIR] [--quiet] [--gateway HOST:PORT] [common options]",
     "run a sweep with a live view; prints its id, the best trial and where results are",
     "options:\n"
     "  --output DIR          where the results go\n"
     "  --quiet               no live view\n"
     "  --gateway HOST:PORT   the HTTP gateway its \"register\" uses (default: the cluster's)\n",
     "loom tune run sweep.json --output results/", "output= quiet gateway=", 1, cmd_tune, 0},
    {"tune status", NULL, "loom tune status [SWEEP] [--json] [common options]",
     "the sweeps stored in the cluster, or one with its trials",
     "options:\n"
     "  --json                print it as JSON\n",
     "loom tune status", "json", 1, cmd_tune, 0},
    {"tune stop", NULL, "loom tune stop SWEEP [common options]", "stop a sweep's trials and end it", NULL,
     "loom tune stop 9c1d2e3f", "", 1, cmd_tune, 0},
    {"tune resume", NULL, "loom tune resume SWEEP [--quiet] [common options]",
     "drive a sweep again after its driver or head stopped",
     "options:\n"
     "  --quiet               no live view\n",
     "loom tune resume 9c1d2e3f", "quiet output=", 1, cmd_tune, 0},
    /* ---- other ---- */
    {"help", "other", "loom help [COMMAND [SUBCOMMAND]]", "the commands, or one command's usage and options",
     "`loom COMMAND --help` (or -h) prints the same.\n", "loom help slurm submit", "", 0, cmd_help, 0},
    {"version", "other", "loom version", "print loom's version", NULL, "loom version", "", 0, cmd_version, 0},
    /* ---- processes loom starts itself ---- */
    {"_head", NULL, "loom _head [--state-dir DIR] [--port P] [--ready-fd FD] ...",
     "the head process (started by `loom start --head`)", NULL, "loom start --head --block", NULL, 0, cmd_head,
     CLI_HIDDEN},
    {"_node", NULL, "loom _node --address HOST:PORT|--address-file FILE [node options] ...",
     "a node daemon (started by `loom start`)", NULL, "loom start --address 10.0.0.1:6380 --block", NULL, 0,
     cmd_node, CLI_HIDDEN},
    {"executor", NULL, "loom executor --ipc ENDPOINT --store DIR --node-dir DIR --secret-fd FD ...",
     "a task executor (started by a node daemon)", NULL, "(started by a node daemon)", NULL, 0, cmd_executor,
     CLI_HIDDEN},
    {"_completion", NULL, "loom _completion", "print the bash completion script", NULL,
     "loom _completion > ~/.local/share/bash-completion/completions/loom", "", 0, cmd_completion, CLI_HIDDEN},
};

#define NCMDS (sizeof(table) / sizeof(table[0]))

const cli_cmd *cli_lookup(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (!strcmp(table[i].name, name)) return &table[i];
    return NULL;
}

const cli_cmd *cli_find(int argc, char **argv, int *used)
{
    if (argc < 1) return NULL;
    if (argc >= 2 && argv[1][0] != '-' && strlen(argv[0]) + strlen(argv[1]) < 64) {
        char both[160];
        snprintf(both, sizeof(both), "%s %s", argv[0], argv[1]);
        const cli_cmd *c = cli_lookup(both);
        if (c) {
            *used = 2;
            return c;
        }
    }
    *used = 1;
    return cli_lookup(argv[0]);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int is_group(const cli_cmd *c)
{
    return !strchr(c->name, ' ') && !c->options && !(c->flags & CLI_HIDDEN);
}

/* The subcommands of group c, one a line. */
static void print_subcommands(const cli_cmd *c, FILE *f)
{
    size_t n = strlen(c->name);
    fprintf(f, "commands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        if (!strncmp(table[i].name, c->name, n) && table[i].name[n] == ' ')
            fprintf(f, "  %-16s %s\n", table[i].name + n + 1, table[i].summary);
    fprintf(f, "run 'loom %s COMMAND --help' for its options\n", c->name);
}

static void print_synopsis(const cli_cmd *c, FILE *f)
{
    const char *s = c->synopsis;
    for (int first = 1; *s; first = 0) {
        size_t n = strcspn(s, "\n");
        fprintf(f, "%s%.*s\n", first ? "usage: " : "       ", (int)n, s);
        s += n + (s[n] == '\n');
    }
}

void cli_print_help(const cli_cmd *c, FILE *f)
{
    print_synopsis(c, f);
    fprintf(f, "\n%s\n", c->summary);
    if (c->details) fprintf(f, "\n%s", c->details);
    if (is_group(c)) {
        fputc('\n', f);
        print_subcommands(c, f);
    }
    if (c->common) fprintf(f, "\n%s", COMMON_HELP);
    fprintf(f, "\nexample:\n");
    for (const char *s = c->example; *s;) {
        size_t n = strcspn(s, "\n");
        fprintf(f, "  %.*s\n", (int)n, s);
        s += n + (s[n] == '\n');
    }
}

void cli_print_usage(FILE *f)
{
    fprintf(f, "usage: loom COMMAND [options]\n");
    const char *section = NULL;
    for (size_t i = 0; i < NCMDS; i++) {
        const cli_cmd *c = &table[i];
        if (c->flags & CLI_HIDDEN) continue;
        if (c->section && (!section || strcmp(section, c->section))) {
            section = c->section;
            fprintf(f, "\n%s:\n", section);
        }
        fprintf(f, "  %-16s %s\n", c->name, c->summary);
    }
    fprintf(f, "\n" COMMON_HELP "\n"
               "run 'loom COMMAND --help' (or 'loom help COMMAND') for a command's options and an example\n");
}

int cli_usage_error(const cli_cmd *c)
{
    print_synopsis(c, stderr);
    fprintf(stderr, "see 'loom %s --help'\n", c->name);
    return 2;
}

int cmd_help(const opts *o)
{
    if (o->npos == 0) {
        cli_print_usage(stdout);
        return 0;
    }
    int used = 0;
    const cli_cmd *c = cli_find(o->npos, (char **)o->pos, &used);
    if (!c || used < o->npos) {
        fprintf(stderr, "loom: help: unknown command '%s%s%s'; see 'loom help'\n", o->pos[0],
                o->npos > 1 ? " " : "", o->npos > 1 ? o->pos[1] : "");
        return 2;
    }
    cli_print_help(c, stdout);
    return 0;
}

/* Is key a word of spec?  -1: no; 0: a flag; 1: it takes a value. */
static int spec_kind(const char *spec, const char *key, size_t klen)
{
    for (const char *p = spec; p && *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " =?");
        if (n && n == klen && !strncmp(p, key, klen)) return p[n] == '=' ? 1 : p[n] == '?' ? 2 : 0;
        p += n;
        while (*p && *p != ' ') p++;
    }
    return -1;
}

int cli_option_kind(const cli_cmd *c, const char *key, size_t klen)
{
    int k = spec_kind(c->options, key, klen);
    if (k < 0 && c->common) k = spec_kind(COMMON_OPTIONS, key, klen);
    if (k >= 0 || !is_group(c)) return k;
    size_t n = strlen(c->name); /* a group takes its subcommands' options */
    for (size_t i = 0; i < NCMDS && k < 0; i++)
        if (!strncmp(table[i].name, c->name, n) && table[i].name[n] == ' ') k = cli_option_kind(&table[i], key, klen);
    return k;
}

/* ---- bash completion ------------------------------------------------------ */

/* The options of c as completion words: "--json --timeout ..." */
static void print_option_words(const cli_cmd *c, FILE *f)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s%s", c->options ? c->options : "", c->common ? " " COMMON_OPTIONS : "");
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
        w[strcspn(w, "=?")] = 0;
        fprintf(f, "--%s ", w);
    }
    fprintf(f, "--help");
}

void cli_print_completion(FILE *f)
{
    fprintf(f, "# bash completion for loom: commands, subcommands and options.\n"
               "# Made by `loom _completion` from loom's table of commands (cli/commands.c).\n"
               "_loom()\n{\n"
               "    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} key words i\n"
               "    COMPREPLY=()\n"
               "    for ((i = 1; i < COMP_CWORD; i++)); do [ \"${COMP_WORDS[i]}\" = -- ] && return; done\n"
               "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
               "        COMPREPLY=($(compgen -W \"");
    for (size_t i = 0; i < NCMDS; i++)
        if (!(table[i].flags & CLI_HIDDEN) && !strchr(table[i].name, ' ')) fprintf(f, "%s ", table[i].name);
    fprintf(f, "--help --version\" -- \"$cur\"))\n        return\n    fi\n"
               "    [ \"$cmd\" = help ] && cmd=${COMP_WORDS[2]} && [ \"$COMP_CWORD\" -eq 2 ] && {\n"
               "        COMPREPLY=($(compgen -W \"");
    for (size_t i = 0; i < NCMDS; i++)
        if (!(table[i].flags & CLI_HIDDEN) && !strchr(table[i].name, ' ')) fprintf(f, "%s ", table[i].name);
    fprintf(f, "\" -- \"$cur\"))\n        return\n    }\n"
               "    key=$cmd\n"
               "    case $cmd in\n");
    for (size_t i = 0; i < NCMDS; i++) {
        if (!is_group(&table[i])) continue;
        size_t n = strlen(table[i].name);
        fprintf(f, "    %s)\n        words=\"", table[i].name);
        for (size_t j = 0; j < NCMDS; j++)
            if (!strncmp(table[j].name, table[i].name, n) && table[j].name[n] == ' ')
                fprintf(f, "%s ", table[j].name + n + 1);
        fprintf(f, "\"\n"
                   "        if [ \"$COMP_CWORD\" -eq 2 ] || [ \"${COMP_WORDS[1]}\" = help ]; then\n"
                   "            COMPREPLY=($(compgen -W \"$words --help\" -- \"$cur\"))\n"
                   "            return\n"
                   "        fi\n"
                   "        key=\"$cmd ${COMP_WORDS[2]}\" ;;\n");
    }
    fprintf(f, "    esac\n"
               "    [ \"${COMP_WORDS[1]}\" = help ] && return\n"
               "    [[ $cur == -* ]] || return\n"
               "    case $key in\n");
    for (size_t i = 0; i < NCMDS; i++) {
        if (table[i].flags & CLI_HIDDEN || is_group(&table[i])) continue;
        fprintf(f, "    \"%s\") words=\"", table[i].name);
        print_option_words(&table[i], f);
        fprintf(f, "\" ;;\n");
    }
    fprintf(f, "    *) words=--help ;;\n"
               "    esac\n"
               "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
               "}\n"
               "complete -o default -F _loom loom\n");
}

int cmd_completion(const opts *o)
{
    (void)o;
    cli_print_completion(stdout);
    return 0;
}
