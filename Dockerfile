# The hotreload container: Debian's Python, git and redis-server (used when REDIS_URL is
# unset), the project in a virtual environment, tini as PID 1 (it forwards signals to honcho
# and reaps the orphans that jobs and dev servers leave) and honcho running the Procfile.
#
#   docker build -t hotreload .
#   docker build -t hotreload-node --build-arg INSTALL_NODE=true .
#
# Build arguments (all from Debian's packages, so the image builds from any Debian mirror):
#   BASE_IMAGE          debian:bookworm-slim, or any Debian/Ubuntu image with Python 3.11+
#   INSTALL_NODE        true: nodejs and npm
#   INSTALL_GO          true: golang-go
#   INSTALL_RUBY        true: ruby, ruby-dev, bundler and a C toolchain for native gems
#   EXTRA_APT_PACKAGES  more packages, separated by spaces
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv git openssh-client ca-certificates redis-server tini procps bash \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# Dependencies first, in their own layer: a change to the project's code reuses it.
WORKDIR /opt/hotreload
COPY pyproject.toml README.md Procfile ./
RUN python3 -m venv /opt/hotreload/venv \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && /opt/hotreload/venv/bin/pip install -q -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY producer ./producer
COPY workers ./workers
RUN /opt/hotreload/venv/bin/pip install -q --no-deps . && rm -rf build *.egg-info

# The app's runtimes last, so each variant shares every layer above.
ARG INSTALL_NODE=false
ARG INSTALL_GO=false
ARG INSTALL_RUBY=false
ARG EXTRA_APT_PACKAGES=""
RUN packages="${EXTRA_APT_PACKAGES}"; \
    [ "${INSTALL_NODE}" = true ] && packages="$packages nodejs npm"; \
    [ "${INSTALL_GO}" = true ] && packages="$packages golang-go"; \
    [ "${INSTALL_RUBY}" = true ] && packages="$packages ruby ruby-dev bundler build-essential"; \
    if [ -n "$(echo $packages)" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $packages \
        && apt-get clean && rm -rf /var/lib/apt/lists/*; \
    fi

ENV PATH=/opt/hotreload/venv/bin:$PATH \
    WORKSPACE_PATH=/workspaces/app
WORKDIR /workspaces
# 8080: the app (the guide's port; your DEV_START_COMMAND chooses it). 9090: /dev_health,
# /status, /metrics and /webhook/github (DEV_HEALTH_PORT).
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/dev_health' % os.environ.get('DEV_HEALTH_PORT', '9090'), timeout=4)"

# tini is PID 1: SIGTERM from `docker stop` goes to honcho, which stops every process of the
# Procfile; honcho's exit code is the container's (1 when the boot PRE_DEPLOY fails). The
# command can be replaced, e.g. `docker run ... hotreload bash`.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["honcho", "-f", "/opt/hotreload/Procfile", "-d", "/opt/hotreload", "start"]
