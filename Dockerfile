# The qwen gateway: nginx with ngx_http_qwen_module, configured from the
# environment, as a non-root user, on a read-only root file system.
# docs/container.md has the contract (ports, variables, files) and how to
# build and run it.
#
#   docker build -t qwen-gateway .                                 Debian's nginx
#   docker build --build-arg BASE=nginx:1.27.3-bookworm -t qwen-gateway .
#   make image           (scripts/image.sh: Docker, or Podman without a registry)
#
# BASE: the runtime image, debian:bookworm-slim (Debian's nginx is installed)
# or an official nginx:<version>-bookworm image (its nginx is kept). The
# build stage starts from the runtime stage, so the module is built against
# exactly the runtime's nginx: Debian's nginx-dev of the same version, or
# the source of that nginx version (nginx.org, or NGINX_SRC_URL),
# configured --with-compat.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS runtime
COPY docker/install-runtime.sh /tmp/install-runtime.sh
RUN sh /tmp/install-runtime.sh && rm -f /tmp/install-runtime.sh

FROM runtime AS build
ARG NGINX_SRC_URL=
COPY docker/build-module.sh /usr/local/sbin/build-module
RUN build-module deps
COPY config /src/config
COPY src /src/src
RUN build-module build

FROM runtime
COPY --from=build /out/ngx_http_qwen_module.so /usr/lib/nginx/modules/
COPY docker/entrypoint.sh /usr/local/bin/qwen-entrypoint
COPY docker/templates/ /etc/nginx/templates/
COPY conf-examples/qwen-models.json /etc/qwen/qwen-models.json
RUN chmod 0644 /usr/lib/nginx/modules/ngx_http_qwen_module.so \
        /etc/nginx/templates/* /etc/qwen/qwen-models.json \
    && chmod 0755 /usr/local/bin/qwen-entrypoint

USER 101:101
# the image's own check: the default configuration renders and loads (the
# upstream pointed at a local address, so that no name is resolved here)
RUN QWEN_UPSTREAM=http://127.0.0.1:9 qwen-entrypoint -t -q \
    && rm -rf /tmp/nginx

EXPOSE 8000 9145
STOPSIGNAL SIGQUIT
# alive, from inside (Docker format only; Kubernetes uses its own probes)
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${QWEN_PORT:-8000} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/qwen-entrypoint"]
CMD []
