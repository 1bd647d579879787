#!/usr/bin/env bash
# Distributed width search on one machine, in one line: a KerasTuner chief (it holds the oracle and
# trains nothing) and N workers that each train one trial at a time, all running tools/tune.py.
#
#   tools/launch_tune.sh N [tools/tune.py arguments ...]
#   tools/launch_tune.sh 2 --size small --data ../shared/data/tut17-dev --out runs/tune/small --max-trials 8
#
# The chief gets KERASTUNER_TUNER_ID=chief, worker i KERASTUNER_TUNER_ID=tuner<i>, all
# KERASTUNER_ORACLE_IP=127.0.0.1 and KERASTUNER_ORACLE_PORT (default: a free port). --overwrite goes
# to the chief only, and then the workers start once it has cleared <out>. Every worker profiles each
# trial before training it and reports over-budget ones to the chief as infeasible (docs/tuning.md).
# Logs: <out>/logs/chief.log, <out>/logs/tuner<i>.log; the chief writes the reports into <out>.
# Exit status: the chief's (workers that are still running when it ends are stopped).
#
# Environment: KERASTUNER_ORACLE_PORT; TUNE_WORKER_GPUS="0 1" gives worker i GPU i (default: all
# workers see every GPU); LAUNCH_WAIT (seconds to wait for the chief's oracle, default 900);
# PYTHON (default: python). Several machines: docs/scaling.md.
set -u

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
    echo "usage: $0 N_WORKERS [tools/tune.py arguments ...]" >&2
    exit 2
fi
n_workers=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}

# --out (default runs/tune/<size>) for the logs; --overwrite only for the chief
out="" size="small" prev="" worker_args=() overwrite=0
for a in "$@"; do
    case "$prev" in --out) out=$a ;; --size) size=$a ;; esac
    case "$a" in --out=*) out=${a#--out=} ;; --size=*) size=${a#--size=} ;; esac
    if [ "$a" = "--overwrite" ]; then overwrite=1; else worker_args+=("$a"); fi
    prev=$a
done
out=${out:-runs/tune/$size}
logs="$out/logs"
mkdir -p "$logs"

port=${KERASTUNER_ORACLE_PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=$port

pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KERASTUNER_TUNER_ID=chief CUDA_VISIBLE_DEVICES="" "$py" "$here/tune.py" "$@" >"$logs/chief.log" 2>&1 &
chief=$!
pids+=("$chief")
echo "chief (oracle on 127.0.0.1:$port, pid $chief): $logs/chief.log"

# with --overwrite, wait until the chief has cleared the folder and its oracle listens (workers wait for
# the oracle anyway, over gRPC, so without --overwrite they start at once)
deadline=$((SECONDS + ${LAUNCH_WAIT:-900}))
until [ $overwrite -eq 0 ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$chief" 2>/dev/null; then
        wait "$chief"; rc=$?
        echo "the chief ended (status $rc) before its oracle listened; see $logs/chief.log:" >&2
        tail -n 5 "$logs/chief.log" >&2
        exit $((rc == 0 ? 1 : rc))
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "the chief's oracle did not listen within ${LAUNCH_WAIT:-900} s; see $logs/chief.log" >&2
        exit 1
    fi
    sleep 1
done

read -r -a gpus <<<"${TUNE_WORKER_GPUS:-}"
for ((i = 0; i < n_workers; i++)); do
    if [ ${#gpus[@]} -gt 0 ]; then
        KERASTUNER_TUNER_ID=tuner$i CUDA_VISIBLE_DEVICES=${gpus[$((i % ${#gpus[@]}))]} \
            "$py" "$here/tune.py" "${worker_args[@]}" >"$logs/tuner$i.log" 2>&1 &
    else
        KERASTUNER_TUNER_ID=tuner$i "$py" "$here/tune.py" "${worker_args[@]}" >"$logs/tuner$i.log" 2>&1 &
    fi
    pids+=("$!")
    echo "worker tuner$i (pid $!): $logs/tuner$i.log"
done

# the chief ends when every worker has been told the search is over; if all workers are gone and the
# chief is still waiting (a worker crashed: KerasTuner's chief waits for every tuner it has seen), stop it
idle=0
while kill -0 "$chief" 2>/dev/null; do
    alive=0
    for pid in "${pids[@]:1}"; do
        kill -0 "$pid" 2>/dev/null && alive=1
    done
    if [ $alive -eq 0 ]; then
        idle=$((idle + 1))
        if [ $idle -ge 90 ]; then
            echo "every worker has ended but the chief still waits (a worker failed?); stopping it." \
                 "Rerun the same command to resume the search; see $logs/tuner*.log" >&2
            kill "$chief" 2>/dev/null
        fi
    fi
    sleep 1
done
wait "$chief"
rc=$?
for pid in "${pids[@]:1}"; do
    wait "$pid" || echo "a worker (pid $pid) ended with status $?; see its log" >&2
done
if [ $rc -eq 0 ]; then
    grep -h "^Best\|^Best configuration\|^Train it" "$logs/chief.log"
else
    echo "the chief ended with status $rc; see $logs/chief.log" >&2
fi
exit $rc
