#!/usr/bin/env bash
# setup-slurm.sh -- bring up a REAL Slurm cluster on this one machine for simctl's
# integration tests, from Debian packages (slurm-wlm, munge, slurm-wlm-torque).
#
# Usage:
#   scripts/setup-slurm.sh            install (if needed), configure, start, wait until usable
#   scripts/setup-slurm.sh --stop     stop slurmd, slurmctld and munged
#   scripts/setup-slurm.sh --restart  --stop, then start
#   scripts/setup-slurm.sh --status   print daemon / node status (exit 1 if not usable)
#   scripts/setup-slurm.sh --help
#
# Idempotent: safe to run any number of times, on a fresh machine, on one where it
# already ran, with the daemons running, or after they died (pkill, reboot ...).
# Needs root (re-executes itself through `sudo -n` when possible).  No systemd is
# assumed: the daemons are started directly.
#
# The cluster has two nodes on this one machine, each with its own slurmd:
#   <host>       partition `debug` (default): advertises 32 CPUs, more than the
#                machine has, so that many small jobs run at once;
#   <host>-real  partition `real`: advertises the machine's real CPU count and
#                memory, for tests of work bigger than a node (`sbatch -p real`).
#
# Files written: /etc/slurm/{slurm.conf,cgroup.conf}, /etc/munge/munge.key,
# /var/spool/slurmctld, /var/spool/slurmd/<node>/, /var/log/slurm/ (daemon logs
# and the apt log of a first install), /run/slurm/ (pid files, lock), /run/munge/
# (plus munge's own /var/lib/munge and /var/log/munge; apt installs the packages).
# State left in /var/spool/slurmctld by a cluster with another ClusterName is
# removed (slurmctld refuses to start with it), and the script says so.
#
# Tunables (environment):
#   SIMCTL_SLURM_CPUS         CPUs advertised by node <host>       (default 32)
#   SIMCTL_SLURM_MEMORY_MB    RealMemory advertised by node <host> (default 65536)
#   SIMCTL_SLURM_MIN_JOB_AGE  MinJobAge: seconds a finished job stays
#                             visible in squeue/scontrol           (default 30)
#   SIMCTL_SLURM_TIMEOUT      seconds to wait for readiness        (default 90)
#
# See docs/test-slurm.md for the rationale of every setting and observed behaviour.
set -euo pipefail

readonly PROG="setup-slurm"
readonly CLUSTER_NAME=simctl
readonly REAL_PARTITION=real
readonly PACKAGES=(munge slurm-wlm slurm-wlm-torque iproute2)   # iproute2: setup-multinode.sh

readonly SLURM_CONF_DIR=/etc/slurm
readonly SLURM_CONF=$SLURM_CONF_DIR/slurm.conf
readonly CGROUP_CONF=$SLURM_CONF_DIR/cgroup.conf
readonly CTLD_STATE_DIR=/var/spool/slurmctld
readonly SLURMD_SPOOL_ROOT=/var/spool/slurmd   # one sub-directory per node (%n)
readonly SLURM_LOG_DIR=/var/log/slurm
readonly SLURM_RUN_DIR=/run/slurm
readonly CTLD_LOG=$SLURM_LOG_DIR/slurmctld.log
readonly CTLD_PID=$SLURM_RUN_DIR/slurmctld.pid
# Pid file of the one slurmd of earlier versions of this script (now: per node,
# see slurmd_file).
readonly OLD_SLURMD_PID=$SLURM_RUN_DIR/slurmd.pid
readonly SLURMD_PORT=6818 REAL_SLURMD_PORT=6819

readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_RUN_DIR=/run/munge
readonly MUNGE_PID=$MUNGE_RUN_DIR/munged.pid
readonly MUNGE_LOG=/var/log/munge/munged.log

CPUS=${SIMCTL_SLURM_CPUS:-32}
MEMORY_MB=${SIMCTL_SLURM_MEMORY_MB:-65536}
MIN_JOB_AGE=${SIMCTL_SLURM_MIN_JOB_AGE:-30}
READY_TIMEOUT=${SIMCTL_SLURM_TIMEOUT:-90}

log()  { printf '[%s] %s\n' "$PROG" "$*" >&2; }

show_logs() {
    local f
    for f in "$CTLD_LOG" "$SLURM_LOG_DIR"/slurmd-*.log "$MUNGE_LOG"; do
        if [[ -s $f ]]; then
            printf '\n[%s] ---- last lines of %s ----\n' "$PROG" "$f" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
}

