# tests/slurm_env.sh — a real, private, throwaway Slurm cluster for a system test.
#
# Source it after tests/lib.sh (it uses T, on_cleanup and wait_until):
#     . "$(dirname "$0")/lib.sh" "$@"
#     . "$(dirname "$0")/slurm_env.sh"
#     rc=0; slurm_env_up 1 8 || rc=$?          # [NODES] [CPUS_PER_NODE] [GPUS_PER_NODE]
#     [ "$rc" -eq 2 ] && { skip "slurm: $SLURM_ENV_WHY"; finish; }
#     [ "$rc" -eq 0 ] || { bad "slurm comes up"; finish; }
#     sbatch --wait --wrap 'hostname'   # the caller's sbatch/srun/squeue/... use it
#     slurm_env_down                    # also registered with on_cleanup
#
# What it owns: everything under $T/slurm — its own munge key, munged (socket
# $T/slurm/munge.sock), slurm.conf (exported as SLURM_CONF), gres.conf, the
# controller's state, the slurmd spool dirs, pid files and logs ($T/slurm/log)
# — and the processes it starts: munged, slurmctld, slurmd (one per node) and
# everything Slurm runs for the jobs of this cluster (slurmstepd, job
# scripts, steps and what they leave behind).  The cluster name is unique per
# run (SLURM_ENV_CLUSTER); every daemon runs with SLURM_ENV_TAG=<cluster> in its
# environment and Slurm puts SLURM_CLUSTER_NAME=<cluster> in every job's, so
# slurm_env_down finds and kills all of them (even setsid'd job children) by
# reading /proc/PID/environ, and nothing of another run.  Ports are picked
# free at run time (and retried if taken meanwhile), so runs can overlap.
# Nothing under /etc is touched.  Needs root (SlurmUser=root, munged as root).
#
# slurm_env_up [NODES [CPUS [GPUS]]] — NODES (default 1) slurmds on this host:
#   one node is named `hostname -s` (NodeAddr 127.0.0.1); several are
#   <host>-1..N, each slurmd on its own 127.0.0.K and port (Port=) with its
#   own spool dir.  CPUS CPUs each (default 8; declared, more than the real
#   cores is fine).  GPUS fake GPUs each (default 0): gres gpu with File= on
#   character devices $T/slurm/dev/nvidiaK (copies of /dev/null), so jobs get
#   CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS...  Returns 0 when every node is idle
#   (SLURM_ENV_UP_MS says how long it took), 1 on failure (the logs' tails
#   are printed; slurm_env_down still cleans up), 2 when Slurm/munge are
#   missing and cannot be installed, or we are not root, or (netns) there are
#   no network namespaces: SLURM_ENV_WHY says why; the test should skip.
# slurm_env_up_netns [NODES [CPUS [GPUS]]] — the same, but node1..nodeN
#   (default 2) each in a network namespace of its own (slm<PID>n1..N), at
#   10.X.Y.1..N on a bridge in the first; those addresses exist only inside
#   the namespaces.  slurmctld and node1's slurmd run in the first namespace,
#   and so must the test's client commands and drivers: prefix them with
#   "${SLURM_ENV_EXEC[@]}" (works with capture/timeout; empty in the plain
#   mode) or call `slurm_env_run CMD...`.
# slurm_env_down — cancel every job and wait until the queue is empty, stop
#   slurmd, slurmctld and munged (TERM, then KILL after 15 s), kill whatever of
#   this cluster is left (job processes that escaped their job, the caller's
#   srun/salloc/sbatch still talking to it), remove the namespaces.  Idempotent;
#   registered with on_cleanup by slurm_env_up.  Returns 1 if a process of the
#   cluster survived SIGKILL.  SLURM_ENV_DOWN_MS says how long it took.
# slurm_env_wait_job JOBID [SECS] — wait (0.1 s polls) until the job ended;
#   prints "STATE EXIT" (e.g. "COMPLETED 0:0", "FAILED 3:0"), 0 iff COMPLETED.
#   `sbatch --wait` works too but polls only every ~10 s.
# slurm_env_job_state JOBID, slurm_env_pids (live processes of the cluster),
#   slurm_env_logs [N] (tails of the daemons' logs, for a failing test).
#
# Exports: SLURM_CONF, SLURM_ENV_CLUSTER, SLURM_ENV_NODES (node names, space-
# separated), SLURM_ENV_PARTITION (debug), SLURM_ENV_DIR ($T/slurm),
# SLURM_ENV_NETNS (first namespace; empty in the plain mode).  Every other
# SLURM_*/SBATCH_*/SALLOC_*/SRUN_* variable of the caller is unset.
# Config: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no
# cgroups for jobs, select/cons_tres + CR_CPU (jobs share a node by CPUs),
# KillWait=5, ReturnToService=2, MinJobAge=300, partition "debug" (default,
# MaxTime=INFINITE).  Knobs: SLURM_ENV_PROCTRACK (e.g. proctrack/pgid),
# SLURM_ENV_DEBUG (daemons' log level), SLURM_ENV_UP_TIMEOUT (default 30 s).
# proctrack/linuxproc kills everything below the job's slurmstepd on scancel,
# setsid'd children included; a process that a job leaves behind (setsid,
# its parent exited) outlives the job, and only slurm_env_down kills it.
# proctrack/pgid loses setsid'd children even on scancel.

