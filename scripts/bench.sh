#!/usr/bin/env bash
# Payraft vs PostgreSQL, side by side, on this machine (the Performance issue).
#   scripts/bench.sh [--seconds S] [--connections "1 16 64 256"] [--keep]
# Builds Release into build-release/, starts a fresh 3-node cluster (fsync on, defaults) and
# a 1-node one, creates an app, runs paybench (order.create) at each concurrency: on the
# 3 nodes with one request in flight per connection (as pgbench), with 8 pipelined, and with 8
# pipelined sent to each shard's leader (--route, what a smart client does); on the 1 node with
# 8 pipelined. Then starts a fresh PostgreSQL 15 (installed with apt if missing) in a temp dir
# on 127.0.0.1 with fsync=on, synchronous_commit=on and an orders table with the same columns,
# unique (app_id, merchant_order_no) and an (app_id, created_at) index, and runs pgbench
# inserting one order per transaction at the same concurrencies. Prints one table, and the
# Payraft nodes' CPU per order of each run. Cleans up after itself unless --keep. Ports:
# PAYRAFT_PORT_BASE (default 7000) + 890..1151: PostgreSQL +890, the 3-node cluster's from +901
# (cluster.sh with base +800), the 1-node cluster's from +951 (base +850).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/bench-app.sh
. scripts/bench-app.sh

