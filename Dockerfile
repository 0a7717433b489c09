# The prediction service. The build stage compiles the TypeScript (tsconfig.build.json: the service without its
# tests, into dist/, laid out as the sources are); the image holds the production dependencies, that JavaScript
# and the files it reads beside it (package.json, db/migrations, flagd-sync.proto, the model, the flags), so
# that paths relative to a module resolve as in the repository. No tsx, esbuild or test file in the image.
# Node's version is .node-version's, the one CI runs on (docker-compose.test.ts keeps them equal).
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY service service
COPY db db
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./
COPY service/flags/flagd-sync.proto service/flags/
COPY db/migrations db/migrations
COPY models/*.onnx models/*.json models/
COPY flagd flagd
# The SLOs the daily report reads its budgets by (service/domain/slo.ts).
COPY slo slo
ENV NODE_ENV=production
EXPOSE 8080 9464
USER node
# As `npm start`, on the compiled entry point: --no-memory-reducer keeps the heap through quiet periods
# (docs/performance.md). The tools run the same way: node service/cli/rollout-cli.js status (docs/operations.md).
CMD ["node", "--no-memory-reducer", "service/main.js"]
