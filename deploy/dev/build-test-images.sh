#!/usr/bin/env bash
# Builds the images the tests and drills run, without a registry: a root filesystem made
# from Debian's busybox-static, imported with `docker import`.
set -euo pipefail
DOCKER_HOST_URL="$1"
docker_cmd() { docker -H "$DOCKER_HOST_URL" "$@"; }

# A database container that has pg_dump, for the backups' container method (the runbook's
# `docker exec … pg_dump`): the host's PostgreSQL client binaries and the shared libraries
# `ldd` lists, on a busybox root fs.
PG_CLIENT_IMAGE=opsportal-test/pg-client:15
build_pg_client_image() (
  set -euo pipefail
  local bindir rootfs
  bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs"/{bin,tmp,etc,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"; done
  for tool in pg_dump pg_restore psql; do
    cp "$bindir/$tool" "$rootfs/bin/$tool"
    for lib in $(ldd "$bindir/$tool" | grep -o '/[^ ]*\.so[^ ]*'); do
      mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"
    done
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
  echo 'postgres:x:999:999::/tmp:/bin/sh' >> "$rootfs/etc/passwd"
  chmod 1777 "$rootfs/tmp"
  tar -C "$rootfs" -c . | docker_cmd import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$PG_CLIENT_IMAGE" >/dev/null
)
if docker_cmd image inspect "$PG_CLIENT_IMAGE" >/dev/null 2>&1; then
  echo "[test-services] image $PG_CLIENT_IMAGE ok"
else
  command -v /bin/busybox >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  build_pg_client_image && echo "[test-services] built image $PG_CLIENT_IMAGE"
fi
# A PostgreSQL server in a container (the runbook's database container): the host's
# PostgreSQL 15 server binaries, its libraries and share files on a busybox root fs. Like the
# official image, it initialises its cluster on first start (superuser "postgres" with
# $POSTGRES_PASSWORD over TCP, trusted over the local socket, so `docker exec … psql -U
# postgres` works) and passes its arguments to postgres (e.g. -c max_connections=20).
PG_SERVER_IMAGE=opsportal-test/postgres:15
build_pg_server_image() (
  set -euo pipefail
  local bindir libdir sharedir rootfs
  bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
  libdir=$(pg_config --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)
  sharedir=$(pg_config --sharedir 2>/dev/null || echo /usr/share/postgresql/15)
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs"/{bin,tmp,etc,proc,sys,dev,var/lib/postgresql,var/run/postgresql}
  mkdir -p "$rootfs$bindir" "$rootfs$libdir" "$rootfs$(dirname "$sharedir")" "$rootfs/usr/share"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"; done
  cp -a "$libdir/." "$rootfs$libdir/"
  cp -a "$sharedir" "$rootfs$sharedir"
  cp -aL /usr/share/zoneinfo "$rootfs/usr/share/zoneinfo"
  for tool in postgres initdb pg_ctl psql pg_dump pg_restore; do
    cp "$bindir/$tool" "$rootfs$bindir/$tool"
    ln -sf "$bindir/$tool" "$rootfs/bin/$tool"
  done
  for object in "$rootfs$bindir"/* "$rootfs$libdir"/*.so; do
    for lib in $(ldd "$object" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*'); do
      [ -e "$rootfs$lib" ] || { mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"; }
    done
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
  echo 'postgres:x:999:999::/var/lib/postgresql:/bin/sh' >> "$rootfs/etc/passwd"
  echo 'postgres:x:999:' > "$rootfs/etc/group"
  cat > "$rootfs/bin/postgres-entrypoint" <<'ENTRY'
#!/bin/sh
set -e
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > /tmp/pwfile
  initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile=/tmp/pwfile -E UTF8 --locale=C >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /var/run/postgresql "$@"
ENTRY
  chmod 755 "$rootfs/bin/postgres-entrypoint"
  # The server runs as uid 999: it must traverse / (mktemp made it 0700) and write these,
  # which belong to no one else in the container.
  chmod 755 "$rootfs"
  chmod 1777 "$rootfs/tmp" "$rootfs/var/lib/postgresql" "$rootfs/var/run/postgresql"
  tar -C "$rootfs" -c . | docker_cmd import \
    --change 'ENTRYPOINT ["/bin/postgres-entrypoint"]' --change 'USER postgres' \
    --change 'ENV PATH=/bin' - "$PG_SERVER_IMAGE" >/dev/null
)
if docker_cmd image inspect "$PG_SERVER_IMAGE" >/dev/null 2>&1; then
  echo "[test-services] image $PG_SERVER_IMAGE ok"
else
  build_pg_server_image && echo "[test-services] built image $PG_SERVER_IMAGE"
fi
IMAGE=opsportal-test/busybox:1

if docker_cmd image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "[test-services] image $IMAGE ok"
  exit 0
fi
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null || {
    echo "[test-services] ERROR: Debian's busybox-static is needed to build test images" >&2; exit 1; }
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,tmp,www/cgi-bin,etc,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$rootfs/etc/passwd"
echo '<html><body>ok</body></html>' > "$rootfs/www/index.html"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" -c . | docker_cmd import \
  --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "[test-services] built image $IMAGE"
