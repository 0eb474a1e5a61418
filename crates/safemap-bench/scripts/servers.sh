#!/usr/bin/env bash
# Installs, and starts in the foreground, the servers the `server` workload of
# safemap-bench compares safemap with: etcd 3.4 and Redis 7 from Debian's
# packages. Loopback only; every file lives in the directory it is given.
#
#   servers.sh install                         apt-get update + install (skipped if present)
#   servers.sh check                           print which servers are available
#   servers.sh redis DIR PORT durable|relaxed  exec redis-server on 127.0.0.1:PORT
#   servers.sh etcd DIR PORT PEER_PORT         exec etcd on 127.0.0.1:PORT
#   servers.sh etcd-member DIR NAME PORT PEER_PORT CLUSTER
#                                              exec one member of a new cluster
#                                              (CLUSTER: name=http://127.0.0.1:PEER,...)
#
# durable: redis with appendonly yes + appendfsync always; etcd's defaults
# (fsync per commit). relaxed: redis appendfsync everysec; for etcd (3.4 has
# no switch to skip fsync) the caller puts DIR on tmpfs. The benchmark
# starts each server through this script and stops it by its process id.
set -euo pipefail

cmd=${1:-}
case "$cmd" in
  install)
    need=()
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    if [ ${#need[@]} -eq 0 ]; then
      echo "servers.sh: etcd and redis-server already installed"
      exit 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      echo "servers.sh: cannot install ${need[*]}: needs root and apt-get" >&2
      exit 1
    fi
    echo "servers.sh: installing ${need[*]} from Debian's packages" >&2
    apt-get update -qq >&2
    # Debian's packages try to start a system service; policy-rc.d 101 stops that.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 || status=$?
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
    exit $status
    ;;
  check)
    for b in redis-server etcd; do
      if command -v "$b" >/dev/null 2>&1; then echo "$b: $(command -v "$b")"; else echo "$b: missing"; fi
    done
    ;;
  redis)
    dir=$2 port=$3 mode=$4
    mkdir -p "$dir"
    if [ "$mode" = durable ]; then fsync=always; else fsync=everysec; fi
    exec redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' \
      --appendonly yes --appendfsync "$fsync" --protected-mode yes --daemonize no \
      --logfile "$dir/redis.log"
    ;;
  etcd)
    dir=$2 port=$3 peer=$4
    mkdir -p "$dir"
    exec etcd --name bench --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "bench=http://127.0.0.1:$peer" --log-level error \
      >"$dir/etcd.log" 2>&1
    ;;
  etcd-member)
    dir=$2 name=$3 port=$4 peer=$5 cluster=$6
    mkdir -p "$dir"
    exec etcd --name "$name" --data-dir "$dir/etcd-$name" \
      --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token safemap-bench \
      --log-level error >"$dir/etcd-$name.log" 2>&1
    ;;
  *)
    echo "usage: servers.sh install | check | redis DIR PORT durable|relaxed | etcd DIR PORT PEER_PORT | etcd-member DIR NAME PORT PEER_PORT CLUSTER" >&2
    exit 2
    ;;
esac
