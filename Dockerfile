# aionet container image.
#
#   docker build -t aionet:0.1.0 .
#   docker run --rm -p 8080:8080 -p 7007:7007 -p 7007:7007/udp -p 8053:8053/udp aionet:0.1.0
#
# The image serves /etc/aionet/aionet.yaml (config/aionet.yaml, with AIONET_HOST=0.0.0.0 so
# that its listeners are reachable through published ports); mount your own file there.
# Data (mail, FTP roots, state) goes to /var/lib/aionet: mount a volume to keep it.

# -- build: a wheel of aionet and of every dependency -------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aionet ./aionet
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime: slim Python, the wheels, a non-root user ------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIONET_HOST=0.0.0.0 \
    AIONET_DATA_DIR=/var/lib/aionet
RUN groupadd --system --gid 10001 aionet \
    && useradd --system --uid 10001 --gid aionet --home-dir /var/lib/aionet \
       --shell /usr/sbin/nologin aionet \
    && install -d -o aionet -g aionet -m 0750 /var/lib/aionet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels aionet && rm -rf /wheels
COPY config/aionet.yaml /etc/aionet/aionet.yaml
RUN aionet check -c /etc/aionet/aionet.yaml
USER aionet
WORKDIR /var/lib/aionet
# echo (tcp+udp), http, dns (udp+tcp), admin (metrics, health).
EXPOSE 7007/tcp 7007/udp 8080/tcp 8053/udp 8053/tcp 8025/tcp 8110/tcp 8143/tcp 8021/tcp 50000-50099/tcp 9090/tcp
# SIGTERM drains (stop accepting, finish live connections ≤ server.shutdown_timeout): give
# `docker stop -t` more than shutdown_timeout (10s in the default config).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status == 200 else 1)"]
CMD ["aionet", "run", "-c", "/etc/aionet/aionet.yaml"]
