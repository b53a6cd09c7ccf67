# syntax=docker/dockerfile:1
# relay in a slim image. Build: docker build -t relay .   Run: see README "Docker".
#
#   /etc/relay/relay.toml  the configuration, mounted read-only (host = "0.0.0.0" in it)
#   /var/lib/relay         the working directory; the default store url
#                          sqlite:///data/relay.db lands in /var/lib/relay/data, the volume

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY schemas ./schemas
# relay and every dependency as wheels, so the final image needs no compiler and no network.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels relay \
 && groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --home-dir /var/lib/relay \
            --shell /usr/sbin/nologin relay \
 && mkdir -p /var/lib/relay/data /etc/relay \
 && chown -R relay:relay /var/lib/relay
WORKDIR /var/lib/relay
VOLUME ["/var/lib/relay/data"]
# Numeric, so that runAsNonRoot-style checks can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# relay's own probe (Python's urllib inside): no curl in a slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["relay", "healthcheck", "--config", "/etc/relay/relay.toml"]
ENTRYPOINT ["relay", "serve"]
CMD ["--config", "/etc/relay/relay.toml"]
