#!/usr/bin/env bash
# setup-slurm.sh -- bring up a REAL single-node Slurm cluster for simctl's
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
# Files written: /etc/slurm/{slurm.conf,cgroup.conf}, /etc/munge/munge.key,
# /var/spool/slurmctld, /var/spool/slurmd, /var/log/slurm/ (daemon logs and the
# apt log of a first install), /run/slurm/ (pid files, lock), /run/munge/ (plus
# munge's own /var/lib/munge and /var/log/munge; apt installs the packages).
#
# Tunables (environment):
#   SIMCTL_SLURM_CPUS         CPUs advertised by the node          (default 32)
#   SIMCTL_SLURM_MEMORY_MB    RealMemory advertised by the node    (default 65536)
#   SIMCTL_SLURM_MIN_JOB_AGE  MinJobAge: seconds a finished job stays
#                             visible in squeue/scontrol           (default 30)
#   SIMCTL_SLURM_TIMEOUT      seconds to wait for readiness        (default 90)
#
# See docs/test-slurm.md for the rationale of every setting and observed behaviour.
set -euo pipefail

readonly PROG="setup-slurm"
readonly PACKAGES=(munge slurm-wlm slurm-wlm-torque)

readonly SLURM_CONF_DIR=/etc/slurm
readonly SLURM_CONF=$SLURM_CONF_DIR/slurm.conf
readonly CGROUP_CONF=$SLURM_CONF_DIR/cgroup.conf
readonly CTLD_STATE_DIR=/var/spool/slurmctld
readonly SLURMD_SPOOL_DIR=/var/spool/slurmd
readonly SLURM_LOG_DIR=/var/log/slurm
readonly SLURM_RUN_DIR=/run/slurm
readonly CTLD_LOG=$SLURM_LOG_DIR/slurmctld.log
readonly SLURMD_LOG=$SLURM_LOG_DIR/slurmd.log
readonly CTLD_PID=$SLURM_RUN_DIR/slurmctld.pid
readonly SLURMD_PID=$SLURM_RUN_DIR/slurmd.pid

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
    for f in "$CTLD_LOG" "$SLURMD_LOG" "$MUNGE_LOG"; do
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

# pids_of NAME PIDFILE: pids of live daemons NAME (pidfile first, then an
# exact process-name match for daemons started some other way).
pids_of() {
    local name=$1 pidfile=$2 pid
    {
        [[ -r $pidfile ]] && tr -dc '0-9' <"$pidfile" && echo
        pgrep -x "$name" || true
    } | sort -un | while read -r pid; do
        alive "$pid" "$name" && echo "$pid"
    done
    return 0
}

pid_of() { local p; p=$(pids_of "$@"); echo "${p%%$'\n'*}"; }

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

node_name() { hostname -s; }

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

render_slurm_conf() {
    local node=$1
    cat <<EOF
# Generated by scripts/setup-slurm.sh (simctl integration-test cluster).
# Manual edits are overwritten on the next run; see docs/test-slurm.md.
ClusterName=simctl
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
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
SlurmdSpoolDir=${SLURMD_SPOOL_DIR}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=${SLURMD_LOG}
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

# The node advertises more CPUs/memory than the machine has (overcommit) so
# that ~20 one-CPU jobs or job steps run at once; config_overrides makes slurmd
# accept the slurm.conf values instead of the detected hardware.
SlurmdParameters=config_overrides
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEMORY_MB} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
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
    install -d -m 0755 "$CTLD_STATE_DIR" "$SLURMD_SPOOL_DIR"
    tmp=$(mktemp "$SLURM_CONF_DIR/.slurm.conf.XXXXXX")
    render_slurm_conf "$node" >"$tmp"
    changed+=$(install_if_changed "$tmp" "$SLURM_CONF" 0644)
    tmp=$(mktemp "$SLURM_CONF_DIR/.cgroup.conf.XXXXXX")
    render_cgroup_conf >"$tmp"
    changed+=$(install_if_changed "$tmp" "$CGROUP_CONF" 0644)
    if [[ -n $changed ]]; then
        CONFIG_CHANGED=1
        log "wrote $SLURM_CONF (node $node, CPUs=$CPUS, RealMemory=$MEMORY_MB, MinJobAge=$MIN_JOB_AGE)"
    fi
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

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

start_slurmd() {
    if is_running slurmd "$SLURMD_PID"; then
        [[ $CONFIG_CHANGED -eq 0 ]] && return 0
        log "configuration changed: restarting slurmd"
        stop_daemon slurmd "$SLURMD_PID"
    fi
    log "starting slurmd"
    # No -c: "clear system locks" also removes the sockets of running job
    # steps, and slurmctld then kills those jobs (seen with slurm 22.05).
    # Without it a restarted slurmd reattaches to the running slurmstepds.
    slurmd 9>&- || die "slurmd failed to start"
    local i
    for ((i = 0; i < 50; i++)); do
        is_running slurmd "$SLURMD_PID" || die "slurmd exited right after start"
        port_open 6818 && return 0
        sleep 0.2
    done
    die "slurmd does not listen on port 6818"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

node_state() { sinfo -h -N -n "$(node_name)" -o '%T' 2>/dev/null | head -n1; }

wait_ready() {
    local node state deadline resumed=0
    node=$(node_name)
    deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        state=$(node_state)
        case $state in
            idle|mixed|allocated|completing|idle+*|mixed+*|allocated+*|completing+*)
                break ;;
            *drain*|*down*|*fail*|*not_responding*|*invalid*)
                # DOWN/DRAIN left from an earlier run (e.g. slurmd was killed):
                # resume it once slurmd is up (it does not answer when ~ "*").
                if is_running slurmd "$SLURMD_PID" && [[ $resumed -lt 5 ]]; then
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
        is_running slurmd "$SLURMD_PID" || die "slurmd died"
        is_running slurmctld "$CTLD_PID" || die "slurmctld died"
        sleep 1
    done
    log "node $node is $state; checking 'srun -N1 true'"
    local try
    for try in 1 2 3; do
        if timeout 60 srun -Q -N1 -n1 --time=1 --immediate=30 -J setup-slurm-check true 9>&-; then
            return 0
        fi
        log "'srun -N1 true' failed (try $try/3)"
        sleep 3
    done
    die "'srun -N1 true' failed"
}

status() {
    local ok=0 d
    for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
        local name=${d%%:*} pidfile=${d#*:} pid
        pid=$(pid_of "$name" "$pidfile")
        if [[ -n $pid ]]; then echo "$name: running (pid $pid)"; else echo "$name: NOT running"; ok=1; fi
    done
    if ctld_up; then
        sinfo
    else
        echo "slurmctld: not answering"; ok=1
    fi
    return $ok
}

stop_all() {
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
    log "stopped"
}

start_all() {
    install_packages
    setup_munge
    write_config
    start_slurmctld
    start_slurmd
    wait_ready
    log "Slurm cluster is up: $(sinfo -h -o '%P %a %D %T %C' | head -n1) (partition avail nodes state cpus A/I/O/T)"
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

main "$@"
