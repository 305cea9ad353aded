#!/usr/bin/env bash
# The container image (Dockerfile, docs/container.md).
#
#   scripts/image.sh [build]     build qwen-gateway:<version> (and :latest)
#   scripts/image.sh base        make the local base image only
#   scripts/image.sh run [-d] [nginx options]
#                                run the built image's nginx with buildah
#                                (podman's storage), on the host's network;
#                                -d: in the background
#   scripts/image.sh reload      render the templates again (with this
#                                environment) and reload that nginx
#   scripts/image.sh stop        SIGQUIT to the nginx of `run -d`, then wait
#                                for it to finish its requests
#
# build: with Docker when a Docker engine answers (`docker info`), else with
# Podman (`podman build --isolation=chroot`, as root). The base image is
# IMAGE_BASE:
#   auto (default)  debian:bookworm-slim when a registry can be reached, the
#                   local base otherwise
#   local           localhost/qwen-base:bookworm, made from Debian's packages
#                   with mmdebstrap (minbase, merged /usr, no docs) and
#                   imported; made once and reused (IMAGE_REBUILD_BASE=1
#                   makes it again)
#   <image>         any other base: nginx:1.27.3-bookworm, ... (the build
#                   stage then builds against that image's nginx)
# The build uses the engine's layer cache: building the same tree again
# takes seconds.
#
# Environment:
#   IMAGE_NAME      qwen-gateway
#   IMAGE_VERSION   the tag (default: git describe --tags --always --dirty)
#   IMAGE_ENGINE    auto | docker | podman
#   NGINX_SRC_URL   passed to the build (the source of a non-Debian nginx)
#   IMAGE           run: the image (default localhost/$IMAGE_NAME:latest)
#   IMAGE_RUN_DIR   run/stop: where the run keeps its files (default
#                   build/image-run): tmp/ (the container's /tmp, as an
#                   emptyDir: nginx's pid file, rendered configuration and
#                   temporary files), stdout.log and stderr.log with -d
#   QWEN_*          run: the contract's variables, passed to the container
#                   when set (QWEN_REGION, QWEN_UPSTREAM, QWEN_PORT, ...)
#   DASHSCOPE_API_KEY
#                   run: passed to the container's environment through a
#                   pipe, never on a command line nor in a file
#   QWEN_KEYS_DIR, QWEN_MODELS_FILE, QWEN_TEMPLATES_DIR
#                   run: mounted read-only at /etc/qwen/keys,
#                   /etc/qwen/qwen-models.json, /etc/nginx/templates
#   IMAGE_STOP_TIMEOUT  stop: seconds to wait after SIGQUIT (30)
#
# `buildah run` cannot make the root file system read-only: the run writes
# only into tmp/ (the container's /tmp), which t/161-image.t checks in the
# container's own layer. `podman run` is not used: this machine's cgroup and
# rlimit setup refuses it.
set -euo pipefail
cd "$(dirname "$0")/.."

me=image.sh
die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*" >&2; }

name=${IMAGE_NAME:-qwen-gateway}
base_local=localhost/qwen-base:bookworm
run_dir=${IMAGE_RUN_DIR:-build/image-run}

engine() {
    local e=${IMAGE_ENGINE:-auto}
    if [ "$e" = auto ]; then
        if command -v docker >/dev/null 2>&1 \
                && timeout 20 docker info >/dev/null 2>&1; then
            e=docker
        elif command -v podman >/dev/null 2>&1; then
            e=podman
        else
            die "neither a Docker engine (docker info) nor podman:" \
                "install podman (scripts/deps.sh image)"
        fi
    fi
    echo "$e"
}

registry_reachable() {
    local code
    # without curl, assume it is (the engine pulls, or says why not)
    command -v curl >/dev/null 2>&1 || return 0
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' \
               https://registry-1.docker.io/v2/ 2>/dev/null || true)
    [ "$code" = 401 ] || [ "$code" = 200 ]
}

image_exists() {
    if [ "$1" = docker ]; then
        docker image inspect "$2" >/dev/null 2>&1
    else
        podman image exists "$2"
    fi
}

# localhost/qwen-base:bookworm from Debian's own packages
make_base() {
    local e=$1
    if [ -z "${IMAGE_REBUILD_BASE:-}" ] && image_exists "$e" "$base_local"; then
        say "reusing the base image $base_local"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "making the base image needs root (mmdebstrap)"
    command -v mmdebstrap >/dev/null 2>&1 \
        || die "mmdebstrap is missing (scripts/deps.sh image)"
    say "making $base_local from Debian's packages (mmdebstrap)"
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/qwen-base.XXXXXX")
    # minbase: essential packages and apt; merged /usr by the hook (not the
    # usrmerge package, which would bring perl); no manuals, docs or
    # translations (kept out of later apt-get installs too, as in the
    # -slim images)
    if ! mmdebstrap --variant=minbase --mode=root \
            --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --aptopt='APT::Install-Recommends "false"' \
            bookworm - 2>"$log" \
        | "$e" import --change 'CMD ["bash"]' - "$base_local" >/dev/null; then
        tail -20 "$log" >&2
        rm -f "$log"
        die "could not make $base_local"
    fi
    rm -f "$log"
}

