# A minimal image: Debian's nginx with the module. The Kubernetes-ready
# image (configuration by environment, metrics, health checks) comes with
# its own issue.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        gcc make nginx nginx-dev libcjson-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY config Makefile ./
COPY src src
COPY scripts scripts
RUN make

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        nginx libcjson1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/ngx_http_qwen_module.so /usr/lib/nginx/modules/
COPY conf-examples/qwen-models.json /etc/nginx/qwen-models.json
EXPOSE 8000
CMD ["nginx", "-g", "daemon off;"]
