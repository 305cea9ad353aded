#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those missing.
# Usage: scripts/deps.sh build|test|run|bench|fuzz|valgrind|analyze|deb|image|k8s ...
set -euo pipefail

want=()
for group in "$@"; do
    case "$group" in
        build) want+=(gcc make nginx nginx-dev libcjson-dev) ;;
        run)   want+=(gcc make nginx nginx-dev libcjson-dev nodejs) ;;
        test)  want+=(gcc make nginx nginx-dev libcjson-dev nodejs npm perl
                      curl python3-prometheus-client clang libclang-rt-14-dev
                      libnginx-mod-http-lua) ;;
        bench) want+=(wrk util-linux procps) ;;
        fuzz)  want+=(clang libclang-rt-14-dev libcjson-dev) ;;
        valgrind) want+=(valgrind) ;;
        analyze) want+=(cppcheck clang) ;;
        # make deb and t/160-deb.t: Debian's own packaging tools
        deb)   want+=(gcc make nginx nginx-dev libcjson-dev debhelper dpkg-dev
                      fakeroot lintian) ;;
        # make image / scripts/image.sh and t/161-image.t
        image) want+=(mmdebstrap podman buildah uidmap curl) ;;
        # t/162-k8s.t: kustomize through kubectl, YAML for the checks. A
        # kubectl already there (Google's kubectl package, a binary) is
        # used as it is; else Debian's kubernetes-client (1.20: its
        # kustomize v2.0.3 is too old for the overlay, and the test says so)
        k8s)   want+=(libyaml-libyaml-perl)
               command -v kubectl >/dev/null 2>&1 \
                   || want+=(kubernetes-client) ;;
        *) echo "deps.sh: unknown group '$group'" >&2; exit 2 ;;
    esac
done

missing=()
for pkg in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

# node may come from elsewhere than Debian (nodesource, nvm): accept it
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    kept=()
    for pkg in "${missing[@]}"; do
        case "$pkg" in nodejs|npm) ;; *) kept+=("$pkg") ;; esac
    done
    missing=("${kept[@]}")
fi

[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2

sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "deps.sh: run as root or install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Debian's nginx package starts a system nginx on port 80; the gateway and
# the tests run their own, so leave the system one stopped
if printf '%s\n' "${missing[@]}" | grep -qx nginx; then
    $sudo systemctl stop nginx 2>/dev/null || $sudo service nginx stop \
        2>/dev/null || true
fi
