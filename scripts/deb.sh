#!/usr/bin/env bash
# make deb: builds the Debian package libnginx-mod-http-qwen for Debian's
# nginx with debhelper and dh_nginx (debian/, docs/debian.md), runs lintian
# on it and prints the path and size of the .deb.
#
# The build runs in a copy of the tree in a temporary directory, so that
# nothing is written into the checkout but the result: the .deb, the
# -dbgsym .deb, the .buildinfo and the .changes, in build/deb/ (previous
# libnginx-mod-http-qwen files there are replaced).
#
# Environment:
#   DEB_OUTDIR=dir    where the result goes (default: build/deb)
#   DEB_VERSION=x     the package version (default: debian/changelog's), as
#                     a new changelog entry in the copy; the upgrade test
#                     builds a higher one
#   DEB_LINTIAN=0     skip lintian
#   DEB_FROM=ref      build what git commit ref holds (a tag, HEAD) instead
#                     of the working tree
#
# Exits non-zero when the build fails or lintian reports an error (E:).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

outdir=${DEB_OUTDIR:-$repo/build/deb}
case $outdir in /*) ;; *) outdir=$repo/$outdir ;; esac
lintian_on=${DEB_LINTIAN:-1}

scripts/deps.sh deb

work=$(mktemp -d "${TMPDIR:-/tmp}/qwen-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

# what the package is built from: the module's sources, its documentation
# and examples, the packaging
tree="$work/tree"
mkdir "$tree"
parts=(config LICENSE README.md src docs conf-examples debian)
if [ -n "${DEB_FROM:-}" ]; then
    git archive --format=tar "$DEB_FROM" -- "${parts[@]}" | tar -x -C "$tree"
else
    cp -a "${parts[@]}" "$tree/"
fi

pkg=$(sed -n 's/^Source: *//p' "$tree/debian/control")
version=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)
if [ -n "${DEB_VERSION:-}" ]; then
    if ! dpkg --validate-version "$DEB_VERSION" 2>/dev/null \
            || [ "${DEB_VERSION#*-}" = "$DEB_VERSION" ]; then
        echo "deb.sh: DEB_VERSION=$DEB_VERSION is not a version with a" \
             "Debian revision (such as 0.10.1-1)" >&2
        exit 2
    fi
    version=$DEB_VERSION
    # a changelog entry for it, above the others
    cl="$tree/debian/changelog"
    {
        printf '%s (%s) %s; urgency=medium\n\n' "$pkg" "$version" \
            "$(dpkg-parsechangelog -l "$cl" -S Distribution)"
        printf '  * Build of version %s (DEB_VERSION).\n\n' "$version"
        printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$cl" -S Maintainer)" \
            "$(date -R)"
        cat "$cl"
    } >"$cl.new"
    mv "$cl.new" "$cl"
fi
upstream=${version%-*}
upstream=${upstream#*:}
src="$work/$pkg-$upstream"
mv "$tree" "$src"

echo "deb.sh: building $pkg $version in $work"
start=$(date +%s)
log="$work/build.log"
if ! (cd "$src" &&
      DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
      dpkg-buildpackage -b -us -uc) >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "deb.sh: dpkg-buildpackage failed" >&2
    exit 1
fi
echo "deb.sh: built in $(( $(date +%s) - start ))s"

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
noepoch=${version#*:}
deb="$outdir/${pkg}_${noepoch}_${arch}.deb"
changes="$outdir/${pkg}_${noepoch}_${arch}.changes"

mkdir -p "$outdir"
rm -f "$outdir/${pkg}"_* "$outdir/${pkg}"-dbgsym_*
cp "$work/${pkg}"_*.deb "$work/${pkg}"_*.buildinfo "$work/${pkg}"_*.changes \
   "$outdir/"
cp "$work/${pkg}"-dbgsym_*.*deb "$outdir/" 2>/dev/null || true

status=0
if [ "$lintian_on" != 0 ]; then
    echo "deb.sh: lintian $(basename "$changes")"
    lint="$work/lintian.txt"
    lintian --display-info --pedantic --fail-on error \
        "$changes" >"$lint" 2>&1 || status=$?
    cat "$lint"
    e=$(grep -c '^E: ' "$lint" || true)
    w=$(grep -c '^W: ' "$lint" || true)
    i=$(grep -c '^I: ' "$lint" || true)
    p=$(grep -c '^P: ' "$lint" || true)
    echo "deb.sh: lintian: $e errors, $w warnings, $i info, $p pedantic"
    [ "$e" != 0 ] && status=1
fi

echo "deb.sh: $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb -f "$deb" Package Version Depends | sed 's/^/  /'
exit "$status"
