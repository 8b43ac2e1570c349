#!/usr/bin/env bash
# setup-multinode.sh -- simctl's multi-node test cluster on ONE machine (issue 18):
# a head node (slurmctld; drivers and pytest run there, as on a login node) and
# N compute nodes, each a set of Linux namespaces (network, hostname, mount)
# with its own address on a private bridge, its own /etc/hosts and /tmp, and
# one unmodified Debian slurmd.  It runs BESIDE the single-node test Slurm of
# scripts/setup-slurm.sh (which the rest of the suite uses): its own config,
# ports, munged, state and process names (sm-slurmctld, sm-slurmd, sm-munged),
# so neither script sees, restarts or stops the other's daemons.
#
# Usage:
#   scripts/setup-multinode.sh [--start]   bring it up (idempotent: only what is missing
#                                          is started; a changed size restarts it)
#   scripts/setup-multinode.sh --stop      tear it down: daemons, the processes left in
#                                          its nodes, namespaces, mounts, node-local /tmp
#   scripts/setup-multinode.sh --status    daemons and sinfo (exit 1 if not usable)
#   scripts/setup-multinode.sh --exec NODE -- CMD...
#                                          CMD on NODE (sm-head, sm1, ...), in this directory
#   scripts/setup-multinode.sh --env       the settings, as shell assignments
#
# Tunables (environment): SIMCTL_MN_NODES (3), SIMCTL_MN_CPUS per node (4),
# SIMCTL_MN_DIR (/var/tmp/simctl-mn: the shared file system, outside every node's
# private /tmp), SIMCTL_MN_IFACE (hsn0: the nodes' interface), SIMCTL_MN_NET (10.78.0).
# Compute node i is sm<i> at $NET.<10+i>; the head is sm-head at $NET.1; the one
# partition is `compute`.  Needs root, iproute2, util-linux, munge, slurm-wlm.
# Recipe and measurements: ../shared/multinode/RECIPE.md and docs/test-slurm.md.
set -euo pipefail

readonly PROG=setup-multinode
NODES=${SIMCTL_MN_NODES:-3}
CPUS=${SIMCTL_MN_CPUS:-4}
DIR=${SIMCTL_MN_DIR:-/var/tmp/simctl-mn}
IFACE=${SIMCTL_MN_IFACE:-hsn0}
NET=${SIMCTL_MN_NET:-10.78.0}
readonly HEAD=sm-head HUB=sm-hub PARTITION=compute CLUSTER=simctlmn CTLD_PORT=7827 SLURMD_PORT=7828
readonly CONF=$DIR/etc/slurm.conf HOSTS=$DIR/etc/hosts BIN=$DIR/bin NSDIR=$DIR/ns RUN=$DIR/run LOG=$DIR/log
readonly CTLD_PID=$DIR/run/slurmctld.pid MUNGE_DIR=$DIR/munge MUNGE_PID=$DIR/munge/munged.pid
readonly MUNGE_SOCKET=$DIR/munge/munge.socket.2   # /run/munge/munge.socket.2 on the nodes
readonly TIMEOUT=90

log() { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2
    local f
    for f in "$LOG"/slurmctld.log "$LOG"/slurmd-*.log "$MUNGE_DIR"/munged.log; do
        [[ -s $f ]] && { printf -- '---- last lines of %s ----\n' "$f" >&2; tail -n 12 "$f" >&2; }
    done
    exit 1
}

nodes() { local i; for ((i = 1; i <= NODES; i++)); do echo "sm$i"; done; }
all_nodes() { echo "$HEAD"; nodes; }
addr_of() { if [[ $1 == "$HEAD" ]]; then echo "$NET.1"; else echo "$NET.$((10 + ${1#sm}))"; fi; }