die() {
    printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2
    show_logs
    exit 1
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# ---------------------------------------------------------------- helpers

# alive PID NAME: PID exists, is called NAME and is not a zombie.  (Zombies
# matter here: when PID 1 does not reap orphans, a killed daemon stays a
# zombie, and `kill -0` / pgrep still "see" it.)
alive() {
    local pid=$1 name=$2 stat
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }                      # drop "pid (comm) "
    [[ ${stat:0:1} != [ZX] ]]
}

# ours PID: PID runs on this machine's own "host" and cluster: in this script's
# network and mount namespaces (not a node of the multi-node test cluster,
# scripts/setup-multinode.sh, nor a container) and with this cluster's
# slurm.conf (no -f naming another).
ours() {
    local pid=$1 conf
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$(readlink /proc/self/ns/net)" ]] || return 1
    [[ $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$(readlink /proc/self/ns/mnt)" ]] || return 1
    conf=$(tr '\0' '\n' 2>/dev/null </proc/"$pid"/cmdline | awk 'f { print; exit } $0 == "-f" { f = 1 }')
    [[ -z $conf || $conf == "$SLURM_CONF" ]]
}

# pids_of NAME PIDFILE: pids of live daemons NAME of this cluster: its pid file
# first, then a process-name match for daemons started some other way, kept
# only if it is ours (see ours): never another cluster's daemon.
pids_of() {
    local name=$1 pidfile=$2 pid
    {
        [[ -r $pidfile ]] && tr -dc '0-9' 2>/dev/null <"$pidfile" && echo
        pgrep -x "$name" || true
    } | sort -un | while read -r pid; do
        alive "$pid" "$name" && ours "$pid" && echo "$pid"
    done
    return 0
}

pid_of() { local p; p=$(pids_of "$@"); echo "${p%%$'\n'*}"; }

node_name() { hostname -s; }
real_node_name() { echo "$(node_name)-$REAL_PARTITION"; }
nodes() { node_name; real_node_name; }

# slurmd_file pid|log NODE: that node's slurmd pid or log file (%n in slurm.conf).
slurmd_file() {
    case $1 in
        pid) echo "$SLURM_RUN_DIR/slurmd-$2.pid" ;;
        log) echo "$SLURM_LOG_DIR/slurmd-$2.log" ;;
    esac
}

# slurmd_pid NODE: pid of the live slurmd serving NODE (from its pid file only:
# every slurmd process has the same name).
slurmd_pid() {
    local pid
    pid=$(tr -dc '0-9' 2>/dev/null <"$(slurmd_file pid "$1")") || true
    if alive "$pid" slurmd; then echo "$pid"; fi
}

is_running() { [[ -n $(pid_of "$1" "$2") ]]; }

