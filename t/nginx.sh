#!/bin/sh
# TEST_NGINX_BINARY for Debian's nginx.
#
# Debian builds nginx with --error-log-path=stderr, so what nginx says
# before its configuration is loaded (a configuration error, as "nginx -t"
# prints it) goes to stderr. An nginx built from upstream sources writes it
# to <prefix>/logs/error.log, which is where Test::Nginx's "--- must_die"
# blocks look for their "--- error_log" lines. This restores that.
exec "${QWEN_NGINX:-/usr/sbin/nginx}" -e logs/error.log "$@"
