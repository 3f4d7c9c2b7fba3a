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
