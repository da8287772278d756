# Sourced by bench.sh and soak.sh: the Release build they measure, and an app on a fresh
# cluster for a load run, started once every shard has its leader.

#   bench_number SCRIPT NAME VALUE MIN MAX
# Exits the script (status 2) with a one-line reason unless VALUE is a decimal number in
# MIN..MAX: the scripts' arguments and environment are bounded like any other input. A leading
# zero is refused: $(( )) would read "010" as octal.
bench_number() {
  local script=$1 name=$2 value=$3 min=$4 max=$5
  case "$value" in
    '' | *[!0-9]* | 0?*) ;;
    *) [ "${#value}" -le 9 ] && [ "$value" -ge "$min" ] && [ "$value" -le "$max" ] && return 0 ;;
  esac
  echo "$script: $name wants a number from $min to $max (got '$value')" >&2
  exit 2
}

# Install what is missing and build payd, paybench and payctl in Release into build-release/.
bench_build_release() {
  scripts/deps.sh
  cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-release -j "$(nproc)" --target payd paybench payctl >/dev/null
}

#   bench_app PAYCTL SERVER ADMIN_SECRET_FILE APP_ID SECRET_OUT
# Retries for up to 20 s while the cluster elects its meta leader, writes the app's secret
# (shown once) to SECRET_OUT, readable by the owner only; exits the script with a message if
# the app cannot be created.
bench_app() {
  local payctl=$1 server=$2 admin=$3 app=$4 out_file=$5 out=""
  for _ in $(seq 1 100); do
    out=$("$payctl" --server "$server" --admin-secret-file "$admin" --json app.create \
      --app-id "$app" --name "$app" --notify-url "https://$app.example/notify" \
      --channels wechat 2>/dev/null) && break
    sleep 0.2
  done
  (umask 077; echo "$out" | sed -n 's/.*"secret": *"\([0-9a-f]*\)".*/\1/p' > "$out_file")
  [ -s "$out_file" ] || { echo "$(basename "$0"): could not create app $app on $server: $out" >&2; exit 1; }
}

#   bench_wait_leaders PAYCTL SERVER ADMIN_SECRET_FILE
# Waits (up to 30 s) until SERVER's cluster.status knows a leader for every shard and the
# meta group. A load started before that gets UNAVAILABLE ("no leader for this data yet")
# for the shards still electing, as a soak's first half second did (docs/benchmarks.md).
# Returns 1 if the leaders are not all known in time.
bench_wait_leaders() {
  local payctl=$1 server=$2 admin=$3 status
  for _ in $(seq 1 600); do
    if status=$("$payctl" --server "$server" --admin-secret-file "$admin" --json cluster.status \
        2>/dev/null) && ! echo "$status" | grep -q '"leader": null'; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}
