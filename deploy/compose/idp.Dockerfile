# The demo OpenID provider (npm oidc-provider, e2e/idp), for the compose
# stack only: plain http, accounts in memory. From the repository root:
#   docker build -f deploy/compose/idp.Dockerfile -t gatehouse-demo-idp .
FROM node:20-bookworm-slim
WORKDIR /idp
COPY e2e/idp/package.json e2e/idp/package-lock.json ./
RUN npm ci --omit=dev
COPY e2e/idp/ ./
USER node
CMD ["node", "server.js"]
