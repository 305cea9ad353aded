#!/usr/bin/env bash
# make matrix: builds nginx from each release source in ../shared/nginx-src
# (NGINX_SRC_DIR) with the module as a dynamic module, and runs the whole
# suite against each binary (docs/compatibility.md).
#
# Usage: scripts/matrix.sh [version ...]     (default: every nginx-*.tar.gz)
#   MATRIX_BUILD_ONLY=1   build only, run no tests
#   NGINX_SRC_DIR=dir     where the nginx-<version>.tar.gz files are
#   MATRIX_JOBS=n         make -j (2)
#
# Per version, under build/matrix/<version>/: nginx-<version>/ (the source
# tree, configured --prefix=build/matrix/<version>/prefix
# --error-log-path=stderr, the binary in
# objs/nginx and the module in objs/ngx_http_qwen_module.so), build.log,
# test.log. One line per version on stdout:
#   <version>  build ok|failed  tests <n> passed <n> failed (<files>)  <seconds>s
# The exit status is non-zero when a build or a suite run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

src_dir=${NGINX_SRC_DIR:-$repo/../shared/nginx-src}
jobs=${MATRIX_JOBS:-2}
build_only=${MATRIX_BUILD_ONLY:-0}
CC_OPT=${CC_OPT:--Wextra -Wno-unused-parameter}

# what configure needs (PCRE2, zlib, OpenSSL headers) besides the module's
# own build and test prerequisites
scripts/deps.sh build || exit 1
[ "$build_only" = 1 ] || scripts/deps.sh test || exit 1
missing=()
for pkg in libpcre2-dev zlib1g-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
        | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "matrix.sh: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" != 0 ] && sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null || exit 1
fi

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
    mapfile -t versions < <(ls "$src_dir" 2>/dev/null \
        | sed -n 's/^nginx-\([0-9.]*\)\.tar\.gz$/\1/p' | sort -V)
fi
if [ ${#versions[@]} -eq 0 ]; then
    echo "matrix.sh: no nginx-*.tar.gz in $src_dir" >&2
    exit 1
fi

status=0
for v in "${versions[@]}"; do
    start=$(date +%s)
    dir=$repo/build/matrix/$v
    tree=$dir/nginx-$v
    tarball=$src_dir/nginx-$v.tar.gz
    mkdir -p "$dir"
    # --error-log-path=stderr as Debian's nginx (what make test uses): what
    # nginx says before its configuration is loaded goes to stderr, where
    # the tests that run "nginx -t" by hand look for it (t/nginx.sh adds
    # -e logs/error.log for Test::Nginx, as it does for Debian's);
    # auth_request (t/130-neighbours.t), sub_filter and thread pools
    # (t/compat-selftest), which Debian's nginx has too
    conf=(--prefix="$dir/prefix" --error-log-path=stderr
          --with-compat --with-debug
          --with-http_ssl_module --with-http_v2_module
          --with-http_auth_request_module --with-http_sub_module --with-threads
          --with-cc-opt="$CC_OPT" --add-dynamic-module="$repo")
    build=ok
    {
        if [ ! -f "$tarball" ]; then
            echo "no $tarball"; false
        elif [ ! -f "$tree/objs/Makefile" ] || [ config -nt "$tree/objs/Makefile" ] \
                || [ "$(cat "$dir/configure.args" 2>/dev/null)" != "${conf[*]}" ]; then
            rm -rf "$tree" "$dir/configure.args" &&
            tar -xzf "$tarball" -C "$dir" &&
            (cd "$tree" && ./configure "${conf[@]}") &&
            echo "${conf[*]}" >"$dir/configure.args"
        fi &&
        make -C "$tree" -j"$jobs" -f objs/Makefile binary modules
    } >"$dir/build.log" 2>&1 || build=failed
    [ -x "$tree/objs/nginx" ] && [ -f "$tree/objs/ngx_http_qwen_module.so" ] \
        || build=failed

    result= tstatus=0
    if [ "$build" = failed ]; then
        status=1
        grep -m5 -E 'error:|Error [0-9]|not found' "$dir/build.log" \
            | sed "s|^|matrix.sh: $v: |" >&2
    elif [ "$build_only" != 1 ]; then
        # the suite as make test runs it, with this nginx: t/nginx.sh and
        # the tests that start nginx by hand take it from QWEN_NGINX. A
        # file that bails out (Test::Nginx cannot start nginx) stops prove:
        # the files after it are run again in a further run-tests.sh.
        # t/16x test the Debian package, the container image and the
        # Kubernetes manifests: each builds against its own nginx (Debian's,
        # the image's), not this one, so they run once, in make test
        remaining=()
        for f in t/*.t; do
            case "$f" in t/16[0-9]-*) ;; *) remaining+=("$f") ;; esac
        done
        perl -MTest::Nginx::Socket -e1 2>/dev/null \
            || remaining+=(t/compat-selftest/*.t)
        : >"$dir/test.log"
        tstatus=0 total=0 failed=0 files= bails=
        while [ ${#remaining[@]} -gt 0 ]; do
            part=$dir/test.part.log
            rc=0
            QWEN_NGINX="$tree/objs/nginx" \
            TEST_NGINX_LOAD_MODULES="$tree/objs/ngx_http_qwen_module.so" \
                scripts/run-tests.sh "${remaining[@]}" >"$part" 2>&1 || rc=$?
            cat "$part" >>"$dir/test.log"
            [ "$rc" != 0 ] && tstatus=$rc
            # prove: "Files=29, Tests=812, ..." and, per failing file,
            # "t/x.t (Wstat: 256 (exited 1) Tests: 10 Failed: 1)"
            n=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$part" | tail -1)
            total=$(( total + ${n:-0} ))
            n=$(sed -n 's/^t\/.*(Wstat: .* Failed: \([0-9]*\))$/\1/p' "$part" \
                | awk '{ s += $1 } END { print s + 0 }')
            failed=$(( failed + n ))
            n=$(grep -E '^t/.*\(Wstat: ' "$part" | sed 's/ .*//' | sort -u | paste -sd, -)
            [ -n "$n" ] && files=${files:+$files,}$n
            grep -q '^FAILED--Further testing stopped' "$part" || break
            bail=$(grep -oE '^t/[^ ]+\.t \.\.' "$part" | tail -1 | sed 's/ \.\.$//')
            bails="$bails $bail"
            next=() seen=0
            for f in "${remaining[@]}"; do
                [ "$seen" = 1 ] && next+=("$f")
                [ "$f" = "$bail" ] && seen=1
            done
            remaining=("${next[@]}")
        done
        rm -f "$dir/test.part.log"
        total=${total:-0}
        result="tests $((total - failed)) passed $failed failed"
        [ -n "$files" ] && result="$result ($files)"
        [ -n "$bails" ] && result="$result bailed out:$bails"
        if [ "$tstatus" != 0 ]; then
            status=1
            [ -z "$files" ] && result="$result (run-tests.sh exit $tstatus)"
        fi
    fi
    printf '%-8s build %-6s %s  %ss\n' "$v" "$build" "${result:-tests not run}" \
        "$(( $(date +%s) - start ))"
    if [ "${tstatus:-0}" != 0 ] && [ -f "$dir/test.log" ]; then
        # what failed, so that a CI log says it without the build tree
        grep -E '^not ok|^#   Failed test|^Bailout|^FAILED|^t/.*\(Wstat' \
            "$dir/test.log" | cut -c1-300 | head -40 | sed "s|^|matrix.sh: $v: |" >&2
    fi
done
exit "$status"
