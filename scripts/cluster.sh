#!/usr/bin/env bash
# Local Payraft cluster: start, stop, status, kill ID, restart ID (CONTRACT.md).
#   scripts/cluster.sh start [--nodes N] [--dir DIR] [--no-sandbox]
#   scripts/cluster.sh stop|status [--dir DIR]
#   scripts/cluster.sh kill ID|restart ID [--dir DIR]
# Ports: node i listens on API BASE+100+i, peer BASE+200+i, HTTP BASE+300+i, with BASE from
# PAYRAFT_PORT_BASE (default 7000). Everything of a cluster lives in DIR (default run/cluster):
# secrets, the membership, each node's data, log and pid.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

verb="${1:-}"
[ -n "$verb" ] || usage
shift
nodes=3
nodes_given=0
dir="run/cluster"
sandbox=1
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || usage; nodes="$2"; nodes_given=1; shift 2 ;;
    --dir) [ $# -ge 2 ] || usage; dir="$2"; shift 2 ;;
    --no-sandbox) sandbox=0; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$target" ] || usage; target="$1"; shift ;;
  esac
done
case "$nodes" in ''|*[!0-9]*) die "--nodes wants a number from 1 to 5" ;; esac
[ "$nodes" -ge 1 ] && [ "$nodes" -le 5 ] || die "--nodes wants a number from 1 to 5"
base="${PAYRAFT_PORT_BASE:-7000}"
case "$base" in ''|*[!0-9]*) die "PAYRAFT_PORT_BASE must be a number" ;; esac
[ "$base" -ge 1024 ] && [ "$base" -le 64000 ] || die "PAYRAFT_PORT_BASE must be 1024..64000"
# Only start makes the directory: the other verbs on a directory that is not there say so.
[ "$verb" != start ] || mkdir -p "$dir"
if [ -d "$dir" ]; then dir=$(cd "$dir" && pwd); fi
payd="${PAYRAFT_PAYD:-$root/build/bin/payd}"
shards="${PAYRAFT_SHARDS:-16}"

api_port() { echo $((base + 100 + $1)); }
peer_port() { echo $((base + 200 + $1)); }
http_port() { echo $((base + 300 + $1)); }
pid_of() { cat "$dir/node$1/payd.pid" 2>/dev/null || true; }
# Whether process $1 runs. One that has exited but is not reaped yet (a zombie, until its parent
# collects it: init in a container took 1.6 s to) counts as gone once its last thread is gone
# too: the main thread turns zombie while the others may still be exiting with the process's
# files (its ports, RocksDB's lock) open.
alive() {
  local state
  state=$(awk '/^State:/ { s = $2 } /^Threads:/ { t = $2 } END { print s " " t }' \
    "/proc/$1/status" 2>/dev/null) || return 1
  case "$state" in
    "Z 1" | "X 1") return 1 ;;
    *) return 0 ;;
  esac
}
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && alive "$p"; }
members() { cat "$dir/members" 2>/dev/null | wc -l; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

secret() {
  # 32 random bytes as hex, readable by the owner only.
  [ -s "$1" ] && return 0
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1"; echo >> "$1")
}

bootstrap() {
  [ -x "$payd" ] || die "$payd is missing: run scripts/test.sh or cmake --build build first"
  if [ ! -f "$dir/members" ]; then
    secret "$dir/admin.secret"
    secret "$dir/cluster.secret"
    head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster.id"
    echo "$shards" > "$dir/shards"
    : > "$dir/members"
    for i in $(seq 1 "$nodes"); do
      echo "$i,127.0.0.1:$(peer_port "$i"),127.0.0.1:$(api_port "$i"),127.0.0.1:$(http_port "$i")" \
        >> "$dir/members"
    done
  fi
}

start_node() {
  local i=$1
  if running "$i"; then echo "node $i: already running (pid $(pid_of "$i"))"; return 0; fi
  grep -q "^$i," "$dir/members" || die "node $i is not a member of the cluster in $dir"
  for p in $(api_port "$i") $(peer_port "$i"); do
    port_open "$p" && die "node $i: port $p is in use"
  done
  mkdir -p "$dir/node$i"
  local args=(--node-id "$i" --data-dir "$dir/node$i/data"
    --api "127.0.0.1:$(api_port "$i")" --peer "127.0.0.1:$(peer_port "$i")"
    --http "127.0.0.1:$(http_port "$i")" --cluster-id "$(cat "$dir/cluster.id")"
    --cluster-secret-file "$dir/cluster.secret" --admin-secret-file "$dir/admin.secret"
    --shards "$(cat "$dir/shards")" --app-rate "${PAYRAFT_APP_RATE:-100000}")
  [ -z "${PAYRAFT_SNAPSHOT_BYTES:-}" ] || args+=(--snapshot-bytes "$PAYRAFT_SNAPSHOT_BYTES")
  [ -z "${PAYRAFT_RAFT_LINK_BYTES:-}" ] || args+=(--raft-link-bytes "$PAYRAFT_RAFT_LINK_BYTES")
  while IFS= read -r m; do args+=(--member "$m"); done < "$dir/members"
  nohup "$payd" "${args[@]}" >> "$dir/node$i/payd.log" 2>&1 &
  echo $! > "$dir/node$i/payd.pid"
}

wait_up() {
  local i=$1 deadline=$((SECONDS + 30))
  until port_open "$(api_port "$i")"; do
    running "$i" || die "node $i exited: see $dir/node$i/payd.log ($(tail -n 1 "$dir/node$i/payd.log"))"
    [ $SECONDS -lt $deadline ] || die "node $i did not open its API port within 30 s"
    sleep 0.1
  done
}

stop_node() {
  local i=$1 p
  p=$(pid_of "$i")
  if [ -z "$p" ] || ! alive "$p"; then rm -f "$dir/node$i/payd.pid"; return 0; fi
  kill -TERM "$p"
  for _ in $(seq 1 300); do alive "$p" || break; sleep 0.05; done
  if alive "$p"; then
    echo "node $i: did not stop within 15 s, killing" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$dir/node$i/payd.pid"
}

need_target() {
  case "$target" in ''|*[!0-9]*) die "$verb wants a node ID" ;; esac
  [ -f "$dir/members" ] || die "no cluster in $dir"
  grep -q "^$target," "$dir/members" || die "node $target is not a member of the cluster in $dir"
}

