# One image for every Python deployable; the command picks the part:
#   pantau edge run | pantau ingest run | pantau api run | pantau fwsim run ...
# A pinned base: a rebuild gets the same interpreter and Debian release.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # pantau.paths finds mosquitto/, grafana/ and firmware-sim/scenarios/ here, not in
    # site-packages.
    PANTAU_HOME=/app

WORKDIR /app

# Dependencies first, so a code change does not reinstall numpy and friends.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY contract ./contract
COPY city ./city
COPY edge ./edge
COPY cloud ./cloud
COPY firmware-sim ./firmware-sim
COPY pantau ./pantau
COPY mosquitto ./mosquitto
COPY grafana ./grafana
# gcc only while building: the ingester's native JSON column decoder and raw-line formatter
# (ADRs 0034, 0039) are optional extensions, so without a compiler pip would quietly build a
# slower package; the import check (outside /app, whose sources have no .so) makes the image
# build fail instead.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-deps . \
    && (cd / && python -c "import cloud.ingest.decode._jsoncols, cloud.ingest._rawlines") \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/pantau pantau \
    && mkdir -p /var/lib/pantau/spool /var/lib/pantau/dead-letters \
    && chown -R pantau:pantau /var/lib/pantau

# Never root: a gateway image runs next to hospital networks.
USER pantau
ENTRYPOINT ["pantau"]
CMD ["--help"]