seconds=10
conns="1 16 64 256"
keep=0
usage() {
  echo "usage: scripts/bench.sh [--seconds S (1..600)] [--connections \"1 16 64 256\" (each 1..1024)] [--keep]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds="$2"; shift 2 ;;
    --connections) [ $# -ge 2 ] || usage; conns="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) usage ;;
  esac
done
bench_number bench.sh --seconds "$seconds" 1 600
[ -n "${conns//[[:space:]]/}" ] || usage
for c in $conns; do bench_number bench.sh "--connections (each)" "$c" 1 1024; done
bench_number bench.sh PAYRAFT_PORT_BASE "${PAYRAFT_PORT_BASE:-7000}" 1024 63100

base=$(( ${PAYRAFT_PORT_BASE:-7000} + 800 ))
work=$(mktemp -d /tmp/payraft-bench-XXXXXX)
pg_port=$((base + 90))
cleanup() {
  set +e
  PAYRAFT_PORT_BASE=$base PAYRAFT_PAYD="$root/build-release/bin/payd" scripts/cluster.sh stop --dir "$work/c3" >/dev/null 2>&1
  PAYRAFT_PORT_BASE=$((base + 50)) PAYRAFT_PAYD="$root/build-release/bin/payd" scripts/cluster.sh stop --dir "$work/c1" >/dev/null 2>&1
  [ -d "$work/pg" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$work/pg" stop -m fast >/dev/null 2>&1
  [ "$keep" -eq 1 ] || rm -rf "$work"
}
trap cleanup EXIT

echo "bench: building Release into build-release/"
bench_build_release
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  echo "bench: installing postgresql-15"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
fi
payctl="$root/build-release/bin/payctl"
paybench="$root/build-release/bin/paybench"
# The host's speed, for reading the table against runs on other hosts: VMs of one machine type
# have differed by 2x (docs/benchmarks.md, "On a slower host").
echo "bench: host speed (bench_apply)"
host_speed=$("$root/build-release/bin/bench_apply" --commands 300000 --batch 64 --dir "$work/apply" \
  2>/dev/null | sed -n 's/^ *\([0-9]*\) commands\/s.*/\1/p')

# CPU time (user + system, in clock ticks) used so far by the payd processes of cluster dir $1.
nodes_cpu_ticks() {
  local f total=0 fields
  for f in "$1"/node*/payd.pid; do
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may hold spaces, so count
    # from the closing parenthesis.
    fields=$(sed 's/.*) //' "/proc/$(cat "$f")/stat")
    total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# One Payraft cluster: start, create the app, run paybench at every concurrency for each
# variant ("depth:flags"; the result is stored under NAME/depth/flags). The nodes' CPU is
# sampled after the warm-up and at the end, so that CPU per order covers the measured seconds:
# a throughput figure alone does not show whether the nodes were saturated, nor how much work
# an order cost at that load.
# run_payraft NAME NODES PORT_BASE VARIANT...
declare -A tput p99 p50 cpu_us
warmup=2
ticks_per_s=$(getconf CLK_TCK)
run_payraft() {
  local name=$1 nodes=$2 pbase=$3 dir="$work/$1"
  shift 3
  PAYRAFT_PORT_BASE=$pbase PAYRAFT_APP_RATE=0 PAYRAFT_PAYD="$root/build-release/bin/payd" \
    scripts/cluster.sh start --nodes "$nodes" --no-sandbox --dir "$dir" >/dev/null
  local servers="" i
  for i in $(seq 1 "$nodes"); do servers="$servers,127.0.0.1:$((pbase + 100 + i))"; done
  servers=${servers#,}
  local secret="$dir/bench.secret"
  bench_app "$payctl" "127.0.0.1:$((pbase + 101))" "$dir/admin.secret" benchapp "$secret"
  for i in $(seq 1 "$nodes"); do
    bench_wait_leaders "$payctl" "127.0.0.1:$((pbase + 100 + i))" "$dir/admin.secret" ||
      { echo "bench.sh: node $i does not know every shard's leader after 30 s" >&2; exit 1; }
  done
  local c variant depth flags key json pb t0 t1 ops
  for c in $conns; do
    for variant in "$@"; do
      depth=${variant%%:*}
      flags=${variant#*:}
      key="$name/$depth/$flags,$c"
      # shellcheck disable=SC2086 # flags is a word list on purpose
      "$paybench" --servers "$servers" --app benchapp --secret-file "$secret" \
        --connections "$c" --depth "$depth" --seconds "$seconds" --warmup "$warmup" --json $flags \
        > "$work/paybench.json" &
      pb=$!
      sleep "$warmup"
      t0=$(nodes_cpu_ticks "$dir")
      wait "$pb"
      t1=$(nodes_cpu_ticks "$dir")
      json=$(cat "$work/paybench.json")
      tput[$key]=$(echo "$json" | sed -n 's/.*"throughput_ops_s": \([0-9.]*\).*/\1/p')
      p99[$key]=$(echo "$json" | sed -n 's/.*"p99_ms": \([0-9.]*\).*/\1/p')
      p50[$key]=$(echo "$json" | sed -n 's/.*"p50_ms": \([0-9.]*\).*/\1/p')
      ops=$(echo "$json" | sed -n 's/.*"ops": \([0-9]*\).*/\1/p')
      cpu_us[$key]=$(awk -v t=$((t1 - t0)) -v hz="$ticks_per_s" -v n="${ops:-0}" \
        'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "?" }')
      echo "  $name c=$c depth=$depth $flags: $json"
      echo "    nodes' CPU: $(awk -v t=$((t1 - t0)) -v hz="$ticks_per_s" -v s="$seconds" \
        'BEGIN { printf "%.2f", t / hz / s }') cores, ${cpu_us[$key]} us per order"
    done
  done
  PAYRAFT_PORT_BASE=$pbase PAYRAFT_PAYD="$root/build-release/bin/payd" scripts/cluster.sh stop --dir "$dir" >/dev/null
}

echo "bench: Payraft, 3 nodes"
run_payraft c3 3 "$base" "1:" "8:" "8:--route"
echo "bench: Payraft, 1 node (no replication)"
run_payraft c1 1 $((base + 50)) "8:"

echo "bench: PostgreSQL 15 (fsync=on, synchronous_commit=on) on port $pg_port"
pgbin=/usr/lib/postgresql/15/bin
mkdir -p "$work/pg" && chown postgres "$work" "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -A trust >/dev/null
cat >> "$work/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
fsync = on
synchronous_commit = on
max_connections = 300
unix_socket_directories = '$work'
CONF
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
psql=(runuser -u postgres -- /usr/bin/psql -q -h 127.0.0.1 -p "$pg_port")
"${psql[@]}" -c "CREATE DATABASE bench" postgres
"${psql[@]}" bench <<'SQL'
CREATE SEQUENCE mono;
CREATE TABLE orders (
  order_id text PRIMARY KEY, app_id text NOT NULL, merchant_order_no text NOT NULL,
  amount bigint NOT NULL, currency text NOT NULL, subject text NOT NULL, channel text NOT NULL,
  status text NOT NULL, pay_url text, channel_trade_no text, refunded_amount bigint NOT NULL,
  created_at bigint NOT NULL, paid_at bigint, expire_at bigint NOT NULL,
  UNIQUE (app_id, merchant_order_no));
CREATE INDEX orders_app_created ON orders (app_id, created_at);
SQL
cat > "$work/insert.sql" <<'SQL'
\set a random(1000, 1999)
INSERT INTO orders VALUES ('P' || nextval('mono'), 'benchapp', 'pg-' || currval('mono'), :a, 'CNY',
  'paybench', 'wechat', 'WAITING', NULL, NULL, 0,
  (extract(epoch from now()) * 1000)::bigint, NULL, (extract(epoch from now()) * 1000)::bigint + 1800000);
SQL
chown postgres "$work/insert.sql"
for c in $conns; do
  jobs=$(( c < 2 ? 1 : 2 ))
  rm -f "$work"/pglog*
  (cd "$work" && runuser -u postgres -- /usr/bin/pgbench -n -h 127.0.0.1 -p "$pg_port" -U postgres \
    -c "$c" -j "$jobs" -T "$seconds" -f insert.sql --log --log-prefix=pglog bench > "$work/pgbench.out" 2>&1)
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -1)
  p=$(cat "$work"/pglog* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", a[i]/1000}')
  echo "  postgres c=$c: tps $tps p99 ${p} ms"
  tput[pg,$c]=$tps
  p99[pg,$c]=$p
done

cell() { printf '%8.0f (%7s)' "${tput[$1]:-0}" "${p99[$1]:-?}"; }
printf '\nthroughput in orders/s (p99 latency in ms); depth = requests in flight per connection\n'
printf '%-5s | %-18s | %-18s | %-18s | %-18s | %-18s | %s\n' "conns" "3 nodes, depth 1" \
  "3 nodes, depth 8" "3 nodes, 8, routed" "1 node, depth 8" "PostgreSQL" "3 nodes / PostgreSQL"
printf -- '------|--------------------|--------------------|--------------------|--------------------|--------------------|---------------------\n'
for c in $conns; do
  best=${tput[c3/8/--route,$c]:-0}
  ratio=$(awk -v a="$best" -v b="${tput[pg,$c]:-0}" -v d="${tput[c3/1/,$c]:-0}" \
    'BEGIN { if (b > 0) printf "%.2fx (depth 1: %.2fx)", a / b, d / b; else print "n/a" }')
  printf '%-5s | %s | %s | %s | %s | %s | %s\n' "$c" "$(cell "c3/1/,$c")" "$(cell "c3/8/,$c")" \
    "$(cell "c3/8/--route,$c")" "$(cell "c1/8/,$c")" "$(cell "pg,$c")" "$ratio"
done
for c in $conns; do
  [ "$c" = 1 ] && echo "one sequential client on 3 nodes: p50 ${p50[c3/1/,1]:-?} ms, p99 ${p99[c3/1/,1]:-?} ms"
done
# The same work costs more CPU per order in smaller raft entries and loop turns (fewer
# connections): docs/benchmarks.md, optimisation log.
cpu_line=""
for c in $conns; do cpu_line="$cpu_line, ${cpu_us[c3/8/--route,$c]:-?} us at $c conns"; done
echo "the 3 nodes' CPU per order, depth 8 routed: ${cpu_line#, }"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "host speed: bench_apply --commands 300000 --batch 64: ${host_speed:-?} commands/s (the host of the targets table in docs/benchmarks.md: 469,000-538,000)"