case "$verb" in
  start)
    bootstrap
    n=$(members)
    if [ "$nodes_given" -eq 1 ] && [ "$n" -ne "$nodes" ]; then
      die "$dir holds a $n-node cluster; --nodes $nodes does not match"
    fi
    if [ "$sandbox" -eq 1 ]; then
      echo "sandbox: paysim is not built yet (the Payments issue); starting without it"
    fi
    for i in $(seq 1 "$n"); do start_node "$i"; done
    for i in $(seq 1 "$n"); do wait_up "$i"; done
    echo "cluster of $n nodes up in $dir"
    for i in $(seq 1 "$n"); do
      echo "  node $i: api 127.0.0.1:$(api_port "$i")  peer 127.0.0.1:$(peer_port "$i")  pid $(pid_of "$i")"
    done
    echo "  admin secret: $dir/admin.secret"
    ;;
  stop)
    [ -f "$dir/members" ] || { echo "no cluster in $dir"; exit 0; }
    for i in $(seq 1 "$(members)"); do stop_node "$i"; done
    echo "cluster in $dir stopped"
    ;;
  status)
    [ -f "$dir/members" ] || die "no cluster in $dir"
    for i in $(seq 1 "$(members)"); do
      if running "$i"; then state="running (pid $(pid_of "$i"))"; else state="down"; fi
      echo "node $i: $state  api 127.0.0.1:$(api_port "$i")"
    done
    if [ -x "$root/build/bin/payctl" ]; then
      for i in $(seq 1 "$(members)"); do
        if running "$i"; then
          "$root/build/bin/payctl" --server "127.0.0.1:$(api_port "$i")" \
            --admin-secret-file "$dir/admin.secret" cluster.status && break
        fi
      done
    fi
    ;;
  kill)
    need_target
    p=$(pid_of "$target")
    if [ -n "$p" ] && alive "$p"; then
      kill -KILL "$p"
      while alive "$p"; do sleep 0.05; done
      echo "node $target: killed (pid $p)"
    else
      echo "node $target: not running"
    fi
    rm -f "$dir/node$target/payd.pid"
    ;;
  restart)
    need_target
    stop_node "$target"
    start_node "$target"
    wait_up "$target"
    echo "node $target: restarted (pid $(pid_of "$target"))"
    ;;
  join|remove|rolling-restart)
    die "$verb: not yet implemented (the Operations issue)"
    ;;
  *) usage ;;
esac
