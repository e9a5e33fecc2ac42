# syntax=docker/dockerfile:1
# herald's image: one statically linked binary in an empty image.
#
#   docker build -t herald:0.1.0 .
#
# Build stage: scripts/build-static (glibc with +crt-static; the same command
# works outside Docker). Final stage: `scratch` with the binary and the CA
# bundle (kube's rustls client may read the system roots; in a pod it trusts
# the service account's ca.crt for the API server).
#
# Size, measured on 2026-11-21 (x86_64, rustc 1.95, release profile with
# thin LTO) by running the build stage's command by hand, without Docker:
#   bash scripts/build-static      (= the RUN below; 29.5 min on a shared,
#                                   heavily loaded 2-core machine, cold)
#   binary: 6,955,128 bytes unstripped, 5,471,760 bytes stripped (5.2 MiB);
#           `file`: "static-pie linked"; `readelf -d`: no NEEDED entries
#   image contents (binary + CA bundle, 219,597 bytes), as a tar layer:
#           5,703,680 bytes; gzip -9 of that layer: 2,321,041 bytes
# The same files in an otherwise empty chroot ran `herald --version`,
# `check-config`, `run` and `herald status` against it.
# NOT measured: `docker build` itself and `docker images` (no Docker engine
# on the machine where this was written), the rust:1.95-bookworm base image
# (only the build stage uses it), and arm64 builds.
#
# The static glibc binary cannot load glibc's NSS modules, so host names in
# a kubeconfig are not resolved inside the image; in a pod herald reaches
# the API server by KUBERNETES_SERVICE_HOST (an IP) and peers by address.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bash scripts/build-static /out
# File capabilities: Kubernetes starts a non-root container process with no
# capability (no ambient capabilities), so the binary carries the three the
# DaemonSet's bounding set allows (deploy/base/daemonset.yaml says why each).
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
    && setcap cap_net_admin,cap_net_bind_service,cap_sys_nice+ep /out/herald

# The lab variant (`docker build --target lab -t herald-lab:0.1.0 .`): the
# same binary on Debian with iproute2, for the containerlab topologies in
# testnet/topologies, whose nodes set their addresses with `ip` commands.
FROM debian:bookworm-slim AS lab
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/herald /usr/local/bin/herald
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["run", "--config", "/etc/herald/herald.yaml"]

# The shipped image (the default target: the last stage).
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# In PATH, so `kubectl exec ds/herald -- herald status` works.
COPY --from=build /out/herald /usr/local/bin/herald
# Not root: uid/gid 65532. The binary's file capabilities (set above) give
# it NET_ADMIN, NET_BIND_SERVICE and SYS_NICE, within the bounding set the
# DaemonSet allows (`allowPrivilegeEscalation: true`, so the exec may gain
# them; docs/security-model.md says why). Not verified here: that
# the image builder keeps the security.capability attribute through COPY
# (no Docker engine on the reference machine); tests/agent/privileges.rs
# runs the same file capabilities against FRR.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["run", "--config", "/etc/herald/herald.yaml"]
