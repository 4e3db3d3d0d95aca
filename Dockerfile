# The recsys service and jobs on the CPU build of PyTorch. Every setting comes from RECSYS_*
# environment variables (see README); docker-compose.yml wires the services together.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

# torch first, from PyTorch's CPU index: a plain `pip install torch` would pull the CUDA build
# (several GB). The project's own requirement (torch>=2.4) is then already met.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md alembic.ini ./
COPY recsys recsys
COPY service service
COPY migrations migrations
# Editable: `recsys db upgrade` finds alembic.ini and migrations/ beside the package.
RUN pip install -e .

RUN useradd --create-home --uid 10001 recsys \
    && mkdir -p /var/lib/recsys/artifacts \
    && chown -R recsys /var/lib/recsys
USER recsys
ENV RECSYS_ARTIFACT_DIR=/var/lib/recsys/artifacts
EXPOSE 8000
CMD ["recsys", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