# stop_daemon NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL.
stop_daemon() {
    local name=$1 pidfile=$2 pids i
    pids=$(pids_of "$name" "$pidfile" | tr '\n' ' ')
    if [[ -z ${pids// /} ]]; then
        rm -f "$pidfile"; return 0
    fi
    log "stopping $name (pid ${pids% })"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 75; i++)); do
        [[ -z $(pids_of "$name" "$pidfile") ]] && break
        sleep 0.2
    done
    if [[ -n $(pids_of "$name" "$pidfile") ]]; then
        log "$name did not stop within 15s of SIGTERM, sending SIGKILL"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- steps

ensure_root() {
    if [[ $EUID -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            exec sudo -n -E bash "$0" "$@"
        fi
        die "must be run as root (or with password-less sudo)"
    fi
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    install -d -m 0755 "$SLURM_LOG_DIR"
    local aptlog=$SLURM_LOG_DIR/setup-slurm-apt.log
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1; then
        log "apt-get install failed, running apt-get update and retrying"
        apt-get update >>"$aptlog" 2>&1 || true
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 ||
            { tail -n 20 "$aptlog" >&2; die "apt-get install ${missing[*]} failed (log: $aptlog)"; }
    fi
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

setup_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN_DIR"
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"

    if is_running munged "$MUNGE_PID"; then
        munge_works && return 0
        log "munged is running but not answering: restarting it"
        stop_daemon munged "$MUNGE_PID"
    fi
    log "starting munged"
    # --force: start even if a stale socket / pid file is left from a killed daemon.
    runuser -u munge -- /usr/sbin/munged --force 9>&- ||
        die "munged failed to start"
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && return 0
        sleep 0.2
    done
    die "munged started but 'munge -n | unmunge' does not work"
}

# real_cpus, real_memory_mb: what the machine has (online CPUs; MemTotal rounded
# down to whole GiB so that the value, hence slurm.conf, does not drift).
real_cpus() { getconf _NPROCESSORS_ONLN; }
real_memory_mb() { awk '/^MemTotal:/ { print int($2 / 1048576) * 1024 }' /proc/meminfo; }

render_slurm_conf() {
    local node=$1 real=$2
    cat <<EOF
# Generated by scripts/setup-slurm.sh (simctl integration-test cluster).
# Manual edits are overwritten on the next run; see docs/test-slurm.md.
ClusterName=${CLUSTER_NAME}
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
# Reject at submit time jobs that can never run in the partition (too many
# nodes/CPUs/memory) instead of leaving them PENDING (PartitionConfig) forever.
EnforcePartLimits=ALL

StateSaveLocation=${CTLD_STATE_DIR}
# Two slurmds on this machine: %n (the node name) keeps their files apart.
SlurmdSpoolDir=${SLURMD_SPOOL_ROOT}/%n
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=$(slurmd_file pid %n)
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=$(slurmd_file log %n)
SlurmctldDebug=info
SlurmdDebug=info

# Accounting OFF: no slurmdbd; sacct does not work (see docs/test-slurm.md).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

# Short timeouts so tests are quick.
KillWait=2
MinJobAge=${MIN_JOB_AGE}
OverTimeLimit=0
InactiveLimit=0
WaitTime=0
CompleteWait=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
UnkillableStepTimeout=30

# Scheduling: jobs are tried at submit time (no 'defer'), the full queue every 2 s.
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU

# Node ${node} advertises more CPUs/memory than the machine has (overcommit) so
# that ~20 one-CPU jobs or job steps run at once; config_overrides makes slurmd
# accept the slurm.conf values instead of the detected hardware.
# Node ${real} (a second slurmd, its own port) advertises what the machine
# really has: partition ${REAL_PARTITION} is for work bigger than a real node.
SlurmdParameters=config_overrides
NodeName=${node} NodeAddr=127.0.0.1 Port=${SLURMD_PORT} CPUs=${CPUS} RealMemory=${MEMORY_MB} State=UNKNOWN
NodeName=${real} NodeHostname=${node} NodeAddr=127.0.0.1 Port=${REAL_SLURMD_PORT} CPUs=$(real_cpus) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=${REAL_PARTITION} Nodes=${real} MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

render_cgroup_conf() {
    cat <<'EOF'
# Generated by scripts/setup-slurm.sh. Not used (ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none); present so no tool complains about a missing file.
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
}

# install_if_changed CONTENT-FILE TARGET MODE: prints "changed" when written.
install_if_changed() {
    local src=$1 dst=$2 mode=$3
    if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
        rm -f "$src"; return 0
    fi
    install -m "$mode" -o root -g root "$src" "$dst"
    rm -f "$src"
    echo changed
}

CONFIG_CHANGED=0
write_config() {
    local node tmp changed=""
    node=$(node_name)
    [[ -n $node ]] || die "hostname -s is empty"
    install -d -m 0755 "$SLURM_CONF_DIR" "$SLURM_LOG_DIR" "$SLURM_RUN_DIR"
    install -d -m 0755 "$CTLD_STATE_DIR" "$SLURMD_SPOOL_ROOT"
    tmp=$(mktemp "$SLURM_CONF_DIR/.slurm.conf.XXXXXX")
    render_slurm_conf "$node" "$(real_node_name)" >"$tmp"
    changed+=$(install_if_changed "$tmp" "$SLURM_CONF" 0644)
    tmp=$(mktemp "$SLURM_CONF_DIR/.cgroup.conf.XXXXXX")
    render_cgroup_conf >"$tmp"
    changed+=$(install_if_changed "$tmp" "$CGROUP_CONF" 0644)
    if [[ -n $changed ]]; then
        CONFIG_CHANGED=1
        log "wrote $SLURM_CONF (node $node: CPUs=$CPUS, RealMemory=$MEMORY_MB;" \
            "node $(real_node_name): CPUs=$(real_cpus), RealMemory=$(real_memory_mb); MinJobAge=$MIN_JOB_AGE)"
    fi
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# clear_foreign_state DIR: slurmctld refuses to start, with or without -c
# ("fatal: CLUSTER NAME MISMATCH"), when its StateSaveLocation DIR holds the
# state of a cluster with another ClusterName (e.g. an earlier test Slurm).
# This cluster is a throw-away: empty DIR, saying so.
clear_foreign_state() {
    local dir=$1 saved
    [[ -s $dir/clustername ]] || return 0
    saved=$(<"$dir/clustername")
    [[ $saved == "$CLUSTER_NAME" ]] && return 0
    log "$dir holds the state of cluster '$saved', not '$CLUSTER_NAME':" \
        "removing it (its jobs, nodes and reservations are forgotten) and starting slurmctld with empty state"
    find "$dir" -mindepth 1 -delete
}

start_slurmctld() {
    local clear=() i
    if is_running slurmctld "$CTLD_PID"; then
        if [[ $CONFIG_CHANGED -eq 0 ]]; then
            for ((i = 0; i < 20; i++)); do ctld_up && return 0; sleep 0.5; done
            log "slurmctld is running but does not answer: restarting it"
        else
            log "configuration changed: restarting slurmctld"
        fi
        stop_daemon slurmctld "$CTLD_PID"
    fi
    clear_foreign_state "$CTLD_STATE_DIR"
    # Clear saved state (-c) on first start; otherwise recover jobs from the
    # state files (after a crash or a configuration change), falling back to -c
    # below if slurmctld cannot start from them.
    if [[ ! -e $CTLD_STATE_DIR/node_state ]]; then
        clear=(-c)
    fi
    log "starting slurmctld ${clear[*]}"
    slurmctld "${clear[@]}" 9>&- || die "slurmctld failed to start"
    for ((i = 0; i < 60; i++)); do
        ctld_up && return 0
        if ! is_running slurmctld "$CTLD_PID"; then break; fi
        sleep 0.5
    done
    if [[ ${#clear[@]} -eq 0 ]]; then
        log "slurmctld did not come up with its saved state: retrying with -c (clears state)"
        stop_daemon slurmctld "$CTLD_PID"
        slurmctld -c 9>&- || die "slurmctld failed to start"
        for ((i = 0; i < 60; i++)); do ctld_up && return 0; sleep 0.5; done
    fi
    die "slurmctld did not come up (scontrol ping: $(scontrol ping 2>&1 | tr '\n' ' '))"
}

# slurmd_daemons: pids of all live slurmd daemons (not their short-lived forks).
slurmd_daemons() {
    local pid ppid
    for pid in $(pids_of slurmd "$OLD_SLURMD_PID"); do
        ppid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || continue
        alive "$ppid" slurmd || echo "$pid"
    done
}

# node_of PID: the node a slurmd serves (its -N argument; empty without one).
node_of() { tr '\0' '\n' 2>/dev/null </proc/"$1"/cmdline | awk 'f { print; exit } $0 == "-N" { f = 1 }'; }

stop_slurmds() {
    local node
    stop_daemon slurmd "$OLD_SLURMD_PID"   # every slurmd of this cluster (see pids_of), no other
    for node in $(nodes); do rm -f "$(slurmd_file pid "$node")"; done
}

node_port() { if [[ $1 == "$(real_node_name)" ]]; then echo "$REAL_SLURMD_PORT"; else echo "$SLURMD_PORT"; fi; }

start_slurmds() {
    local node port pid i
    if [[ $CONFIG_CHANGED -eq 1 && -n $(slurmd_daemons) ]]; then
        log "configuration changed: restarting slurmd"
        stop_slurmds
    fi
    # a slurmd of this cluster that lost its pid file keeps running: its pid file is written
    # again (never a restart of daemons this script cannot tell apart: issue 18)
    for pid in $(slurmd_daemons); do
        node=$(node_of "$pid")
        if [[ -n $node && -z $(slurmd_pid "$node") ]] && nodes | grep -qx -- "$node"; then
            log "slurmd of node $node (pid $pid) runs without its pid file: keeping it"
            echo "$pid" >"$(slurmd_file pid "$node")"
        fi
    done
    for node in $(nodes); do
        [[ -n $(slurmd_pid "$node") ]] && continue
        port=$(node_port "$node")
        log "starting slurmd for node $node (port $port)"
        install -d -m 0755 "$SLURMD_SPOOL_ROOT/$node"
        # No -c: "clear system locks" also removes the sockets of running job
        # steps, and slurmctld then kills those jobs (seen with slurm 22.05).
        # Without it a restarted slurmd reattaches to the running slurmstepds.
        slurmd -N "$node" 9>&- || die "slurmd for node $node failed to start"
        for ((i = 0; i < 50; i++)); do
            [[ -n $(slurmd_pid "$node") ]] && port_open "$port" && continue 2
            sleep 0.2
        done
        die "slurmd for node $node is not running or does not listen on port $port"
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n1; }

# wait_node NODE DEADLINE: wait until NODE is usable (resuming it if needed).
wait_node() {
    local node=$1 deadline=$2 state resumed=0
    while :; do
        state=$(node_state "$node")
        case $state in
            idle|mixed|allocated|completing|idle+*|mixed+*|allocated+*|completing+*)
                break ;;
            *drain*|*down*|*fail*|*not_responding*|*invalid*)
                # DOWN/DRAIN left from an earlier run (e.g. slurmd was killed):
                # resume it once slurmd is up (it does not answer when ~ "*").
                if [[ -n $(slurmd_pid "$node") && $resumed -lt 5 ]]; then
                    log "node $node is '$state': resuming it"
                    scontrol update nodename="$node" state=resume 2>&1 | sed "s/^/[$PROG] scontrol: /" >&2 || true
                    resumed=$((resumed + 1))
                fi ;;
        esac
        if ((SECONDS >= deadline)); then
            sinfo -N -l >&2 || true
            scontrol show node "$node" >&2 || true
            die "node $node not usable after ${READY_TIMEOUT}s (state '${state:-none}')"
        fi
        [[ -n $(slurmd_pid "$node") ]] || die "slurmd of node $node died"
        is_running slurmctld "$CTLD_PID" || die "slurmctld died"
        sleep 1
    done
    log "node $node is $state"
}

# check_srun PARTITION NODE: a job step runs on NODE.  Skipped while other jobs
# use all of NODE (likely for the few CPUs of partition real): they prove it.
check_srun() {
    local part=$1 node=$2 try
    for try in 1 2 3; do
        [[ $(node_state "$node") == allocated* ]] && { log "node $node is busy running jobs"; return 0; }
        timeout 60 srun -Q -p "$part" -N1 -n1 --time=1 --immediate=30 -J setup-slurm-check true 9>&- && return 0
        log "'srun -p $part -N1 true' failed (try $try/3)"
        sleep 3
    done
    die "'srun -p $part -N1 true' failed"
}

wait_ready() {
    local deadline node
    deadline=$((SECONDS + READY_TIMEOUT))
    for node in $(nodes); do wait_node "$node" "$deadline"; done
    check_srun debug "$(node_name)"
    check_srun "$REAL_PARTITION" "$(real_node_name)"
}

status() {
    local ok=0 d node pid
    for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID"; do
        local name=${d%%:*} pidfile=${d#*:}
        pid=$(pid_of "$name" "$pidfile")
        if [[ -n $pid ]]; then echo "$name: running (pid $pid)"; else echo "$name: NOT running"; ok=1; fi
    done
    for node in $(nodes); do
        pid=$(slurmd_pid "$node")
        if [[ -n $pid ]]; then echo "slurmd ($node): running (pid $pid)"; else echo "slurmd ($node): NOT running"; ok=1; fi
    done
    if ctld_up; then
        sinfo
    else
        echo "slurmctld: not answering"; ok=1
    fi
    return $ok
}

stop_all() {
    stop_slurmds
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
    log "stopped"
}

start_all() {
    install_packages
    setup_munge
    write_config
    start_slurmctld
    start_slurmds
    wait_ready
    log "Slurm cluster is up: $(sinfo -h -o '%P %a %D %T %C' | paste -sd ';' | sed 's/;/; /g')" \
        "(partition avail nodes state cpus A/I/O/T)"
}

main() {
    local action=start
    case ${1:-} in
        ""|--start) action=start ;;
        --stop) action=stop ;;
        --restart) action=restart ;;
        --status) action=status ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    ensure_root "$@"
    # Serialise concurrent invocations.  fd 9 is closed for every daemon we
    # start (9>&-), otherwise the daemons would hold the lock forever.
    install -d -m 0755 "$SLURM_RUN_DIR"
    exec 9>"$SLURM_RUN_DIR/setup-slurm.lock"
    flock -w 300 9 || die "could not take $SLURM_RUN_DIR/setup-slurm.lock"
    case $action in
        start) start_all ;;
        stop) stop_all ;;
        restart) stop_all; start_all ;;
        status) status ;;
    esac
}

# Sourcing the script (tests do) defines its functions without running it.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
