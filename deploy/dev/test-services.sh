#!/usr/bin/env bash
# Makes sure every service the test suite needs is there, starting what it can:
# PostgreSQL, Redis, a Docker engine with the locally built test images, Debian's
# Chromium (browser tests) and promtool (metrics format checks).
# Stops with a message naming the missing service; it never lets tests skip silently.
set -euo pipefail

DOCKER_DIR="${OPSPORTAL_TEST_DOCKER_DIR:-/tmp/opsportal-test-docker}"
DOCKER_SOCK="$DOCKER_DIR/docker.sock"
PG_HOST="${OPSPORTAL_TEST_PG_HOST:-127.0.0.1}"
REDIS_PORT="${OPSPORTAL_TEST_REDIS_PORT:-6379}"

say() { printf '[test-services] %s\n' "$*"; }
fail() { printf '[test-services] ERROR: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq || return 1; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- PostgreSQL and its client tools ----------------------------------------------------
command -v pg_dump >/dev/null || apt_install postgresql-client || true
if ! pg_isready -q -h "$PG_HOST" -p 5432; then
  say "PostgreSQL is not answering on $PG_HOST:5432; trying to start it"
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 20); do pg_isready -q -h "$PG_HOST" -p 5432 && break; sleep 0.5; done
  pg_isready -q -h "$PG_HOST" -p 5432 || fail "PostgreSQL is not running on $PG_HOST:5432. Start it (e.g. 'pg_ctlcluster 15 main start') with trust auth for user postgres, or set DATABASE_URL in deploy/dev/test.env."
fi
psql -h "$PG_HOST" -U postgres -d postgres -Atc 'select 1' >/dev/null || fail "PostgreSQL answers but user postgres cannot log in without a password (the tests need trust auth on $PG_HOST)."
say "PostgreSQL ok"

# --- Redis --------------------------------------------------------------------------------
redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
if ! redis_ping; then
  command -v redis-server >/dev/null || apt_install redis-server || true
  say "Redis is not answering on 127.0.0.1:$REDIS_PORT; starting it"
  mkdir -p /tmp/opsportal-test-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/opsportal-test-redis --logfile /tmp/opsportal-test-redis/redis.log || true
  for _ in $(seq 20); do redis_ping && break; sleep 0.25; done
  redis_ping || fail "Redis is not running on 127.0.0.1:$REDIS_PORT and could not be started (install redis-server)."
fi
say "Redis ok"

# --- RabbitMQ (the production-topology test runs on a virtual host of its own) --------------
rabbit_ok() { rabbitmqctl -q list_vhosts >/dev/null 2>&1; }
if ! rabbit_ok; then
  command -v rabbitmqctl >/dev/null || apt_install rabbitmq-server || true
  say "RabbitMQ is not answering; trying to start it"
  (as_root service rabbitmq-server start >/dev/null 2>&1 || as_root rabbitmq-server -detached >/dev/null 2>&1) || true
  for _ in $(seq 60); do rabbit_ok && break; sleep 0.5; done
  rabbit_ok || fail "RabbitMQ is not running on 127.0.0.1:5672 (with rabbitmqctl usable by this user): install and start rabbitmq-server."
fi
say "RabbitMQ ok"

# --- Docker engine -------------------------------------------------------------------------
command -v dockerd >/dev/null || apt_install docker.io || fail "No Docker engine: install Debian's docker.io (apt-get install docker.io)."
docker_ok() { docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1; }
if ! docker_ok; then
  say "starting a private Docker engine at $DOCKER_SOCK"
  mkdir -p "$DOCKER_DIR"
  rm -f "$DOCKER_SOCK" "$DOCKER_DIR/dockerd.pid"
  as_root nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_DIR/dockerd.pid" \
    -H "unix://$DOCKER_SOCK" >"$DOCKER_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker_ok && break; sleep 0.5; done
  docker_ok || { tail -n 20 "$DOCKER_DIR/dockerd.log" >&2; fail "the Docker engine did not start (log above: $DOCKER_DIR/dockerd.log)."; }
fi
say "Docker engine ok"

# A second, empty engine that only speaks tcp:// with mutual TLS, for the TLS adapter tests.
TLS_DIR="$DOCKER_DIR/tls"
TLS_PORT="${OPSPORTAL_TEST_DOCKER_TLS_PORT:-23760}"
if [ ! -f "$TLS_DIR/client-key.pem" ]; then
  mkdir -p "$TLS_DIR" && (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=opsportal-test-ca" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server-key.pem -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=opsportal-client" -keyout client-key.pem -out client.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out client.pem 2>/dev/null
  ) || fail "openssl could not make the test TLS certificates (apt-get install openssl)."
fi
tls_ok() { docker --tlsverify --tlscacert "$TLS_DIR/ca.pem" --tlscert "$TLS_DIR/client.pem" \
  --tlskey "$TLS_DIR/client-key.pem" -H "tcp://127.0.0.1:$TLS_PORT" version >/dev/null 2>&1; }
