#!/usr/bin/env bash
# Static analysis of the module: cppcheck and clang's analyzer, with the
# include paths of the configured nginx tree (build/nginx). Prints what
# they find; exits 1 if they find anything.
set -uo pipefail
cd "$(dirname "$0")/.."

ngx=build/nginx/src
inc=(-I src -I "$ngx/core" -I "$ngx/http" -I "$ngx/http/modules"
     -I "$ngx/http/v2" -I "$ngx/event" -I "$ngx/os/unix" -I build/nginx/objs)
found=0

out=$(cppcheck --enable=warning,performance,portability --inline-suppr \
      --quiet --suppress=missingIncludeSystem --suppress=toomanyconfigs \
      "${inc[@]}" src/*.c 2>&1)
[ -n "$out" ] && { echo "$out"; found=1; }

for f in src/*.c; do
    out=$(clang --analyze "${inc[@]}" "$f" -o /dev/null 2>&1 \
          | grep -E "warning|error")
    [ -n "$out" ] && { echo "$out"; found=1; }
done

[ $found = 0 ] && echo "analyze: cppcheck and clang --analyze found nothing"
exit $found