build() {
    local e base version
    e=$(engine)
    base=${IMAGE_BASE:-auto}
    if [ "$base" = auto ]; then
        if image_exists "$e" docker.io/library/debian:bookworm-slim \
                || registry_reachable; then
            base=debian:bookworm-slim
        else
            say "no image registry reachable: the base is made from" \
                "Debian's packages"
            base=local
        fi
    fi
    if [ "$base" = local ]; then
        make_base "$e"
        base=$base_local
    fi
    version=${IMAGE_VERSION:-$(git describe --tags --always --dirty \
                                   2>/dev/null || echo dev)}
    local args=(--build-arg "BASE=$base" -t "$name:$version" -t "$name:latest")
    [ -n "${NGINX_SRC_URL:-}" ] \
        && args+=(--build-arg "NGINX_SRC_URL=$NGINX_SRC_URL")
    say "building $name:$version on $base with $e"
    if [ "$e" = docker ]; then
        docker build "${args[@]}" .
    else
        [ "$(id -u)" = 0 ] || die "podman build --isolation=chroot needs root"
        # Docker's format: it keeps HEALTHCHECK (OCI's has no place for it)
        podman build --isolation=chroot --format docker "${args[@]}" .
    fi
    say "built $name:$version ($("$e" image inspect -f '{{.Size}}' \
        "$name:$version" | awk '{ printf "%.1f MB", $1 / 1e6 }'))"
}

# a process that runs (a zombie does not: where PID 1 reaps late, buildah
# lingers as one after its end)
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

nginx_pid() {
    local pid=
    [ -f "$run_dir/tmp/nginx/nginx.pid" ] \
        && read -r pid <"$run_dir/tmp/nginx/nginx.pid" 2>/dev/null
    [ -n "$pid" ] && alive "$pid" && echo "$pid"
}

# the options of buildah run: the contract's variables that are set, the
# run's tmp/ as /tmp, the mounted files (into the array args)
container_args() {
    args=(--isolation=chroot --network=host --user 101:101
          -v "$(cd "$run_dir/tmp" && pwd):/tmp")
    local v
    for v in QWEN_REGION QWEN_UPSTREAM QWEN_WORKER_PROCESSES \
             QWEN_METRICS_ZONE_SIZE QWEN_CLIENT_KEYS QWEN_LOG_LEVEL \
             QWEN_PORT QWEN_METRICS_PORT; do
        if [ -n "${!v+set}" ]; then
            args+=(-e "$v=${!v}")
        fi
    done
    if [ -n "${QWEN_KEYS_DIR:-}" ]; then
        args+=(-v "$(cd "$QWEN_KEYS_DIR" && pwd):/etc/qwen/keys:ro")
    fi
    if [ -n "${QWEN_MODELS_FILE:-}" ]; then
        args+=(-v "$(realpath "$QWEN_MODELS_FILE"):/etc/qwen/qwen-models.json:ro")
    fi
    if [ -n "${QWEN_TEMPLATES_DIR:-}" ]; then
        args+=(-v "$(cd "$QWEN_TEMPLATES_DIR" && pwd):/etc/nginx/templates:ro")
    fi
}

