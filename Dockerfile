# radstream services image (worker, ingest listeners, DICOM worker, storage SCP): docker compose builds it.
# radstream is installed as a package (`pip install .`, the `radstream` command), its dependencies from the
# lock; no VOLUME here: each compose service mounts the volumes its command writes (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /src
COPY requirements.lock .
RUN pip install --no-cache-dir --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY radstream radstream
COPY streams streams
COPY processors processors
COPY sinks sinks
COPY schemas schemas
# setuptools comes from the lock: the build needs no download
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && cd / && rm -rf /src
WORKDIR /data
ENV RADSTREAM_STATE_DIR=/data
ENTRYPOINT ["radstream"]
