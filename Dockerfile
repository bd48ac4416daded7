# The app and the kit, for the worker and Flower services of docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY envoi_mails ./envoi_mails
COPY demo ./demo
RUN pip install --no-cache-dir . && useradd --create-home celery
# Celery warns loudly when a worker runs as root: run as a plain user.
USER celery
CMD ["celery", "-A", "envoi_mails", "worker", "--loglevel=info", "-E"]