SLURM_ENV_DIR=$T/slurm
SLURM_ENV_PARTITION=debug
SLURM_ENV_CLUSTER=
SLURM_ENV_NODES=
SLURM_ENV_NETNS=
SLURM_ENV_WHY=
SLURM_ENV_STATE=down          # down | up (something may be running)
SLURM_ENV_EXEC=()             # prefix for client commands (nsenter --net=... in netns mode)
SLURM_ENV_NSES=()
SLURM_ENV_NODE_LIST=()
_SLURM_ENV_NODE_PORTS=()
_SLURM_ENV_INSTALL_TRIED=
_SLURM_ENV_CLEANUP_SET=
export SLURM_ENV_PARTITION

_slurm_env_ms() { date +%s%3N; }
_slurm_env_log() { echo "# slurm_env: $*" >&2; }

# find a program also when /usr/sbin is not in PATH
_slurm_env_which()
{
    command -v "$1" 2>/dev/null && return 0
    local d
    for d in /usr/sbin /sbin /usr/local/sbin /usr/bin /usr/local/bin; do
        [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}

_slurm_env_missing()
{
    local c m=()
    for c in munged munge unmunge slurmctld slurmd slurmstepd sbatch srun squeue scancel sinfo scontrol; do
        _slurm_env_which "$c" >/dev/null || m+=("$c")
    done
    echo "${m[*]}"
}

_slurm_env_check_tools()
{
    if [ "$(id -u)" -ne 0 ]; then
        SLURM_ENV_WHY="needs root (SlurmUser=root, a private munged)"
        return 2
    fi
    local missing
    missing=$(_slurm_env_missing)
    if [ -n "$missing" ] && [ -z "$_SLURM_ENV_INSTALL_TRIED" ]; then
        _SLURM_ENV_INSTALL_TRIED=1
        _slurm_env_log "missing: $missing; trying apt-get install slurm-wlm munge"
        if ! DEBIAN_FRONTEND=noninteractive timeout -k 10 600 apt-get install -y -qq slurm-wlm munge \
            >"$T/slurm_env.apt.log" 2>&1; then
            # stale package lists: once more after an update
            timeout -k 10 300 apt-get update -qq >>"$T/slurm_env.apt.log" 2>&1 &&
                DEBIAN_FRONTEND=noninteractive timeout -k 10 600 apt-get install -y -qq slurm-wlm munge \
                    >>"$T/slurm_env.apt.log" 2>&1 || tail -5 "$T/slurm_env.apt.log" >&2
        fi
        missing=$(_slurm_env_missing)
    fi
    if [ -n "$missing" ]; then
        SLURM_ENV_WHY="not installed: $missing (apt-get install slurm-wlm munge)"
        return 2
    fi
    local p
    for p in munged munge unmunge slurmctld slurmd; do
        printf -v "_SLURM_ENV_BIN_$p" '%s' "$(_slurm_env_which "$p")"
    done
    return 0
}

# A TCP port nobody listens on (in the current network namespace), not in
# the kernel's ephemeral range, and not one of the arguments.
_slurm_env_free_port()
{
    local i p used
    used=" $* "
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        case "$used" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# client commands, bounded, in the cluster's namespace when there is one
_slurm_env_cli() { timeout -k 2 "${SLURM_ENV_CLI_TIMEOUT:-20}" "${SLURM_ENV_EXEC[@]}" "$@"; }
slurm_env_run() { "${SLURM_ENV_EXEC[@]}" "$@"; }

# pids of the live (not zombie) processes of this cluster: its daemons and
# everything they run, found by the markers in /proc/PID/environ
slurm_env_pids()
{
    [ -n "$SLURM_ENV_CLUSTER" ] || return 0
    local f p st
    for f in $(grep -lzsxF -e "SLURM_ENV_TAG=$SLURM_ENV_CLUSTER" \
        -e "SLURM_CLUSTER_NAME=$SLURM_ENV_CLUSTER" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}
        p=${p%/environ}
        [ "$p" != "$$" ] && [ "$p" != "${BASHPID:-$$}" ] || continue
        st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
        [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
    done
    return 0
}

_slurm_env_no_pids() { [ -z "$(slurm_env_pids)" ]; }

# pids of Slurm client commands (srun, salloc, sbatch --wait...) that talk to
# the cluster whose slurm.conf is $1: useless once it is gone, and an srun
# whose controller vanished waits for minutes
_slurm_env_client_pids()
{
    local f p
    [ -n "$1" ] || return 0
    for f in $(grep -lzsxF -e "SLURM_CONF=$1" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}
        p=${p%/environ}
        case "$(cat "/proc/$p/comm" 2>/dev/null)" in
        srun | salloc | sbatch | sattach | squeue | scancel | scontrol | sinfo | sstat) echo "$p" ;;
        esac
    done
    return 0
}

# Clusters of earlier runs whose test died without its EXIT trap (SIGKILL,
# SIGPIPE): cluster loom<PID>r<N> with PID gone.  Kill their daemons and jobs.
_slurm_env_reap_stale()
{
    local f tag owner p
    for tag in $(grep -ahozs 'SLURM_ENV_TAG=loom[0-9]*r[0-9]*' /proc/[0-9]*/environ 2>/dev/null |
        tr '\0' '\n' | sed 's/^SLURM_ENV_TAG=//' | sort -u); do
        owner=${tag#loom}
        owner=${owner%%r*}
        [ -n "$owner" ] && ! _slurm_env_alive "$owner" || continue
        _slurm_env_log "killing the processes of a stale cluster $tag (its test, pid $owner, is gone)"
        local conf='' pids=()
        for f in $(grep -lzsxF -e "SLURM_ENV_TAG=$tag" -e "SLURM_CLUSTER_NAME=$tag" /proc/[0-9]*/environ 2>/dev/null); do
            p=${f#/proc/}
            p=${p%/environ}
            pids+=("$p")
            [ -n "$conf" ] || conf=$(tr '\0' '\n' <"$f" 2>/dev/null | sed -n 's/^SLURM_CONF=//p' | head -1)
        done
        for p in "${pids[@]}" $(_slurm_env_client_pids "$conf"); do kill -KILL "$p" 2>/dev/null || true; done
    done
    return 0
}

_slurm_env_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

_slurm_env_pidfile_pid()
{
    local p
    p=$(head -c 32 "$1" 2>/dev/null | tr -dc 0-9) || true
    echo "$p"
}

# stop the processes whose pid files are given: TERM, wait up to 15 s, KILL
_slurm_env_stop_pidfiles()
{
    local f p pids=() i
    for f in "$@"; do
        p=$(_slurm_env_pidfile_pid "$f")
        _slurm_env_alive "$p" || continue
        # only if it is still ours (pid files outlive processes)
        grep -qzsxF "SLURM_ENV_TAG=$SLURM_ENV_CLUSTER" "/proc/$p/environ" || continue
        kill -TERM "$p" 2>/dev/null && pids+=("$p")
    done
    for ((i = 0; i < 150; i++)); do
        local left=0
        for p in "${pids[@]}"; do _slurm_env_alive "$p" && left=1; done
        [ "$left" -eq 0 ] && return 0
        sleep 0.1
    done
    for p in "${pids[@]}"; do _slurm_env_alive "$p" && kill -KILL "$p" 2>/dev/null; done
    return 0
}

slurm_env_logs()
{
    local f n=${1:-25}
    for f in "$SLURM_ENV_DIR"/log/*; do
        [ -f "$f" ] && [ -s "$f" ] || continue
        echo "---- $f (last $n lines)"
        tail -n "$n" "$f"
    done
}

# ---- the network namespaces (slurm_env_up_netns) -------------------------------------
_slurm_env_ip() { "$(_slurm_env_which ip)" "$@"; }

# the command prefix that runs a program in namespace $1: nsenter --net
# changes only the network namespace; `ip netns exec` would also remount /sys,
# hiding /sys/fs/cgroup, and slurmd 22.05 will not start without its cgroup
# plugin ("No filesystem mounted on /sys/fs/cgroup")
_slurm_env_in_ns()
{
    local nsenter
    if nsenter=$(_slurm_env_which nsenter) && [ -e "/run/netns/$1" ]; then
        echo "$nsenter --net=/run/netns/$1"
    else
        echo "$(_slurm_env_which ip) netns exec $1"
    fi
}

_slurm_env_remove_stale_namespaces()
{
    local ns owner p
    for ns in $(_slurm_env_ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^slm[0-9]+n[0-9]+$' || true); do
        owner=${ns#slm}
        owner=${owner%%n*}
        _slurm_env_alive "$owner" && continue
        for p in $(_slurm_env_ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        _slurm_env_ip netns del "$ns" 2>/dev/null && _slurm_env_log "removed a stale namespace $ns"
    done
    return 0
}

_slurm_env_remove_namespaces()
{
    local ns p
    for ns in "${SLURM_ENV_NSES[@]}"; do
        for p in $(_slurm_env_ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for ns in "${SLURM_ENV_NSES[@]}"; do _slurm_env_ip netns del "$ns" 2>/dev/null || true; done
    SLURM_ENV_NSES=()
    return 0
}

# N namespaces slm<PID>n1..N; n1 holds the bridge (address .1), nK has eth0
# (address .K) on a veth whose other end is on the bridge.  Sets _SLURM_ENV_NET.
_slurm_env_make_namespaces()
{
    local n=$1 k ns ns1=slm$$n1
    _slurm_env_which ip >/dev/null || { SLURM_ENV_WHY="no 'ip' command (iproute2)"; return 2; }
    _slurm_env_remove_stale_namespaces
    _SLURM_ENV_NET=10.$(($$ % 200 + 20)).$((RANDOM % 250 + 1))
    SLURM_ENV_NSES+=("$ns1")
    if ! _slurm_env_ip netns add "$ns1" 2>"$SLURM_ENV_DIR/netns.err" ||
        ! _slurm_env_ip -n "$ns1" link add br0 type bridge 2>"$SLURM_ENV_DIR/netns.err"; then
        SLURM_ENV_WHY="cannot create network namespaces here ($(head -1 "$SLURM_ENV_DIR/netns.err"))"
        return 2
    fi
    _slurm_env_ip -n "$ns1" link set lo up &&
        _slurm_env_ip -n "$ns1" link set br0 up &&
        _slurm_env_ip -n "$ns1" addr add "$_SLURM_ENV_NET.1/24" dev br0 || return 1
    for ((k = 2; k <= n; k++)); do
        ns=slm$$n$k
        SLURM_ENV_NSES+=("$ns")
        _slurm_env_ip netns add "$ns" &&
            _slurm_env_ip -n "$ns1" link add "v$k" type veth peer name eth0 netns "$ns" &&
            _slurm_env_ip -n "$ns1" link set "v$k" master br0 &&
            _slurm_env_ip -n "$ns1" link set "v$k" up &&
            _slurm_env_ip -n "$ns" link set lo up &&
            _slurm_env_ip -n "$ns" link set eth0 up &&
            _slurm_env_ip -n "$ns" addr add "$_SLURM_ENV_NET.$k/24" dev eth0 || return 1
    done
    return 0
}

# ---- configuration ---------------------------------------------------------------
_slurm_env_node_lines()
{
    local lines=$_SLURM_ENV_NODE_LINES k
    for ((k = 1; k <= ${#_SLURM_ENV_NODE_PORTS[@]}; k++)); do
        lines=${lines//@PORT$k@/${_SLURM_ENV_NODE_PORTS[$((k - 1))]}}
    done
    printf '%s\n' "$lines"
}

# _slurm_env_write_conf NODES CPUS GPUS CTLD_HOST CTLD_ADDR; the node lines come
# from _SLURM_ENV_NODE_LINES
_slurm_env_write_conf()
{
    local n=$1 cpus=$2 gpus=$3 ctl_host=$4 ctl_addr=$5 S=$SLURM_ENV_DIR
    local gres_line=
    [ "$gpus" -gt 0 ] && gres_line="GresTypes=gpu"
    cat >"$S/slurm.conf" <<EOF
# written by tests/slurm_env.sh for one test run; everything lives in $S
ClusterName=$SLURM_ENV_CLUSTER
SlurmctldHost=$ctl_host($ctl_addr)
SlurmctldPort=$_SLURM_ENV_CTLD_PORT
SlurmdPort=$_SLURM_ENV_SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$S/munge.sock
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd-%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd-%n.log
SlurmctldDebug=${SLURM_ENV_DEBUG:-info}
SlurmdDebug=${SLURM_ENV_DEBUG:-info}
PlugStackConfig=$S/plugstack.conf
ProctrackType=${SLURM_ENV_PROCTRACK:-proctrack/linuxproc}
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
LaunchType=launch/slurm
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=300
SlurmdTimeout=300
MessageTimeout=30
BatchStartTimeout=60
InactiveLimit=0
KillWait=5
UnkillableStepTimeout=60
MinJobAge=300
MailProg=/bin/true
$gres_line
$(_slurm_env_node_lines)
PartitionName=$SLURM_ENV_PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$S/plugstack.conf"
    : >"$S/gres.conf"
    # slurmd 22.05 always loads a cgroup plugin, even with proctrack/linuxproc
    # and task/none (nothing of the jobs goes into cgroups).  On a cgroup v2
    # host without systemd it would ask systemd over D-Bus for a scope; make it
    # not.  (Verified only on a cgroup v1 host, where this is ignored.)
    printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' >"$S/cgroup.conf"
    if [ "$gpus" -gt 0 ]; then
        # Slurm 22.05 drops a gpu gres without File= ("Removing file-less
        # GPU"), so each GPU is a character device here, a copy of /dev/null
        # (1,3): nothing opens it (TaskPlugin=task/none, no device cgroup), it
        # only numbers the GPUs (a plain file works too, with an error logged)
        local i files=$S/dev/nvidia0
        mkdir -p "$S/dev"
        for ((i = 0; i < gpus; i++)); do
            mknod -m 0666 "$S/dev/nvidia$i" c 1 3 2>/dev/null || : >"$S/dev/nvidia$i"
        done
        [ "$gpus" -gt 1 ] && files="$S/dev/nvidia[0-$((gpus - 1))]"
        printf 'AutoDetect=off\nName=gpu File=%s\n' "$files" >"$S/gres.conf"
    fi
}

# ---- bring-up ----------------------------------------------------------------------
_slurm_env_start_munged()
{
    local S=$SLURM_ENV_DIR
    if [ ! -s "$S/munge.key" ]; then
        (umask 077 && { "$(_slurm_env_which mungekey || echo false)" -c -b 1024 -k "$S/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$S/munge.key" bs=128 count=1 2>/dev/null; })
        chown 0:0 "$S/munge.key"
        chmod 0400 "$S/munge.key"
    fi
    # --force: munged wants every directory above its socket to be searchable
    # by all; $T is 0700 (only root talks to this munged, so that is fine)
    env SLURM_ENV_TAG="$SLURM_ENV_CLUSTER" "$_SLURM_ENV_BIN_munged" --force --socket="$S/munge.sock" \
        --key-file="$S/munge.key" --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" \
        --seed-file="$S/munged.seed" >"$S/log/munged.out" 2>&1 </dev/null || true
    if ! wait_until 10 eval '"$_SLURM_ENV_BIN_munge" -S "$S/munge.sock" -n 2>/dev/null |
            "$_SLURM_ENV_BIN_unmunge" -S "$S/munge.sock" >/dev/null 2>&1'; then
        _slurm_env_log "munged did not come up"
        return 1
    fi
    return 0
}

# start slurmctld and the slurmds (config written); 0: all idle, 1: failed,
# 3: a port was taken (try again with others)
_slurm_env_start_slurm()
{
    local S=$SLURM_ENV_DIR k node
    local -a ns_exec=()
    [ -n "$SLURM_ENV_NETNS" ] && ns_exec=($(_slurm_env_in_ns "$SLURM_ENV_NETNS"))
    env SLURM_ENV_TAG="$SLURM_ENV_CLUSTER" SLURM_CONF="$S/slurm.conf" "${ns_exec[@]}" \
        "$_SLURM_ENV_BIN_slurmctld" -f "$S/slurm.conf" >"$S/log/slurmctld.out" 2>&1 </dev/null || true
    for ((k = 0; k < ${#SLURM_ENV_NODE_LIST[@]}; k++)); do
        node=${SLURM_ENV_NODE_LIST[$k]}
        mkdir -p "$S/spool/$node"
        ns_exec=()
        [ -n "$SLURM_ENV_NETNS" ] && ns_exec=($(_slurm_env_in_ns "${SLURM_ENV_NSES[$k]}"))
        env SLURM_ENV_TAG="$SLURM_ENV_CLUSTER" SLURM_CONF="$S/slurm.conf" "${ns_exec[@]}" \
            "$_SLURM_ENV_BIN_slurmd" -f "$S/slurm.conf" -N "$node" >"$S/log/slurmd-$node.out" 2>&1 </dev/null || true
    done
    local i out tries=$((${SLURM_ENV_UP_TIMEOUT:-30} * 4))
    for ((i = 0; i < tries; i++)); do
        if grep -qsiE 'address already in use' "$S"/log/*; then
            return 3
        fi
        out=$(SLURM_ENV_CLI_TIMEOUT=10 _slurm_env_cli sinfo -h -N -o '%N %T' 2>/dev/null) || out=
        if [ -n "$out" ] && [ "$(awk '$2 == "idle"' <<<"$out" | wc -l)" -eq "${#SLURM_ENV_NODE_LIST[@]}" ]; then
            return 0
        fi
        # a node the controller refused (bad gres, CPUs...) does not heal
        if grep -qE ' (inval|drain|drained|draining)$' <<<"$out"; then
            return 1
        fi
        sleep 0.25
    done
    return 1
}

# _slurm_env_up MODE NODES CPUS GPUS   (MODE: host | netns)
_slurm_env_up()
{
    local mode=$1 n=${2:-1} cpus=${3:-8} gpus=${4:-0} S=$SLURM_ENV_DIR
    local t0 rc k attempt ctl_host ctl_addr
    t0=$(_slurm_env_ms)
    if [ "$SLURM_ENV_STATE" = up ]; then
        _slurm_env_log "already up"
        return 1
    fi
    _slurm_env_check_tools || return $?
    if [ -z "$_SLURM_ENV_CLEANUP_SET" ]; then
        on_cleanup slurm_env_down
        _SLURM_ENV_CLEANUP_SET=1
    fi
    _slurm_env_reap_stale
    SLURM_ENV_STATE=up
    SLURM_ENV_CLUSTER=loom$$r$RANDOM
    SLURM_ENV_WHY=
    rm -rf "$S"
    mkdir -p "$S/state" "$S/spool" "$S/run" "$S/log"
    chmod 700 "$S"
    export SLURM_CONF=$S/slurm.conf SLURM_ENV_CLUSTER SLURM_ENV_DIR
    # nothing of the caller's environment may point this run elsewhere (a test
    # run inside a Slurm job has SLURM_JOB_ID and friends)
    local v
    for v in $(compgen -e | grep -E '^(SLURM_|SBATCH_|SALLOC_|SRUN_|SQUEUE_|SINFO_|SCANCEL_)' |
        grep -vE '^(SLURM_ENV_|SLURM_CONF$)' || true); do
        unset "$v"
    done
    ctl_host=$(hostname -s 2>/dev/null || uname -n)
    ctl_host=${ctl_host%%.*}
    SLURM_ENV_NODE_LIST=()
    _SLURM_ENV_NODE_LINES=
    local gres=
    [ "$gpus" -gt 0 ] && gres=" Gres=gpu:$gpus"
    if [ "$mode" = netns ]; then
        rc=0
        _slurm_env_make_namespaces "$n" || rc=$?
        if [ "$rc" -ne 0 ]; then
            [ "$rc" -eq 2 ] || _slurm_env_log "could not make the namespaces"
            return "$rc"
        fi
        SLURM_ENV_NETNS=${SLURM_ENV_NSES[0]}
        SLURM_ENV_EXEC=($(_slurm_env_in_ns "$SLURM_ENV_NETNS"))
        ctl_addr=$_SLURM_ENV_NET.1
        for ((k = 1; k <= n; k++)); do
            SLURM_ENV_NODE_LIST+=("node$k")
            _SLURM_ENV_NODE_LINES+="NodeName=node$k NodeHostname=node$k NodeAddr=$_SLURM_ENV_NET.$k CPUs=$cpus$gres State=UNKNOWN"$'\n'
        done
    else
        ctl_addr=127.0.0.1
        if [ "$n" -eq 1 ]; then
            SLURM_ENV_NODE_LIST=("$ctl_host")
            _SLURM_ENV_NODE_LINES="NodeName=$ctl_host NodeAddr=127.0.0.1 CPUs=$cpus$gres State=UNKNOWN"
        else
            for ((k = 1; k <= n; k++)); do
                SLURM_ENV_NODE_LIST+=("$ctl_host-$k")
                _SLURM_ENV_NODE_LINES+="NodeName=$ctl_host-$k NodeHostname=$ctl_host-$k NodeAddr=127.0.0.$((k + 1)) Port=@PORT$k@ CPUs=$cpus$gres State=UNKNOWN"$'\n'
            done
        fi
    fi
    SLURM_ENV_NODES=${SLURM_ENV_NODE_LIST[*]}
    export SLURM_ENV_NODES SLURM_ENV_NETNS
    if ! _slurm_env_start_munged; then
        slurm_env_logs >&2
        return 1
    fi
    for attempt in 1 2 3; do
        local -a in_ns=()
        [ -n "$SLURM_ENV_NETNS" ] && in_ns=("${SLURM_ENV_EXEC[@]}")
        # the controller's port, the slurmds' port, and one more per node
        # when several slurmds share this host's addresses (Port=)
        local ports=() p
        for ((k = 0; k < 2 + (${#SLURM_ENV_NODE_LIST[@]} > 1 ? ${#SLURM_ENV_NODE_LIST[@]} : 0); k++)); do
            p=$("${in_ns[@]}" bash -c "$(declare -f _slurm_env_free_port); _slurm_env_free_port ${ports[*]}") || {
                _slurm_env_log "no free port"
                return 1
            }
            ports+=("$p")
        done
        _SLURM_ENV_CTLD_PORT=${ports[0]}
        _SLURM_ENV_SLURMD_PORT=${ports[1]}
        _SLURM_ENV_NODE_PORTS=("${ports[@]:2}")
        _slurm_env_write_conf "$n" "$cpus" "$gpus" "$ctl_host" "$ctl_addr"
        rc=0
        _slurm_env_start_slurm || rc=$?
        if [ "$rc" -eq 0 ]; then
            SLURM_ENV_UP_MS=$(($(_slurm_env_ms) - t0))
            return 0
        fi
        if [ "$rc" -ne 3 ]; then
            _slurm_env_log "the nodes did not become idle; sinfo says:"
            SLURM_ENV_CLI_TIMEOUT=5 _slurm_env_cli sinfo -N -o '%N %T %E' 2>&1 | head -20 >&2
            slurm_env_logs >&2
        fi
        _slurm_env_stop_pidfiles "$S/run/slurmctld.pid" "$S"/run/slurmd-*.pid
        [ "$rc" -eq 3 ] || return 1
        _slurm_env_log "a port was taken; again with others"
        mkdir -p "$S/log/attempt$attempt"
        mv "$S"/log/slurm* "$S/log/attempt$attempt/" 2>/dev/null || true
        rm -rf "$S/state" "$S/spool" && mkdir -p "$S/state" "$S/spool"
    done
    _slurm_env_log "the ports were taken three times"
    slurm_env_logs >&2
    return 1
}

slurm_env_up() { _slurm_env_up host "${1:-1}" "${2:-8}" "${3:-0}"; }
slurm_env_up_netns() { _slurm_env_up netns "${1:-2}" "${2:-8}" "${3:-0}"; }

# ---- waiting for jobs ----------------------------------------------------------------
# slurm_env_job_state JOBID: "STATE EXIT" of a job (e.g. "COMPLETED 0:0",
# "FAILED 3:0", "RUNNING 0:0"), empty when the controller does not know it
# (MinJobAge=300: a finished job stays known for 5 minutes)
slurm_env_job_state()
{
    local line st ec
    line=$(SLURM_ENV_CLI_TIMEOUT=10 _slurm_env_cli scontrol show job -o "$1" 2>/dev/null) || return 0
    st=$(grep -o 'JobState=[A-Z_]*' <<<"$line" | head -1) || true
    ec=$(grep -o ' ExitCode=[0-9:]*' <<<"$line" | head -1) || true
    [ -n "$st" ] && echo "${st#JobState=} ${ec# ExitCode=}"
    return 0
}

_slurm_env_job_ended()
{
    case "$(slurm_env_job_state "$1")" in
    "" | PENDING* | RUNNING* | CONFIGURING* | COMPLETING* | SUSPENDED* | REQUEUE* | RESIZING* | SIGNALING* | STAGE_OUT*) return 1 ;;
    *) return 0 ;;
    esac
}

# slurm_env_wait_job JOBID [SECS]: poll (every 0.1 s, at most SECS, default
# 120) until the job has ended; print its "STATE EXIT" and return 0 only for
# COMPLETED.  Much quicker than `sbatch --wait`, which polls every ~10 s.
slurm_env_wait_job()
{
    local st
    if ! wait_until "${2:-120}" _slurm_env_job_ended "$1"; then
        echo "TIMEOUT $(slurm_env_job_state "$1")"
        return 1
    fi
    st=$(slurm_env_job_state "$1")
    echo "$st"
    [ "${st%% *}" = COMPLETED ]
}

# ---- tear-down ---------------------------------------------------------------------
_slurm_env_no_jobs()
{
    local out
    out=$(SLURM_ENV_CLI_TIMEOUT=10 _slurm_env_cli squeue -h -o %i 2>/dev/null) || return 0 # no controller: nothing to wait for
    [ -z "$out" ]
}

slurm_env_down()
{
    [ "$SLURM_ENV_STATE" = up ] || return 0
    local S=$SLURM_ENV_DIR t0 rc=0 p ids
    t0=$(_slurm_env_ms)
    # 1. cancel every job and wait (KillWait=5) until the controller has none
    if _slurm_env_alive "$(_slurm_env_pidfile_pid "$S/run/slurmctld.pid")"; then
        ids=$(SLURM_ENV_CLI_TIMEOUT=10 _slurm_env_cli squeue -h -o %i 2>/dev/null) || ids=
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            SLURM_ENV_CLI_TIMEOUT=10 _slurm_env_cli scancel $ids >/dev/null 2>&1 || true
            wait_until 30 _slurm_env_no_jobs || _slurm_env_log "jobs still listed after 30 s: $ids"
        fi
    fi
    # 2. the daemons: slurmd, slurmctld, then munged
    _slurm_env_stop_pidfiles "$S"/run/slurmd-*.pid
    _slurm_env_stop_pidfiles "$S/run/slurmctld.pid"
    _slurm_env_stop_pidfiles "$S/run/munged.pid"
    # 3. whatever is left of this cluster (step daemons, job processes), and
    # the caller's client commands still talking to it
    for p in $(_slurm_env_client_pids "$S/slurm.conf"); do kill -KILL "$p" 2>/dev/null || true; done
    if ! _slurm_env_no_pids; then
        _slurm_env_log "killing leftovers: $(for p in $(slurm_env_pids); do printf "%s(%s) " "$p" "$(tr "\\0" " " </proc/$p/cmdline 2>/dev/null | cut -c1-80)"; done)"
        for p in $(slurm_env_pids); do kill -KILL "$p" 2>/dev/null || true; done
        if ! wait_until 5 _slurm_env_no_pids; then
            _slurm_env_log "still alive after SIGKILL: $(slurm_env_pids | tr '\n' ' ')"
            rc=1
        fi
    fi
    _slurm_env_remove_namespaces
    SLURM_ENV_EXEC=()
    SLURM_ENV_NETNS=
    SLURM_ENV_STATE=down
    SLURM_ENV_DOWN_MS=$(($(_slurm_env_ms) - t0))
    return "$rc"
}
