# The routing service's image. Two stages; docs/deploy.md explains each line, and
# test/production.test.ts replays both stages' commands outside Docker and runs the result.

# --- build: every dependency (the compiler; better-sqlite3's native build needs python3, make,
# g++, all in this image), the compiled JavaScript in dist/, then the devDependencies pruned.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies and dist/ only, no compiler, no npm in the command line.
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production ROUTING_HOST=0.0.0.0 ROUTING_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The only writable place the service needs (SQLite, the dev secret): the root filesystem can be read-only.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
# The unprivileged user of the node images (uid 1000).
USER node
EXPOSE 8080 1883
# node itself is PID 1 (exec form: no npm, npx or shell in between), so SIGTERM reaches the
# service's drain; it starts no child processes, so there is nothing to reap.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ROUTING_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--enable-source-maps", "dist/bin/main.js"]
