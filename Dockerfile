# Home Assistant's Python base image: Alpine, s6-overlay v3 (its /init is the entrypoint), bashio.
# The tag is a multi-platform manifest (linux/amd64, linux/arm64), so one default serves both
# architectures in config.yaml; the Supervisor builds without build.yaml (deprecated since
# Supervisor 2026.04) and leaves this default in place.
ARG BUILD_FROM=ghcr.io/home-assistant/base-python:3.13-alpine3.24-2026.06.1

# aiokafka (the Kafka uplink's client) publishes no musllinux wheel, and its source build needs
# a C compiler and zlib headers: it is built into a wheel here, on the architecture being built,
# and only the wheel goes on; the compiler never reaches the add-on's image.
FROM ${BUILD_FROM} AS wheels
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG AIOKAFKA_VERSION=0.14.0
# The base image tag pins the Alpine release, and with it these packages' versions.
# hadolint ignore=DL3018
RUN apk add --no-cache build-base zlib-dev \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels "aiokafka==${AIOKAFKA_VERSION}"

FROM ${BUILD_FROM}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Wheels for pyzmq, cryptography, aiohttp and zeroconf exist for musl on both architectures;
# aiokafka's comes from the stage above (--only-binary: never a source build here). The sources
# and the wheel are removed once the package is in site-packages.
COPY --from=wheels /wheels /tmp/wheels
COPY pyproject.toml README.md /tmp/src/
COPY argentic_edge /tmp/src/argentic_edge
RUN pip install --no-cache-dir --find-links /tmp/wheels --only-binary aiokafka /tmp/src \
    && rm -rf /tmp/src /tmp/wheels

COPY rootfs /

# In add-on mode the app writes the URL of its /healthz endpoint (the ingress listener, whose
# port the Supervisor assigns) to this file once it listens; no file yet means not healthy yet.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/bin/bash", "-c", "curl --fail --silent --show-error --max-time 4 \"$(cat /run/argentic-edge/healthz-url)\" || exit 1"]

ARG BUILD_ARCH=amd64
ARG BUILD_VERSION=0.1.0
LABEL \
    io.hass.name="Argentic Edge" \
    io.hass.description="LAN messaging appliance for Argentic multi-agent systems" \
    io.hass.arch="${BUILD_ARCH}" \
    io.hass.type="addon" \
    io.hass.version="${BUILD_VERSION}" \
    org.opencontainers.image.title="Argentic Edge" \
    org.opencontainers.image.description="LAN messaging appliance for Argentic multi-agent systems" \
    org.opencontainers.image.source="https://github.com/argentic-edge/argentic-edge" \
    org.opencontainers.image.url="https://github.com/argentic-edge/argentic-edge" \
    org.opencontainers.image.documentation="https://github.com/argentic-edge/argentic-edge/blob/main/DOCS.md" \
    org.opencontainers.image.licenses="MIT" \
    org.opencontainers.image.version="${BUILD_VERSION}"