# alive PID NAME: PID runs (not a zombie) and is called NAME.
alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != [ZX] ]]
}
# running PIDFILE NAME: the pid of the daemon its pid file names, if it runs.  Daemons are
# found by their pid files only, never by a process name.
running() { local p; p=$(tr -dc '0-9' 2>/dev/null <"$1" || true); alive "$p" "$2" && echo "$p"; }

stop() {
    local pid i
    pid=$(running "$1" "$2") || { rm -f "$1"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" "$2" || break; sleep 0.1; done
    if alive "$pid" "$2"; then log "$2 ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$1"
}

mounted() { grep -q " $1 " /proc/self/mountinfo; }
netns() { [[ -e /run/netns/$1 ]]; }

# on NODE CMD...: CMD in NODE's network, UTS and mount namespaces, in this directory.
on() {
    local node=$1; shift
    nsenter --net="/run/netns/$node" --uts="$NSDIR/$node.uts" --mount="$NSDIR/$node.mnt" --wd="$PWD" \
        env SLURM_CONF="$CONF" "$@" 8>&-   # fd 8 is the lock of --start/--stop: not for daemons
}

# -- up ------------------------------------------------------------------------------------------

check() {
    [[ $EUID -eq 0 ]] || die "must run as root (namespaces, mounts, veth)"
    local c
    for c in ip nsenter unshare mount munged slurmd slurmctld sinfo srun; do
        command -v "$c" >/dev/null || die "missing command '$c' (Debian: iproute2 util-linux munge slurm-wlm)"
    done
    [[ $NODES =~ ^[0-9]+$ && $NODES -ge 1 && $NODES -le 200 ]] || die "SIMCTL_MN_NODES must be 1..200"
    [[ $DIR != /tmp && $DIR != /tmp/* ]] || die "SIMCTL_MN_DIR must be outside /tmp (each node has its own /tmp)"
}

write_files() {
    install -d -m 0755 "$DIR" "$DIR/etc" "$BIN" "$RUN" "$LOG" "$DIR/state" "$DIR/spool" "$NSDIR" "$DIR/nodes"
    install -d -m 1777 "$DIR/shared"   # experiments and pytest's basetemp: seen from every node
    install -d -o munge -g munge -m 0755 "$MUNGE_DIR"
    # renamed links: the daemons are called sm-*, never slurmd/slurmctld/munged
    ln -sfn "$(readlink -f "$(command -v slurmctld)")" "$BIN/sm-slurmctld"
    ln -sfn "$(readlink -f "$(command -v slurmd)")" "$BIN/sm-slurmd"
    ln -sfn "$(readlink -f "$(command -v munged)")" "$BIN/sm-munged"
    local n range="sm[1-$NODES]" addrs="$NET.[11-$((10 + NODES))]"
    [[ $NODES -eq 1 ]] && { range=sm1; addrs=$NET.11; }
    { echo "127.0.0.1 localhost"; for n in $(all_nodes); do echo "$(addr_of "$n") $n"; done; } >"$HOSTS.tmp"
    mv -f "$HOSTS.tmp" "$HOSTS"
    cat >"$CONF.tmp" <<EOF
# Generated by scripts/setup-multinode.sh: simctl's ${NODES}-node test cluster on one machine.
ClusterName=$CLUSTER
SlurmctldHost=$HEAD($(addr_of "$HEAD"))
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CryptoType=crypto/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
EnforcePartLimits=ALL
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=30
MinJobAge=60
OverTimeLimit=0
InactiveLimit=0
WaitTime=0
CompleteWait=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
UnkillableStepTimeout=60
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
NodeName=$range NodeAddr=$addrs CPUs=$CPUS RealMemory=4096 State=UNKNOWN
PartitionName=$PARTITION Nodes=$range Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    if [[ -f $CONF ]] && cmp -s "$CONF.tmp" "$CONF"; then rm -f "$CONF.tmp"; return 0; fi
    if [[ -f $CONF && -n $(running "$CTLD_PID" sm-slurmctld) ]]; then
        log "configuration changed: restarting the cluster (running jobs are lost)"
        down
        install -d -m 0755 "$RUN" "$DIR/state" "$DIR/spool" "$NSDIR" "$DIR/nodes"
    fi
    mv -f "$CONF.tmp" "$CONF"
}

# a hub namespace holds bridge br0; each node a network namespace with lo and a veth
# (its end $IFACE with the node's address, the other end in the bridge)
setup_network() {
    netns "$HUB" || ip netns add "$HUB"
    ip -n "$HUB" link set lo up
    ip -n "$HUB" link show br0 >/dev/null 2>&1 || ip -n "$HUB" link add br0 type bridge
    ip -n "$HUB" link set br0 up
    local n port addr
    for n in $(all_nodes); do
        netns "$n" || ip netns add "$n"
        ip -n "$n" link set lo up
        port=p-$n addr=$(addr_of "$n")
        if ! ip -n "$n" link show "$IFACE" >/dev/null 2>&1; then
            ip -n "$HUB" link del "$port" 2>/dev/null || true
            ip link add "$IFACE" netns "$n" type veth peer name "$port" netns "$HUB"
        fi
        ip -n "$HUB" link set "$port" master br0 up
        [[ $(ip -n "$n" -4 -o addr show dev "$IFACE") == *" $addr/24 "* ]] || ip -n "$n" addr add "$addr/24" dev "$IFACE"
        ip -n "$n" link set "$IFACE" up
    done
}

# persistent UTS and mount namespaces per node (files in $NSDIR, a private mount):
# its hostname, the cluster's /etc/hosts, /etc/slurm and /run/munge, its own /sys
# (its interfaces; the machine's /sys/fs/cgroup kept: slurmd needs it) and /tmp
setup_node() {
    local n=$1
    if mounted "$NSDIR/$n.uts" && mounted "$NSDIR/$n.mnt"; then return 0; fi
    umount "$NSDIR/$n.uts" "$NSDIR/$n.mnt" 2>/dev/null || true
    touch "$NSDIR/$n.uts" "$NSDIR/$n.mnt"
    unshare --uts="$NSDIR/$n.uts" --mount="$NSDIR/$n.mnt" --propagation private true
    install -d -m 1777 "$DIR/nodes/$n/tmp"
    install -d -m 0700 "$DIR/nodes/$n/cgroup"
    nsenter --net="/run/netns/$n" --uts="$NSDIR/$n.uts" --mount="$NSDIR/$n.mnt" -- sh -euc '
        hostname "$1"
        mount --rbind /sys/fs/cgroup "$2/nodes/$1/cgroup"
        mount -t sysfs sysfs /sys
        mount --move "$2/nodes/$1/cgroup" /sys/fs/cgroup
        mount --bind "$2/etc/hosts" /etc/hosts
        mkdir -p /etc/slurm /run/munge
        mount --bind "$2/etc" /etc/slurm
        mount --bind "$2/munge" /run/munge
        mount --rbind "$2/nodes/$1/tmp" /tmp' sh "$n" "$DIR" || {
        umount "$NSDIR/$n.uts" "$NSDIR/$n.mnt" 2>/dev/null || true
        die "could not set up the namespaces of node $n"; }
}

setup_nsdir() { mounted "$NSDIR" || { mount --bind "$NSDIR" "$NSDIR"; mount --make-private "$NSDIR"; }; }

munge_ok() { on "$HEAD" sh -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'" >/dev/null 2>&1; }

start_munge() {
    local i
    install -d -o munge -g munge -m 0755 "$MUNGE_DIR"
    [[ -s $MUNGE_DIR/munge.key ]] || dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$MUNGE_DIR/munge.key"; chmod 0400 "$MUNGE_DIR/munge.key"
    if [[ -n $(running "$MUNGE_PID" sm-munged) ]]; then munge_ok && return 0; stop "$MUNGE_PID" sm-munged; fi
    log "starting munged ($MUNGE_SOCKET)"
    on "$HEAD" runuser -u munge -- "$BIN/sm-munged" --force --socket="$MUNGE_SOCKET" \
        --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_PID" --seed-file="$MUNGE_DIR/munged.seed" \
        --log-file="$MUNGE_DIR/munged.log" || die "munged failed to start"
    for ((i = 0; i < 50; i++)); do munge_ok && return 0; sleep 0.1; done
    die "munged started but munge -n | unmunge fails"
}

ctld_up() { [[ $(on "$HEAD" scontrol ping 2>/dev/null) == *"is UP"* ]]; }

start_slurmctld() {
    local i
    if [[ -n $(running "$CTLD_PID" sm-slurmctld) ]]; then
        for ((i = 0; i < 20; i++)); do ctld_up && return 0; sleep 0.25; done
        log "slurmctld runs but does not answer: restarting it"
        stop "$CTLD_PID" sm-slurmctld
    fi
    log "starting slurmctld on $HEAD ($(addr_of "$HEAD"):$CTLD_PORT)"
    on "$HEAD" "$BIN/sm-slurmctld" -c -i -f "$CONF" || die "slurmctld failed to start"
    for ((i = 0; i < 100; i++)); do ctld_up && return 0; sleep 0.1; done
    die "slurmctld does not answer"
}

start_slurmd() {
    [[ -n $(running "$RUN/slurmd-$1.pid" sm-slurmd) ]] && return 0
    install -d -m 0755 "$DIR/spool/$1"
    log "starting slurmd on $1 ($(addr_of "$1"):$SLURMD_PORT)"
    on "$1" "$BIN/sm-slurmd" -N "$1" -f "$CONF" || die "slurmd on $1 failed to start"
}

wait_nodes() {
    local deadline=$((SECONDS + TIMEOUT)) n st
    for n in $(nodes); do
        while :; do
            st=$(on "$HEAD" sinfo -h -N -n "$n" -o '%T' 2>/dev/null | head -n1)
            case $st in
                idle*|mixed*|allocated*|completing*) break ;;
                *down*|*drain*|*fail*) [[ -n $(running "$RUN/slurmd-$n.pid" sm-slurmd) ]] &&
                    on "$HEAD" scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
            esac
            ((SECONDS < deadline)) || die "node $n not usable after ${TIMEOUT}s (state '${st:-none}')"
            sleep 0.2
        done
    done
}

# one srun step per node prints its hostname, SLURMD_NODENAME and address
check_steps() {
    local out want
    [[ $(on "$HEAD" squeue -h -t R -o %i | wc -l) -eq 0 ]] || { log "jobs are running: srun check skipped"; return 0; }
    out=$(on "$HEAD" timeout 60 srun -Q -N "$NODES" --ntasks-per-node=1 --time=1 --immediate=30 -J sm-check --chdir=/ \
          sh -c 'echo "$(hostname) $SLURMD_NODENAME $(ip -4 -o addr show dev '"$IFACE"' | awk "{print \$4}")"' 2>&1) ||
        die "srun over all nodes failed: $out"
    want=$(for n in $(nodes); do echo "$n $n $(addr_of "$n")/24"; done | sort)
    [[ $(sort <<<"$out") == "$want" ]] || die "srun check: expected
$want
got
$out"
}

up() {
    check
    write_files
    setup_nsdir
    setup_network
    local n
    for n in $(all_nodes); do setup_node "$n"; done
    start_munge
    start_slurmctld
    for n in $(nodes); do start_slurmd "$n"; done
    wait_nodes
    check_steps
    log "up: $(on "$HEAD" sinfo -h -o '%P %a %D %T %C %N' | paste -sd ';'); drivers run on $HEAD:" \
        "scripts/setup-multinode.sh --exec $HEAD -- CMD (shared directory $DIR/shared)"
}

# -- down ----------------------------------------------------------------------------------------

ns_pids() { local ns; for ns in "$@"; do if netns "$ns"; then ip netns pids "$ns" 2>/dev/null || true; fi; done; }

# kill_in NS...: what is still running inside these (our own) network namespaces
kill_in() {
    local pids i
    pids=$(ns_pids "$@" | tr '\n' ' ')
    [[ -z ${pids// } ]] && return 0
    log "stopping what is left on the nodes: $pids"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do [[ -z $(ns_pids "$@") ]] && return 0; sleep 0.1; done
    pids=$(ns_pids "$@" | tr '\n' ' ')
    # shellcheck disable=SC2086
    [[ -z ${pids// } ]] || kill -KILL $pids 2>/dev/null || true
    sleep 0.2
}

down() {
    [[ $EUID -eq 0 ]] || die "must run as root"
    local f n all computes
    for f in "$RUN"/slurmd-*.pid; do [[ -e $f ]] && stop "$f" sm-slurmd; done
    all=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($HEAD|$HUB|sm[0-9]+)$" || true)
    computes=$(grep -E '^sm[0-9]+$' <<<"$all" || true)
    # shellcheck disable=SC2086
    kill_in $computes
    stop "$CTLD_PID" sm-slurmctld
    stop "$MUNGE_PID" sm-munged
    # shellcheck disable=SC2086
    kill_in $all
    for f in "$NSDIR"/*.uts "$NSDIR"/*.mnt; do
        [[ -e $f ]] || continue
        umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
        rm -f "$f"
    done
    for n in $all; do ip netns del "$n" 2>/dev/null || true; done
    if mounted "$NSDIR"; then umount "$NSDIR" 2>/dev/null || umount -l "$NSDIR" || true; fi
    rm -rf "$DIR/state" "$DIR/spool" "$RUN" "$DIR/nodes"
    log "down (logs kept in $LOG; $DIR/shared kept)"
}

status() {
    local ok=0 n p
    for n in $(all_nodes) "$HUB"; do netns "$n" && echo "netns $n: present" || { echo "netns $n: MISSING"; ok=1; }; done
    p=$(running "$MUNGE_PID" sm-munged) && echo "munged: pid $p" || { echo "munged: NOT running"; ok=1; }
    p=$(running "$CTLD_PID" sm-slurmctld) && echo "slurmctld ($HEAD): pid $p" || { echo "slurmctld: NOT running"; ok=1; }
    for n in $(nodes); do
        p=$(running "$RUN/slurmd-$n.pid" sm-slurmd) && echo "slurmd ($n): pid $p" || { echo "slurmd ($n): NOT running"; ok=1; }
    done
    if [[ $ok -eq 0 ]] && ctld_up; then on "$HEAD" sinfo -N -o '%N %T %c %m %P'; else ok=1; fi
    return $ok
}

main() {
    local cmd=${1:---start}; shift || true
    case $cmd in
        --start|--stop)
            mkdir -p "$DIR"; exec 8>"$DIR/.lock"; flock -w 300 8 || die "$DIR/.lock is held"
            if [[ $cmd == --start ]]; then up; else down; fi ;;
        --status) status ;;
        --exec)
            local node=${1:?--exec NODE -- CMD}; shift
            [[ ${1:-} == -- ]] && shift
            mounted "$NSDIR/$node.mnt" || die "no node $node (is the cluster up? nodes: $(all_nodes | paste -sd ' '))"
            on "$node" "$@" ;;
        --env) printf 'SIMCTL_MN_DIR=%s\nSIMCTL_MN_HEAD=%s\nSIMCTL_MN_NODES="%s"\nSIMCTL_MN_IFACE=%s\nSIMCTL_MN_NET=%s\nSLURM_CONF=%s\n' \
                   "$DIR" "$HEAD" "$(nodes | paste -sd ' ')" "$IFACE" "$NET" "$CONF" ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
        *) die "unknown option '$cmd' (--start, --stop, --status, --exec NODE -- CMD, --env)" ;;
    esac
}

main "$@"
