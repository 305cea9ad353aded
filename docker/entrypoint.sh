#!/bin/sh
# /usr/local/bin/qwen-entrypoint: the image's entry point (docs/container.md).
#
#   qwen-entrypoint [nginx options]   render the templates, then run nginx in
#                                     the foreground (exec: nginx is PID 1's
#                                     process and gets the stop signal)
#   qwen-entrypoint reload            render the templates again, then
#                                     nginx -s reload
#   qwen-entrypoint COMMAND [ARGS]    render the templates, then run COMMAND
#                                     (a shell, nginx -T, ...)
#
# Every /etc/nginx/templates/*.template becomes /tmp/nginx/<name without
# .template>, with ${VAR} (or $VAR) replaced by envsubst for the variables
# that are set in the environment only, and whose names are in upper case
# (any other ${...}, and nginx's own $variables, stay as written). Variables whose name ends in _KEY, _KEYS_FILE or
# contains SECRET, TOKEN or PASSWORD are never substituted: secrets reach
# nginx through the environment (key_env=), never through a file.
#
# Nothing is written outside /tmp: the image works with a read-only root.
set -eu

me=qwen-entrypoint
die() { echo "$me: $*" >&2; exit 1; }

templates=${QWEN_TEMPLATE_DIR:-/etc/nginx/templates}
out=/tmp/nginx

# the documented variables and their defaults
: "${QWEN_REGION:=singapore}"
# QWEN_UPSTREAM: the endpoint of QWEN_REGION's DashScope (a key works only
# in the region where it was made)
if [ -z "${QWEN_UPSTREAM:-}" ]; then
    case "$QWEN_REGION" in
        singapore) QWEN_UPSTREAM=https://dashscope-intl.aliyuncs.com ;;
        virginia)  QWEN_UPSTREAM=https://dashscope-us.aliyuncs.com ;;
        beijing)   QWEN_UPSTREAM=https://dashscope.aliyuncs.com ;;
        hongkong)  QWEN_UPSTREAM=https://cn-hongkong.dashscope.aliyuncs.com ;;
        *) die "QWEN_REGION=$QWEN_REGION: set QWEN_UPSTREAM to its endpoint" \
               "(https://host)" ;;
    esac
fi
: "${QWEN_WORKER_PROCESSES:=auto}"
: "${QWEN_METRICS_ZONE_SIZE:=4m}"
: "${QWEN_CLIENT_KEYS:=off}"
: "${QWEN_LOG_LEVEL:=warn}"
: "${QWEN_PORT:=8000}"
: "${QWEN_METRICS_PORT:=9145}"
export QWEN_REGION QWEN_UPSTREAM QWEN_WORKER_PROCESSES QWEN_METRICS_ZONE_SIZE \
       QWEN_CLIENT_KEYS QWEN_LOG_LEVEL QWEN_PORT QWEN_METRICS_PORT

