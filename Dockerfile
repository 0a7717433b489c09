# The prediction service. TypeScript runs through tsx (no build step); the model artifacts are part of the image.
FROM node:20.19.0-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY service service
COPY db db
COPY models/*.onnx models/*.json models/
COPY flagd flagd
ENV NODE_ENV=production
EXPOSE 8080 9464
USER node
# As `npm start`: --no-memory-reducer keeps the heap through quiet periods (docs/performance.md).
CMD ["node", "--no-memory-reducer", "--import", "tsx", "service/main.ts"]
