// A real OpenID Connect provider (panva's oidc-provider) for Gatehouse e2e tests.
//
// Test-only: it listens on 127.0.0.1 over plain http, keeps everything in memory and makes
// fresh signing and cookie keys on every start. Configuration comes from environment variables
// (see README.md); once listening it writes {"issuer","port"} to IDP_READY_FILE (if set).
// IDP_PORT picks the port (default 0: any free one).

import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { Provider } from 'oidc-provider';

const LOOPBACK = '127.0.0.1';
// Login form bodies are tiny; anything bigger is not a browser submitting our form.
const MAX_FORM_BYTES = 16 * 1024;

const DEFAULT_USERS = [
  {
    username: 'alice',
    password: 'wonderland',
    sub: 'alice',
    email: 'alice@example.test',
    name: 'Alice',
    groups: ['staff', 'admins'],
  },
];

// === configuration ===

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is required`);
  return value;
}

function jsonEnv(name, fallback) {
  const raw = process.env[name];
  if (!raw) {
    if (fallback === undefined) fail(`${name} is required`);
    return fallback;
  }
  try {
    return JSON.parse(raw);
  } catch (err) {
    return fail(`${name}: not valid JSON: ${err.message}`);
  }
}

function secondsEnv(name, fallback) {
  const raw = process.env[name];
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) fail(`${name}: expected whole seconds > 0, got ${raw}`);
  return value;
}

function portEnv(name) {
  const raw = process.env[name];
  if (!raw) return 0;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) fail(`${name}: expected a port, got ${raw}`);
  return value;
}

function loadUsers() {
  const users = jsonEnv('IDP_USERS', DEFAULT_USERS);
  if (!Array.isArray(users) || users.length === 0) fail('IDP_USERS: expected a non-empty JSON array');
  users.forEach((user, i) => {
    for (const field of ['username', 'password', 'sub']) {
      if (typeof user?.[field] !== 'string' || user[field] === '') {
        fail(`IDP_USERS[${i}].${field}: expected a non-empty string`);
      }
    }
    if (user.groups !== undefined && !Array.isArray(user.groups)) {
      fail(`IDP_USERS[${i}].groups: expected an array of strings`);
    }
  });
  return users;
}

const config = {
  // Optional outside tests: the demo stacks (docker-compose) give a fixed port.
  readyFile: process.env.IDP_READY_FILE,
  port: portEnv('IDP_PORT'),
  clients: jsonEnv('IDP_CLIENTS'),
  users: loadUsers(),
  accessTokenTtl: secondsEnv('IDP_ACCESS_TOKEN_TTL', 3600),
  idTokenTtl: secondsEnv('IDP_ID_TOKEN_TTL', 3600),
};
if (!Array.isArray(config.clients) || config.clients.length === 0) {
  fail('IDP_CLIENTS: expected a non-empty JSON array of client metadata');
}

// === accounts ===

// Hashing first gives equal-length inputs for timingSafeEqual; every user is compared so the
// time taken does not depend on which username matched.
function digest(value) {
  return createHash('sha256').update(String(value)).digest();
}

function authenticate(username, password) {
  const name = digest(username);
  const pass = digest(password);
  let found;
  for (const user of config.users) {
    const nameOk = timingSafeEqual(name, digest(user.username));
    const passOk = timingSafeEqual(pass, digest(user.password));
    if (nameOk && passOk && !found) found = user;
  }
  return found;
}

async function findAccount(_ctx, sub) {
  const user = config.users.find((u) => u.sub === sub);
  if (!user) return undefined;
  return {
    accountId: user.sub,
    // oidc-provider filters these down to what the granted scopes and claims allow.
    async claims() {
      return {
        sub: user.sub,
        email: user.email,
        email_verified: true,
        name: user.name,
        groups: user.groups ?? [],
      };
    },
  };
}

// === keys ===

// Fresh per process: nothing private is ever written to disk or committed.
function signingKey(alg, options) {
  const { privateKey } = generateKeyPairSync(options.type, options.params);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

// === pages ===

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// No external stylesheets or fonts: browser tests must not reach off the machine.
function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`;
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `<p>Signing in to ${escapeHtml(clientId)}</p>
${error ? `<p id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}">
  <label>Username <input type="text" name="username" id="username" autofocus></label>
  <label>Password <input type="password" name="password" id="password"></label>
  <button type="submit" id="login">Sign in</button>