port_ok() {
    case "$1" in
        ''|*[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

check() {
    case "$QWEN_REGION" in
        ''|*[!A-Za-z0-9_-]*) die "QWEN_REGION=$QWEN_REGION: a region name" \
                                 "(letters, digits, - and _)" ;;
    esac
    case "$QWEN_WORKER_PROCESSES" in
        auto) ;;
        ''|*[!0-9]*) die "QWEN_WORKER_PROCESSES=$QWEN_WORKER_PROCESSES:" \
                         "auto or a number" ;;
    esac
    case "$QWEN_METRICS_ZONE_SIZE" in
        ''|*[!0-9kKmM]*|[!0-9]*) die "QWEN_METRICS_ZONE_SIZE=$QWEN_METRICS_ZONE_SIZE:" \
                                     "a size such as 4m" ;;
    esac
    case "$QWEN_LOG_LEVEL" in
        debug|info|notice|warn|error|crit|alert|emerg) ;;
        *) die "QWEN_LOG_LEVEL=$QWEN_LOG_LEVEL: one of debug info notice" \
               "warn error crit alert emerg" ;;
    esac
    port_ok "$QWEN_PORT" || die "QWEN_PORT=$QWEN_PORT: a port number"
    port_ok "$QWEN_METRICS_PORT" \
        || die "QWEN_METRICS_PORT=$QWEN_METRICS_PORT: a port number"
    [ "$QWEN_PORT" != "$QWEN_METRICS_PORT" ] \
        || die "QWEN_PORT and QWEN_METRICS_PORT are both $QWEN_PORT"

    # QWEN_UPSTREAM=scheme://host[:port], split for the template:
    #   QWEN_UPSTREAM_SCHEME  http or https
    #   QWEN_UPSTREAM_HOST    the host (Host header and TLS name)
    #   QWEN_UPSTREAM_SERVER  host:port, the server of upstream{}
    rest=${QWEN_UPSTREAM%/}
    case "$rest" in
        http://*)  QWEN_UPSTREAM_SCHEME=http;  port=80 ;;
        https://*) QWEN_UPSTREAM_SCHEME=https; port=443 ;;
        *) die "QWEN_UPSTREAM=$QWEN_UPSTREAM: http:// or https:// and a host" ;;
    esac
    rest=${rest#*://}
    case "$rest" in
        ''|*/*|*@*|*[!A-Za-z0-9.:_\[\]-]*)
            die "QWEN_UPSTREAM=$QWEN_UPSTREAM: scheme://host[:port], no path" ;;
    esac
    case "$rest" in
        \[*\]:*) host=${rest%:*}; port=${rest##*:} ;;   # [v6]:port
        \[*\])   host=$rest ;;                          # [v6]
        *:*)     host=${rest%:*}; port=${rest##*:} ;;
        *)       host=$rest ;;
    esac
    [ -n "$host" ] && port_ok "$port" \
        || die "QWEN_UPSTREAM=$QWEN_UPSTREAM: scheme://host[:port]"
    QWEN_UPSTREAM_HOST=$host
    QWEN_UPSTREAM_SERVER=$host:$port
    export QWEN_UPSTREAM_SCHEME QWEN_UPSTREAM_HOST QWEN_UPSTREAM_SERVER

    # QWEN_CLIENT_KEYS=on: client keys required (qwen_keys on), from the
    # keys file of the Secret mounted at /etc/qwen/keys; their spend is kept
    # in /tmp/nginx across restarts of nginx in the same pod
    #   QWEN_KEYS_FILE_CONF  the http{}-level directives of the keys
    case "$QWEN_CLIENT_KEYS" in
        on)
            [ -r /etc/qwen/keys/keys.json ] \
                || die "QWEN_CLIENT_KEYS=on but /etc/qwen/keys/keys.json" \
                       "cannot be read (mount the keys Secret at /etc/qwen/keys)"
            QWEN_KEYS_FILE_CONF="qwen_keys_file /etc/qwen/keys/keys.json;
    qwen_keys_state_file $out/qwen-keys-state.json;"
            ;;
        off)
            QWEN_KEYS_FILE_CONF="# client keys off (QWEN_CLIENT_KEYS=off)"
            ;;
        *) die "QWEN_CLIENT_KEYS=$QWEN_CLIENT_KEYS: on or off" ;;
    esac
    export QWEN_KEYS_FILE_CONF
}

# ${NAME} for every variable set in the environment whose value may be
# written into a file
substitutable() {
    awk 'BEGIN { for (name in ENVIRON) print name }' </dev/null | sort -u \
        | while read -r name; do
            case "$name" in
                # upper case only: nginx's own $variables are lower case
                *[!ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_]*|[0-9]*) continue ;;
                *_KEY|*_KEYS_FILE|*SECRET*|*TOKEN*|*PASSWORD*) continue ;;
            esac
            printf '${%s} ' "$name"
        done
}

render() {
    command -v envsubst >/dev/null 2>&1 \
        || die "envsubst is missing (Debian: gettext-base)"
    # private: the rendered files are the user's own (umask for the
    # directory, the files and nginx's *_temp directories)
    umask 077
    mkdir -p "$out"
    [ -w "$out" ] || die "$out is not writable by uid $(id -u)" \
                         "(mount a writable /tmp, an emptyDir in Kubernetes)"
    vars=$(substitutable)
    found=
    for t in "$templates"/*.template; do
        [ -f "$t" ] || continue
        found=1
        name=$(basename "$t" .template)
        envsubst "$vars" <"$t" >"$out/.$name.new" \
            || die "cannot render $t"
        mv -f "$out/.$name.new" "$out/$name"
    done
    [ -n "$found" ] || die "no $templates/*.template"
    [ -f "$out/nginx.conf" ] \
        || die "$templates/nginx.conf.template is missing"
}

# nginx opens its access log, /dev/stdout, by name: as a user other than
# root that works only when the standard output is the user's own (runc
# and crun hand it over so; `buildah run` and some others keep a pipe owned
# by root). Then the standard output becomes a pipe of this user's, relayed
# to the real one by cat, which ends when nginx and its workers have
# closed it.
stdout_for_nginx() {
    if ( : >>/dev/stdout ) 2>/dev/null; then
        return 0
    fi
    fifo=$out/.stdout.$$
    rm -f "$fifo"
    mkfifo -m 0600 "$fifo" || die "cannot make $fifo"
    # (deaf to the signals meant for nginx: it goes on until the end)
    (trap '' HUP INT QUIT TERM USR1 USR2 WINCH; exec cat <"$fifo") &
    exec >"$fifo"
    rm -f "$fifo"
}

check

case "${1:-}" in
    reload)
        shift
        render
        exec nginx -e stderr -c "$out/nginx.conf" -s reload "$@"
        ;;
    ''|-*)
        render
        stdout_for_nginx
        exec nginx -e stderr -c "$out/nginx.conf" -g 'daemon off;' "$@"
        ;;
    *)
        render
        exec "$@"
        ;;
esac
