# radstream services image (worker, DICOM worker, storage SCP, HL7 listener): docker compose builds it.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir --no-deps -r requirements.lock
COPY radstream radstream
COPY streams streams
COPY processors processors
COPY sinks sinks
COPY schemas schemas
ENV PYTHONPATH=/app RADSTREAM_STATE_DIR=/data
VOLUME /data
ENTRYPOINT ["python", "-m", "radstream"]