run() {
    local detach=
    if [ "${1:-}" = -d ]; then
        detach=1
        shift
    fi
    [ "$(id -u)" = 0 ] || die "buildah run --isolation=chroot needs root"
    command -v buildah >/dev/null 2>&1 \
        || die "buildah is missing (scripts/deps.sh image)"
    local image=${IMAGE:-localhost/$name:latest}
    buildah inspect --type image "$image" >/dev/null 2>&1 \
        || die "no image $image: build it first (scripts/image.sh)"

    if [ -f "$run_dir/container" ]; then
        local old
        old=$(cat "$run_dir/container")
        if nginx_pid >/dev/null; then
            die "$image already runs from $run_dir (scripts/image.sh stop)"
        fi
        buildah rm "$old" >/dev/null 2>&1 || true
        rm -f "$run_dir/container"
    fi

    # the container's /tmp, as Kubernetes' emptyDir: only the user 101
    [ -d "$run_dir" ] || mkdir -p -m 0700 "$run_dir"
    # a tmp/ there is a previous run's (owned by 101), nothing else's
    if [ -e "$run_dir/tmp" ] && [ "$(stat -c %u "$run_dir/tmp")" != 101 ]; then
        die "$run_dir/tmp is not a run's /tmp (not owned by uid 101):" \
            "choose another IMAGE_RUN_DIR"
    fi
    rm -rf "$run_dir/tmp"
    mkdir -m 0700 "$run_dir/tmp"
    chown 101:101 "$run_dir/tmp"
    rm -f "$run_dir/stdout.log" "$run_dir/stderr.log" "$run_dir/buildah.pid"

    local ctr args
    ctr=$(buildah from --pull-never --name "qwen-gateway-run-$$" "$image")
    echo "$ctr" >"$run_dir/container"

    container_args
    # the key goes in through the standard input (printf is bash's own: no
    # command line shows it), into the entry point's environment only
    local inner='while IFS= read -r l; do
            case "$l" in
                DASHSCOPE_API_KEY=*) export "$l" ;;
            esac
        done
        exec /usr/local/bin/qwen-entrypoint "$@" </dev/null'
    secrets() {
        [ -n "${DASHSCOPE_API_KEY:-}" ] \
            && printf 'DASHSCOPE_API_KEY=%s\n' "$DASHSCOPE_API_KEY"
        return 0
    }

    if [ -z "$detach" ]; then
        say "running $image (container $ctr); Ctrl-C stops it gracefully"
        # buildah in a session of its own: Ctrl-C reaches this script only,
        # which stops nginx with SIGQUIT (buildah would die of it)
        setsid buildah run "${args[@]}" "$ctr" -- sh -c "$inner" \
            qwen-entrypoint "$@" < <(secrets) &
        local bpid=$! status=0
        trap 'p=$(nginx_pid) && kill -QUIT "$p"' INT TERM
        while alive "$bpid"; do
            status=0
            wait "$bpid" || status=$?
        done
        trap - INT TERM
        buildah rm "$ctr" >/dev/null 2>&1 || true
        rm -f "$run_dir/container"
        return "$status"
    fi

    setsid buildah run "${args[@]}" "$ctr" -- sh -c "$inner" qwen-entrypoint \
        "$@" < <(secrets) >"$run_dir/stdout.log" 2>"$run_dir/stderr.log" &
    local bpid=$!
    echo "$bpid" >"$run_dir/buildah.pid"
    # up when nginx wrote its pid file; down when buildah ended first
    local i
    for i in $(seq 1 100); do
        if nginx_pid >/dev/null; then
            say "running $image: nginx $(nginx_pid) (container $ctr," \
                "files in $run_dir); scripts/image.sh stop stops it"
            return 0
        fi
        if ! alive "$bpid"; then
            tail -20 "$run_dir/stderr.log" >&2
            buildah rm "$ctr" >/dev/null 2>&1 || true
            rm -f "$run_dir/container"
            die "nginx in $image did not start"
        fi
        sleep 0.1
    done
    tail -20 "$run_dir/stderr.log" >&2
    die "nginx in $image did not write its pid file within 10 s" \
        "(still starting: scripts/image.sh stop)"
}

# qwen-entrypoint reload in the running container (as kubectl exec would):
# the templates rendered again with this environment, then nginx -s reload
reload() {
    [ "$(id -u)" = 0 ] || die "buildah run --isolation=chroot needs root"
    nginx_pid >/dev/null || die "no nginx runs from $run_dir"
    local args
    container_args
    buildah run "${args[@]}" "$(cat "$run_dir/container")" -- \
        /usr/local/bin/qwen-entrypoint reload
    say "reloaded nginx $(nginx_pid)"
}

stop() {
    local pid bpid= i timeout=${IMAGE_STOP_TIMEOUT:-30}
    [ -f "$run_dir/buildah.pid" ] && bpid=$(cat "$run_dir/buildah.pid")
    if pid=$(nginx_pid); then
        say "SIGQUIT to nginx $pid: it stops when its requests are done"
        kill -QUIT "$pid"
        for i in $(seq 1 $((timeout * 10))); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "nginx still runs after $timeout s: SIGTERM"
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
        fi
    fi
    if [ -n "$bpid" ]; then
        for i in $(seq 1 50); do
            alive "$bpid" || break
            sleep 0.1
        done
        alive "$bpid" && kill -TERM "$bpid" 2>/dev/null
        rm -f "$run_dir/buildah.pid"
    fi
    if [ -f "$run_dir/container" ]; then
        buildah rm "$(cat "$run_dir/container")" >/dev/null 2>&1 || true
        rm -f "$run_dir/container"
    fi
    say "stopped"
}

case "${1:-build}" in
    build) build ;;
    base)  make_base "$(engine)" ;;
    run)   shift; run "$@" ;;
    reload) reload ;;
    stop)  stop ;;
    *)     die "usage: scripts/image.sh [build|base|run [-d] [nginx options]|reload|stop]" ;;
esac
