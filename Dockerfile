# The hotreload container: python, git with ssh, redis-server (used when REDIS_URL is unset), the
# project, and honcho running the Procfile. Add your app's runtimes (node, go, ...) in an
# image built FROM this one.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client redis-server bash ca-certificates procps \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/hotreload
COPY pyproject.toml README.md Procfile ./
COPY producer ./producer
COPY workers ./workers
RUN pip install --no-cache-dir .

ENV PYTHONUNBUFFERED=1 \
    WORKSPACE_PATH=/workspaces/app
EXPOSE 8080 9090

# honcho is PID 1's only child tree: SIGTERM from the platform stops every process.
ENTRYPOINT ["honcho", "-f", "/opt/hotreload/Procfile", "-d", "/opt/hotreload", "start"]