if ! tls_ok; then
  rm -f "$DOCKER_DIR/dockerd-tls.pid"
  as_root nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    --data-root "$DOCKER_DIR/tls-data" --exec-root "$DOCKER_DIR/tls-exec" --pidfile "$DOCKER_DIR/dockerd-tls.pid" \
    --tlsverify --tlscacert "$TLS_DIR/ca.pem" --tlscert "$TLS_DIR/server.pem" --tlskey "$TLS_DIR/server-key.pem" \
    -H "tcp://127.0.0.1:$TLS_PORT" >"$DOCKER_DIR/dockerd-tls.log" 2>&1 &
  for _ in $(seq 60); do tls_ok && break; sleep 0.5; done
  tls_ok || { tail -n 20 "$DOCKER_DIR/dockerd-tls.log" >&2; fail "the TLS Docker engine did not start."; }
fi
say "TLS Docker engine ok (tcp://127.0.0.1:$TLS_PORT)"

# The same engine reached over ssh://: a private sshd on loopback whose sessions point
# `docker system dial-stdio` at the test engine; keys and known_hosts in a test HOME.
SSH_DIR="$DOCKER_DIR/ssh"
SSH_PORT="${OPSPORTAL_TEST_DOCKER_SSH_PORT:-22022}"
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || apt_install openssh-server || fail "openssh-server is needed for the ssh:// engine tests (apt-get install openssh-server)."
if [ ! -f "$SSH_DIR/home/.ssh/id_ed25519" ]; then
  mkdir -p "$SSH_DIR/home/.ssh"
  ssh-keygen -q -t ed25519 -N "" -f "$SSH_DIR/host_key"
  ssh-keygen -q -t ed25519 -N "" -f "$SSH_DIR/home/.ssh/id_ed25519"
  cp "$SSH_DIR/home/.ssh/id_ed25519.pub" "$SSH_DIR/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSH_DIR/host_key.pub")" > "$SSH_DIR/home/.ssh/known_hosts"
  chmod 600 "$SSH_DIR/authorized_keys"
  cat > "$SSH_DIR/sshd_config" <<SSHD
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSH_DIR/host_key
PidFile $SSH_DIR/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=unix://$DOCKER_SOCK
SSHD
fi
if ! (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null; then
  mkdir -p /run/sshd
  as_root /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$SSH_DIR/sshd.log" || fail "sshd did not start (see $SSH_DIR/sshd.log)."
fi
say "ssh:// Docker engine ok (ssh://root@127.0.0.1:$SSH_PORT)"
"$(dirname "$0")/build-test-images.sh" "unix://$DOCKER_SOCK"

# The TLS engine doubles as a one-node Swarm (for scaling Swarm services) with the test image.
tls_docker() { docker --tlsverify --tlscacert "$TLS_DIR/ca.pem" --tlscert "$TLS_DIR/client.pem" \
  --tlskey "$TLS_DIR/client-key.pem" -H "tcp://127.0.0.1:$TLS_PORT" "$@"; }
if [ "$(tls_docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  tls_docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "the TLS engine could not become a Swarm manager."
fi
if ! tls_docker image inspect opsportal-test/busybox:1 >/dev/null 2>&1; then
  docker -H "unix://$DOCKER_SOCK" save opsportal-test/busybox:1 | tls_docker load >/dev/null || fail "could not copy the test image to the TLS engine."
fi
say "TLS engine is a Swarm manager with the test image"

# --- Browser and promtool ---------------------------------------------------------------
[ -x /usr/bin/chromium ] || apt_install chromium || fail "Debian's chromium is needed for the browser tests (apt-get install chromium)."
command -v promtool >/dev/null || apt_install prometheus || fail "promtool is needed to check /metrics (apt-get install prometheus)."
say "chromium and promtool ok"

# --- axe-core (accessibility checks in the status page's browser test) ----------------------
# From the npm registry, pinned, into a directory outside the work tree; the test injects
# node_modules/axe-core/axe.min.js into the page with Playwright.
AXE_VERSION=4.14.1
AXE_DIR=${OPSPORTAL_TEST_AXE_DIR:-/tmp/opsportal-test-axe}
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ] || ! grep -q "\"version\": \"$AXE_VERSION\"" "$AXE_DIR/node_modules/axe-core/package.json" 2>/dev/null; then
  command -v npm >/dev/null || apt_install npm || fail "npm is needed to install axe-core (apt-get install npm)."
  mkdir -p "$AXE_DIR"
  (cd "$AXE_DIR" && npm install --no-audit --no-fund --silent "axe-core@$AXE_VERSION") \
    || fail "Could not install axe-core $AXE_VERSION from the npm registry into $AXE_DIR."
fi
say "axe-core $AXE_VERSION ok"
