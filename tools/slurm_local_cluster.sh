#!/usr/bin/env bash
# A Slurm cluster of one or more nodes on this machine, for trying and testing the suite's Slurm
# launcher and jobs of several tasks and nodes.
#
#   tools/slurm_local_cluster.sh up   [STATE_DIR] [NODES]  install (Debian packages) if needed,
#                                                          then start NODES nodes (default 1)
#   tools/slurm_local_cluster.sh down [STATE_DIR]          stop every daemon and job, remove it
#   tools/slurm_local_cluster.sh env  [STATE_DIR]          print what a client needs (eval it)
#
# As root, without systemd: munged, slurmctld and one slurmd per node run from STATE_DIR (default
# /tmp/cb_transfer_slurm) with their own key, socket, configuration, spool and logs, so nothing in
# /etc is changed and a system Slurm, if any, is left alone. Every daemon and client binds to
# 127.0.0.1 only (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny): nothing listens beyond
# loopback. No accounting database: job states come from squeue and scontrol, which keep finished
# jobs for MinJobAge seconds.
#
# Several nodes on one machine: Debian's Slurm is built with multiple-slurmd support, so nodes
# n1..nN are one slurmd each (`slurmd -N nI`, its own port, spool, pid and log file, all at
# 127.0.0.1). Jobs must resolve the node names (a job's master address is its first node's name):
# each slurmd starts in a mount namespace of its own where STATE_DIR/hosts (this machine's
# /etc/hosts plus the node names at 127.0.0.1) is bind-mounted over /etc/hosts, which its jobs
# inherit; the machine's own /etc/hosts is never written.
#
# After `up`, run clients with the printed variables, e.g.
#   eval "$(tools/slurm_local_cluster.sh env)"; sinfo; cb-run-suite SUITE --launcher slurm
set -euo pipefail

ACTION=${1:-}
STATE=${2:-/tmp/cb_transfer_slurm}
NODES=${3:-1}
CTLD_PORT=${CB_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${CB_SLURMD_PORT:-16818}  # node nI listens on SLURMD_PORT + I - 1
PARTITION=debug

die() { echo "slurm_local_cluster: $*" >&2; exit 1; }

client_env() {
    echo "export SLURM_CONF=$STATE/slurm.conf"
}

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "needs root to install Debian's slurmctld, slurmd and munge (missing: ${missing[*]})"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install slurmctld, slurmd, slurm-client and munge by hand"
    echo "slurm_local_cluster: installing slurmctld slurmd slurm-client munge (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat >"$STATE/slurm.conf" <<EOF
# Written by tools/slurm_local_cluster.sh: $NODES node(s), loopback only, state in $STATE.
ClusterName=cbtransfer
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd/%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=1
MinJobAge=3600
SlurmdTimeout=60
EOF
    for i in $(seq "$NODES"); do
        echo "NodeName=n$i NodeAddr=127.0.0.1 NodeHostname=localhost Port=$((SLURMD_PORT + i - 1)) CPUs=$cpus RealMemory=$mem State=UNKNOWN" >>"$STATE/slurm.conf"
    done
    echo "PartitionName=$PARTITION Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP" >>"$STATE/slurm.conf"
    # the node names, for the jobs (bind-mounted over /etc/hosts in each slurmd's namespace)
    { cat /etc/hosts; echo "127.0.0.1 $(seq -f 'n%g' -s ' ' "$NODES")"; } >"$STATE/hosts"
}

start_node() {  # start_node NAME: its slurmd in a mount namespace where /etc/hosts names the nodes
    mkdir -p "$STATE/slurmd/$1"
    unshare --mount --propagation private -- sh -c \
        'mount --bind "$1" /etc/hosts && exec slurmd -N "$2"' sh "$STATE/hosts" "$1"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    local log
    log=$(tail -3 "$STATE"/slurm*.log 2>/dev/null)
    stop_daemons
    die "$what did not come up in ${seconds} s; the last lines of its logs:
$log"
}

port_free() {  # port_free PORT: nothing listens on 127.0.0.1:PORT
    python3 -c "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}

up() {
    [ "$(id -u)" -eq 0 ] || die "runs as root (the daemons and jobs run as root, without systemd)"
    install_packages
    if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
        echo "slurm_local_cluster: already up ($STATE)"
        client_env
        return
    fi
    case "$NODES" in ''|*[!0-9]*|0) die "NODES=$NODES: give a positive number of nodes" ;; esac
    for port in "$CTLD_PORT" $(seq "$SLURMD_PORT" $((SLURMD_PORT + NODES - 1))); do
        port_free "$port" || die "port $port on 127.0.0.1 is in use (another cluster up? take it \
down, or choose other ports with CB_SLURMCTLD_PORT and CB_SLURMD_PORT)"
    done
    mkdir -p "$STATE/munge" "$STATE/ctld" "$STATE/slurmd"
    chmod 700 "$STATE/munge"
    # a key of our own, so that the system's munge key and socket are not touched
    [ -f "$STATE/munge/munge.key" ] || head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"
    munged --force --socket="$STATE/munge/munge.socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    write_config
    export SLURM_CONF=$STATE/slurm.conf
    slurmctld -i
    wait_for 30 slurmctld scontrol ping
    for i in $(seq "$NODES"); do
        start_node "n$i"
    done
    for i in $(seq "$NODES"); do
        wait_for 60 "the node n$i" bash -c "sinfo -h -n n$i -o %t | grep -qx idle"
    done
    echo "slurm_local_cluster: up: nodes n[1-$NODES] ($(nproc) CPUs each, one machine), partition $PARTITION, state in $STATE"
    client_env
}

stop_pid() {  # stop_pid PIDFILE
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop_daemons() {
    local pidfile
    for pidfile in "$STATE"/slurmd-*.pid; do
        stop_pid "$pidfile"
    done
    stop_pid "$STATE/slurmctld.pid"
    stop_pid "$STATE/munge/munged.pid"
}

down() {
    if [ -f "$STATE/slurm.conf" ] && command -v scancel >/dev/null 2>&1; then
        export SLURM_CONF=$STATE/slurm.conf
        timeout 10 scancel --full 2>/dev/null || true
        # the jobs' processes end within KillWait (1 s) of the cancel
        for _ in $(seq 60); do
            [ -z "$(timeout 5 squeue -h -t PD,CF,R,CG,S -o %i 2>/dev/null | head -1)" ] && break
            sleep 0.25
        done
    fi
    stop_daemons
    rm -rf "$STATE"
    echo "slurm_local_cluster: down ($STATE removed)"
}

case "$ACTION" in
    up) up ;;
    down) down ;;
    env) client_env ;;
    *) die "usage: $0 up|down|env [STATE_DIR]" ;;
esac
