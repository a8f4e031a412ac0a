#!/usr/bin/env bash
# A one-node SLURM cluster on localhost for the workflow's SLURM test (tests/python/test_slurm.py):
#
#   bash tests/slurm/cluster.sh install        # apt: slurm-wlm munge (needs root; done by scripts/setup in CI)
#   bash tests/slurm/cluster.sh start DIR      # munged + slurmctld + slurmd, state and logs in DIR
#   sbatch ...                                 # clients find the cluster through /etc/slurm/slurm.conf
#   bash tests/slurm/cluster.sh stop DIR       # stops the three daemons, removes that link, leaves DIR
#
# The config is DIR/slurm.conf, linked from /etc/slurm/slurm.conf (job steps started inside a job,
# such as the executor plugin's srun, look there); an existing /etc/slurm/slurm.conf that is not
# such a link is refused rather than replaced.
#
# No accounting database: job states come from squeue (MinJobAge keeps finished jobs listed, so
# the Snakemake executor plugin's `--slurm-status-command squeue` sees how each job ended).
set -euo pipefail

cmd=${1:?usage: cluster.sh install | start DIR | stop DIR}

need_root() {
    if [[ $(id -u) != 0 ]]; then
        echo "error: cluster.sh $cmd needs root (it runs munged, slurmctld and slurmd)" >&2
        exit 1
    fi
}

case "$cmd" in
install)
    need_root
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
    fi
    ;;
start)
    need_root
    dir=$(realpath -m "${2:?usage: cluster.sh start DIR}")
    mkdir -p "$dir"/{state,spool,munge,log}
    host=$(hostname -s)
    cpus=$(nproc)
    # Leave 10 % of the memory to the system: a node announcing more than it has is drained.
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$dir/slurm.conf" <<CONF
ClusterName=perturbgen-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket.2
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=7200
KillWait=5
InactiveLimit=0
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    if [[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
        echo "error: /etc/slurm/slurm.conf exists and is not this test's link; not replacing a real cluster's config" >&2
        exit 1
    fi
    mkdir -p /etc/slurm
    ln -sfn "$dir/slurm.conf" /etc/slurm/slurm.conf
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        chmod 400 /etc/munge/munge.key
    fi
    chown -R root "$dir"
    munged --force --socket="$dir/munge/munge.socket.2" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF" -N "$host"
    # Wait for the node to come up idle.
    for _ in $(seq 60); do
        if sinfo -h -N -o '%T' 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
            echo "SLURM up: $(sinfo -h -N -o '%N %c CPUs %m MB %T')"
            exit 0
        fi
        sleep 1
    done
    echo "error: the SLURM node did not come up in 60 s; see $dir/log/" >&2
    sinfo -N -l >&2 || true
    exit 1
    ;;
stop)
    dir=$(realpath -m "${2:?usage: cluster.sh stop DIR}")
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [[ -s $pidfile ]]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    sleep 1
    if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$dir/slurm.conf" ]]; then
        rm -f /etc/slurm/slurm.conf
    fi
    ;;
*)
    echo "error: cluster.sh: unknown command $cmd (install | start DIR | stop DIR)" >&2
    exit 2
    ;;
esac