</form>`);
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

// === interactions ===

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent is automatic: grant exactly what the pending request asks for, no page.
async function grantConsent(provider, req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const id = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId: id } }, {
    mergeWithLastSubmission: true,
  });
}

async function handleInteraction(provider, req, res) {
  // interactionDetails checks the uid in the path against the interaction cookie.
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;

  if (prompt.name === 'consent') return grantConsent(provider, req, res, details);
  if (prompt.name !== 'login') return send(res, 400, page('Error', `unsupported prompt ${escapeHtml(prompt.name)}`));

  if (req.method === 'GET') return send(res, 200, loginPage(uid, params.client_id));

  const form = await readForm(req);
  const user = authenticate(form.get('username') ?? '', form.get('password') ?? '');
  if (!user) return send(res, 200, loginPage(uid, params.client_id, 'invalid credentials'));
  return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, {
    mergeWithLastSubmission: false,
  });
}

// === provider ===

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: config.clients,
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    jwks: {
      keys: [
        signingKey('RS256', { type: 'rsa', params: { modulusLength: 2048 } }),
        signingKey('ES256', { type: 'ec', params: { namedCurve: 'P-256' } }),
      ],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount,
    // Code flow only; this also keeps "implicit" out of grant_types_supported.
    responseTypes: ['code'],
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      profile: ['name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // Put scope claims in the ID token too, so the relying party needs no userinfo call.
    conformIdTokenClaims: false,
    // PKCE on every authorization request; oidc-provider v9 only supports S256.
    pkce: { required: () => true },
    // The default issues refresh tokens only for offline_access, and oidc-provider silently drops
    // that scope unless prompt=consent is also sent. Without it, refresh tokens end with the
    // IdP session (expiresWithSession), which is what logout tests want.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: config.accessTokenTtl,
      IdToken: config.idTokenTtl,
      // Set explicitly so the library prints no "define the expiration" notice for each;
      // a day outlasts any test.
      Interaction: 60 * 60,
      Session: 24 * 60 * 60,
      Grant: 24 * 60 * 60,
      RefreshToken: 24 * 60 * 60,
    },
    // The default 15 s would keep "expired" tokens valid at userinfo/introspection long after
    // a short IDP_ACCESS_TOKEN_TTL; everything runs on one clock, but allow a second of rounding.
    clockTolerance: 1,
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      // Off so access tokens stay opaque and are audienced to userinfo.
      resourceIndicators: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // `form` is the provider's hidden-xsrf form (id "op.logoutForm"); the button submits it
        // with logout=yes, which ends the whole IdP session (all clients get back-channel logout).
        logoutSource: async (ctx, form) => {
          ctx.body = page('Sign out', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout-confirm">Sign out</button>`);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = page('Signed out', '<p id="signed-out">You are signed out.</p>');
        },
      },
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre>${escapeHtml(out.error)}: ${escapeHtml(out.error_description ?? '')}</pre>`);
    },
    // oidc-provider's outgoing fetch (back-channel logout) refuses loopback addresses as an SSRF
    // guard by installing its own dispatcher. Every relying party here is on 127.0.0.1, so drop it.
    fetch: (url, { dispatcher: _ssrfGuard, ...options }) => globalThis.fetch(url, options),
  });

  provider.on('server_error', (_ctx, err) => log(`server error: ${err.stack ?? err}`));
  provider.on('backchannel.error', (_ctx, err, client) => {
    log(`backchannel logout to ${client.clientId} failed: ${err.message}`);
  });
  return provider;
}

// === http ===

function log(message) {
  process.stderr.write(`idp: ${message}\n`);
}

// Log the path only: query strings carry state, nonces and id_token_hint, and the uids in
// /interaction/:uid and /auth/:uid (resume) are as good as a session handle.
function logRequest(req, res) {
  const start = Date.now();
  res.on('finish', () => {
    const path = (req.url ?? '').split('?')[0].replace(/^\/(interaction|auth)\/[^/]+/, '/$1/:uid');
    log(`${req.method} ${path} ${res.statusCode} ${Date.now() - start}ms`);
  });
}

function writeReadyFile(issuer, port) {
  if (!config.readyFile) return;
  const tmp = `${config.readyFile}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ issuer, port }));
  renameSync(tmp, config.readyFile);
}

async function main() {
  let callback;
  let provider;
  const server = createServer((req, res) => {
    logRequest(req, res);
    if (/^\/interaction\/[^/?]+(\?|$)/.test(req.url) && ['GET', 'POST'].includes(req.method)) {
      handleInteraction(provider, req, res).catch((err) => {
        // Typically SessionNotFound: expired interaction or missing cookie.
        log(`interaction failed: ${err.name}: ${err.error_description ?? err.message}`);
        if (!res.headersSent) send(res, 400, page('Error', escapeHtml(err.message)));
        else res.end();
      });
      return;
    }
    if (!callback) return send(res, 503, page('Error', 'starting'));
    return callback(req, res);
  });

  // Port 0 (tests): the OS picks a free port; the issuer is only known after listening.
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, LOOPBACK, resolve);
  });
  const { port } = server.address();
  const issuer = `http://${LOOPBACK}:${port}`;
  provider = buildProvider(issuer);
  callback = provider.callback();

  // Static clients are validated lazily on first use; do it now so bad metadata fails startup.
  for (const client of config.clients) {
    try {
      await provider.Client.find(client.client_id);
    } catch (err) {
      fail(`IDP_CLIENTS: client ${client?.client_id}: ${err.error_description ?? err.message}`);
    }
  }

  writeReadyFile(issuer, port);
  log(`listening on ${issuer}`);

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => fail(`startup failed: ${err.stack ?? err}`));
