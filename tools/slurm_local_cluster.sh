#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for trying and testing the suite's Slurm launcher.
#
#   tools/slurm_local_cluster.sh up   [STATE_DIR]   install (Debian packages) if needed, then start
#   tools/slurm_local_cluster.sh down [STATE_DIR]   stop every daemon and job, remove STATE_DIR
#   tools/slurm_local_cluster.sh env  [STATE_DIR]   print the variables a client needs (eval it)
#
# As root, without systemd: munged, slurmctld and slurmd run from STATE_DIR (default
# /tmp/cb_transfer_slurm) with their own key, socket, configuration, spool and logs, so nothing in
# /etc is changed and a system Slurm, if any, is left alone. Every daemon and client binds to
# 127.0.0.1 only (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny): nothing listens beyond
# loopback. No accounting database: job states come from squeue and scontrol, which keep finished
# jobs for MinJobAge seconds.
#
# After `up`, run clients with the printed variables, e.g.
#   eval "$(tools/slurm_local_cluster.sh env)"; sinfo; cb-run-suite SUITE --launcher slurm
set -euo pipefail

ACTION=${1:-}
STATE=${2:-/tmp/cb_transfer_slurm}
CTLD_PORT=${CB_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${CB_SLURMD_PORT:-16818}
NODE=localhost
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
# Written by tools/slurm_local_cluster.sh: one node, loopback only, state in $STATE.
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
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
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
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
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
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
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
    slurmd -N "$NODE"
    wait_for 60 "the node $NODE" bash -c "sinfo -h -n $NODE -o %t | grep -qx idle"
    echo "slurm_local_cluster: up: node $NODE ($(nproc) CPUs), partition $PARTITION, state in $STATE"
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
    stop_pid "$STATE/slurmd.pid"
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
