#!/bin/sh
# $QWEN_NGINX during scripts/run-tests.sh: notes the prefix (-p) of every
# nginx a test starts, with the pid of the test process (QWEN_SECRET_OWNER,
# set by t/lib/Qwen/SecretScan.pm), so that the secret scan can keep what
# that nginx logged before the test removes its directory; then runs the
# real nginx ($QWEN_SECRET_REAL_NGINX).
prefix=
prev=
for arg in "$@"; do
    [ "$prev" = -p ] && prefix=$arg
    case $arg in -p?*) prefix=${arg#-p} ;; esac
    prev=$arg
done
if [ -n "$prefix" ] && [ -n "${QWEN_SECRET_DIR:-}" ] && [ -d "$QWEN_SECRET_DIR" ]; then
    case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
    printf '%s\t%s\n' "${QWEN_SECRET_OWNER:-0}" "$prefix" \
        >>"$QWEN_SECRET_DIR/prefixes"
fi
exec "${QWEN_SECRET_REAL_NGINX:-/usr/sbin/nginx}" "$@"
