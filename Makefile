# ngx_http_qwen_module
#
#   make          build build/ngx_http_qwen_module.so against Debian's nginx
#   make test     run the whole Test::Nginx suite
#   make run      start the gateway on 127.0.0.1:8000 (Ctrl-C stops it)
#
# NGINX_SRC=/path/to/nginx-1.x.y builds against an upstream nginx source
# tree instead (configured --with-compat).

SHELL     := /bin/bash
NGINX_SRC ?= /usr/share/nginx/src
NGINX_BIN ?= /usr/sbin/nginx
BUILD     := $(CURDIR)/build
MODULE    := $(BUILD)/ngx_http_qwen_module.so
SOURCES   := config $(wildcard src/*.c src/*.h)
CC_OPT    ?= -Wextra -Wno-unused-parameter

.PHONY: all deps-build deps-test test run bench soak analyze valgrind clean matrix \
        deb image

all: $(MODULE)

deps-build:
	@scripts/deps.sh build

$(BUILD)/nginx/objs/Makefile: config | deps-build
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	    else NGX_CONF_FLAGS=(--with-compat); fi; \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc-opt="$(CC_OPT)" \
	        --add-dynamic-module=$(CURDIR) >$(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx/objs/Makefile $(SOURCES)
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_qwen_module.so $(MODULE).tmp
	mv -f $(MODULE).tmp $(MODULE)

deps-test:
	@scripts/deps.sh test

test: deps-test $(MODULE)
	@scripts/run-tests.sh

run: $(MODULE)
	@scripts/deps.sh run
	@scripts/run-gateway.sh

clean:
	rm -rf $(BUILD) t/servroot*

bench: $(MODULE)
	@scripts/deps.sh test bench
	@bench/run.sh

soak: $(MODULE)
	@scripts/deps.sh test bench
	@bench/soak.sh

analyze: $(MODULE)
	@scripts/deps.sh analyze
	@scripts/analyze.sh

# the Test::Nginx suite with nginx under valgrind's memcheck; a valgrind
# error or definite leak fails the test (valgrind.suppress: nginx's own
# allocations that are never freed at exit)
# (TEST_NGINX_BINARY is t/nginx.sh, a shell script that execs nginx:
# --trace-children=yes makes valgrind follow it into nginx)
valgrind: deps-test $(MODULE)
	@scripts/deps.sh valgrind
	@TEST_NGINX_USE_VALGRIND="--num-callers=100 --tool=memcheck \
	    --leak-check=full --show-possibly-lost=no --trace-children=yes \
	    --suppressions=$(CURDIR)/valgrind.suppress" \
	    scripts/run-tests.sh $(VALGRIND_TESTS)

VALGRIND_TESTS ?= t/010-config.t t/020-transform.t t/030-bad-input.t \
                  t/040-body-layout.t t/050-region.t t/060-upstream.t \
                  t/070-models.t t/080-openai-client.t t/100-usage.t \
                  t/110-metrics.t t/130-neighbours.t t/131-credentials.t \
                  t/132-body-paths.t t/133-credential-edges.t

# every nginx release in ../shared/nginx-src built with the module and the
# whole suite run against each (docs/compatibility.md); MATRIX_BUILD_ONLY=1
# builds only, MATRIX_VERSIONS="1.24.0 1.31.4" picks versions
matrix:
	@scripts/matrix.sh $(MATRIX_VERSIONS)

# libnginx-mod-http-qwen_*.deb for Debian's nginx, built with debhelper and
# dh_nginx into build/deb/ (docs/debian.md)
deb:
	@scripts/deb.sh

# the container image (Dockerfile) with Docker, or Podman where there is no
# Docker engine (docs/container.md)
image:
	@scripts/image.sh
