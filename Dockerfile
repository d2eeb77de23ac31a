# One image for every Relais service; the compose file picks the service with its command.
# The State's design system (DSFR) comes from its npm package, pinned in web/package-lock.json
# (web/.dsfr.yml records the acceptance of its terms of use), and is served by Relais itself.
FROM node:22-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json web/.dsfr.yml ./
RUN npm ci --omit=dev --loglevel=error --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY schemas ./schemas
COPY deploy/__init__.py ./deploy/__init__.py
COPY --from=web /web/node_modules/@gouvfr/dsfr/dist /app/dsfr
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --home /data relais && mkdir -p /data/keys && chown -R relais /data
USER relais
ENV RELAIS_HTTP_HOST=0.0.0.0 RELAIS_DATA_DIR=/data RELAIS_TRANSPORT=kafka \
    RELAIS_DSFR_DIR=/app/dsfr
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["relais", "up"]
