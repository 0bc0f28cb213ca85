#!/usr/bin/env bash
# Run the three-node cluster of deploy/nats on this machine, in the
# foreground, until Ctrl-C: clients on 127.0.0.1:4222-4224 (or from
# $BYOM_LOCAL_CLUSTER_PORT), routes 2000 above, stores and logs under
# $BYOM_LOCAL_CLUSTER_DIR (./.byom/cluster).
# The passwords come from the environment, as in deploy/env.example:
#
#   set -a; . deploy/.env; set +a; deploy/local-cluster.sh
#
# Then start each service with its own user, for instance:
#   NATS_URL="nats://router:$BYOM_NATS_ROUTER_PASSWORD@127.0.0.1:4222,nats://router:$BYOM_NATS_ROUTER_PASSWORD@127.0.0.1:4223" \
#   BYOM_STREAM_REPLICAS=3 python -m services.router
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
data=${BYOM_LOCAL_CLUSTER_DIR:-./.byom/cluster}
for role in ROUTER LIMITER REGISTRY METERING ADMIN APP OPS SYS; do
  variable="BYOM_NATS_${role}_PASSWORD"
  if [ -z "${!variable:-}" ]; then
    echo "$variable is not set: see deploy/env.example" >&2
    exit 1
  fi
done

port=${BYOM_LOCAL_CLUSTER_PORT:-4222}
routes=""
for i in 0 1 2; do routes="$routes${routes:+,}nats://127.0.0.1:$((port + 2000 + i))"; done
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  mkdir -p "$data/nats-$i"
  NATS_SERVER_NAME="nats-$i" nats-server -c "$here/nats/node.conf" \
    -a 127.0.0.1 -p $((port + i - 1)) \
    -cluster "nats://127.0.0.1:$((port + 2000 + i - 1))" -routes "$routes" \
    -sd "$data/nats-$i" -l "$data/nats-$i.log" &
done
echo "cluster: nats://127.0.0.1:$port,nats://127.0.0.1:$((port + 1)),nats://127.0.0.1:$((port + 2))"
echo "logs: $data/nats-{1,2,3}.log"
wait
