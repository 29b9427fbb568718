# The streamex image: every service (engine, risk, gateway, marketdata, history,
# api) runs from it with a different command; see docker-compose.yml. Their
# healthchecks ask /readyz with Python's urllib (no curl in the image).
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY contract/ contract/
COPY matching/ matching/
COPY ledger/ ledger/
COPY candles/ candles/
COPY engine/ engine/
COPY risk/ risk/
COPY redisio/ redisio/
COPY store/ store/
COPY gateway/ gateway/
COPY marketdata/ marketdata/
COPY history/ history/
COPY api/ api/
COPY ops/ ops/
COPY streamex/ streamex/
# The benchmarks ship in the package; their dependencies (the bench extra) do not.
COPY benchmarks/ benchmarks/
RUN pip install . \
    && rm -rf /build \
    && useradd --system --uid 10001 --user-group --create-home \
       --home-dir /var/lib/streamex --shell /usr/sbin/nologin streamex \
    && install -d -o streamex -g streamex -m 700 /var/lib/streamex/history

USER streamex
WORKDIR /var/lib/streamex
EXPOSE 8001 8002 8003
ENTRYPOINT ["streamex"]
CMD ["--help"]
