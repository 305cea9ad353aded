#!/bin/bash
# The build stage of the Dockerfile, as root, on top of the runtime stage:
# builds ngx_http_qwen_module.so against the exact nginx of the runtime
# image, into /out.
#
#   build-module.sh deps    installs what the build needs (a layer of its own,
#                           cached while the sources change)
#   build-module.sh build   builds /out/ngx_http_qwen_module.so from /src
#
# Debian's nginx (the default base): nginx-dev of exactly the installed
# version, configured with its own flags (/usr/share/nginx/src/conf_flags).
# Any other nginx (an official nginx:<version> image, from nginx.org): the
# source of the version `nginx -v` names, from nginx.org, configured
# --with-compat as that nginx was. NGINX_SRC_URL (a .tar.gz of the same
# version) is used instead when given, whatever the nginx.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
die() { echo "build-module: $*" >&2; exit 1; }

version=$(nginx -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9][0-9.]*\).*|\1|p')
[ -n "$version" ] || die "cannot read the version of nginx: $(nginx -v 2>&1)"
debver=$(dpkg-query -W -f='${Version}' nginx 2>/dev/null || true)

debian_nginx() {
    # Debian's when nginx-dev of exactly that version exists
    [ -n "$debver" ] && apt-cache madison nginx-dev 2>/dev/null \
        | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -qxF "$debver"
}

case "${1:-}" in
deps)
    apt-get update -qq
    if [ -z "${NGINX_SRC_URL:-}" ] && debian_nginx; then
        echo "build-module: Debian's nginx $debver, with nginx-dev $debver"
        apt-get install -y -qq --no-install-recommends gcc make libc6-dev \
            libcjson-dev "nginx-dev=$debver" >/dev/null
    else
        echo "build-module: nginx $version${debver:+ ($debver)}: building" \
             "against its source"
        nginx -V 2>&1 | grep -q -- '--with-compat' \
            || die "nginx $version was not configured --with-compat: a" \
                   "dynamic module built elsewhere cannot load into it"
        apt-get install -y -qq --no-install-recommends gcc make libc6-dev \
            libcjson-dev libpcre2-dev zlib1g-dev libssl-dev curl \
            ca-certificates >/dev/null
        url=${NGINX_SRC_URL:-https://nginx.org/download/nginx-$version.tar.gz}
        echo "build-module: $url"
        mkdir -p /tmp/nginx-src
        curl -fsSL "$url" | tar -xz -C /tmp/nginx-src --strip-components=1 \
            || die "cannot download the source of nginx $version from $url" \
                   "(set --build-arg NGINX_SRC_URL=...)"
        grep -q "NGINX_VERSION *\"$version\"" /tmp/nginx-src/src/core/nginx.h \
            || die "$url is not the source of nginx $version"
    fi
    ;;
build)
    rm -rf /tmp/nginx-build
    if [ -d /tmp/nginx-src ]; then
        cp -r /tmp/nginx-src /tmp/nginx-build
        flags=(--with-compat --with-http_ssl_module --with-http_v2_module
               --with-threads)
    else
        cp -r /usr/share/nginx/src /tmp/nginx-build
        # shellcheck disable=SC1091
        . /tmp/nginx-build/conf_flags
        flags=("${NGX_CONF_FLAGS[@]}")
    fi
    cd /tmp/nginx-build
    ./configure "${flags[@]}" --add-dynamic-module=/src >/tmp/configure.log \
        2>&1 || { tail -30 /tmp/configure.log; die "configure failed"; }
    make -s -f objs/Makefile modules
    mkdir -p /out
    cp objs/ngx_http_qwen_module.so /out/
    echo "build-module: ngx_http_qwen_module.so for nginx $version" \
         "${debver:+(Debian $debver)}"
    ;;
*)
    die "usage: build-module.sh deps|build"
    ;;
esac
