FROM node:20-bookworm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=optional
COPY . .
ENV ROUTING_HOST=0.0.0.0
EXPOSE 8080 1883
CMD ["npx", "tsx", "bin/main.ts"]
