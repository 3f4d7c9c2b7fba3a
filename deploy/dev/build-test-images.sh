#!/usr/bin/env bash
# Builds the images the tests and drills run, without a registry: a root filesystem made
# from Debian's busybox-static, imported with `docker import`.
set -euo pipefail
DOCKER_HOST_URL="$1"
docker_cmd() { docker -H "$DOCKER_HOST_URL" "$@"; }
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
