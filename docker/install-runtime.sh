#!/bin/sh
# The runtime stage of the Dockerfile, as root: what the gateway needs at
# run time, on top of the base image, and nothing else.
#
#   - a base without nginx (debian:bookworm-slim, or the base made by
#     scripts/image.sh from Debian's packages): Debian's nginx;
#   - an official nginx image (nginx:<version>-bookworm): its own nginx is
#     kept, and the user nginx (101:101) it already has.
#
# Then libcjson1 (the module's JSON library), gettext-base (envsubst, for
# the templates) and ca-certificates (TLS to DashScope), and the user and
# group nginx, 101:101, that the image runs as.
set -eu

export DEBIAN_FRONTEND=noninteractive
die() { echo "install-runtime: $*" >&2; exit 1; }

# the user first, so that no package takes uid or gid 101
if ! getent group 101 >/dev/null; then
    getent group nginx >/dev/null && die "a group nginx exists, not as gid 101"
    groupadd --system --gid 101 nginx
fi
if ! getent passwd 101 >/dev/null; then
    getent passwd nginx >/dev/null && die "a user nginx exists, not as uid 101"
    useradd --system --uid 101 --gid 101 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin \
        --comment "nginx (qwen gateway)" nginx
fi
[ "$(getent passwd 101 | cut -d: -f4)" = 101 ] \
    || die "uid 101 ($(getent passwd 101 | cut -d: -f1)) is not in group 101"

pkgs="libcjson1 gettext-base ca-certificates"
if command -v nginx >/dev/null 2>&1; then
    echo "install-runtime: keeping the base image's $(nginx -v 2>&1)"
else
    pkgs="nginx $pkgs"
fi

apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt \
       /var/log/dpkg.log

# Debian's package starts nothing here (no init), but leaves a default site
# and the service's files; the gateway uses none of them
rm -rf /etc/nginx/sites-enabled/* /var/www/html

# the configuration this image renders lives under /tmp/nginx; the
# templates and the catalogue are read-only, owned by root
mkdir -p /etc/nginx/templates /etc/qwen/keys
nginx -v
