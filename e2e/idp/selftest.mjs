// Self-test for the e2e IdP: `node e2e/idp/selftest.mjs` (any working directory).
//
// Starts server.js on a free port, then acts as browser and relying party: discovery, the
// authorization code flow with PKCE through the login form, the code exchange, a refresh,
// userinfo, access token expiry, and RP-initiated logout with a back-channel logout token.
// Exits 0 when all of it works, 1 with the failing step otherwise; always stops the server.

import { spawn } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('./server.js', import.meta.url));
const REDIRECT_URI = 'http://127.0.0.1:9/cb'; // never contacted: we stop at the redirect
const POST_LOGOUT_URI = 'http://127.0.0.1:9/bye';
const CLIENT_ID = 'selftest-rp';
const CLIENT_SECRET = randomBytes(32).toString('base64url');
const ACCESS_TOKEN_TTL = 2;
const ID_TOKEN_TTL = 60;
const READY_DEADLINE_MS = 10_000;

// === helpers ===

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

function step(name) {
  process.stdout.write(`ok   ${name}\n`);
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Just enough of a browser cookie jar: name, value, path; no domains (one host).
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [key, val = ''] = attr.split('=');
        if (key.toLowerCase() === 'path') path = val;
        if (key.toLowerCase() === 'expires' && Date.parse(val) <= Date.now()) expired = true;
        if (key.toLowerCase() === 'max-age' && Number(val) <= 0) expired = true;
      }
      const key = `${name};${path}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    return [...this.#cookies.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

// One browser request: cookies in and out, redirects not followed.
async function browse(jar, url, { method = 'GET', form } = {}) {
  const headers = { cookie: jar.header(url) };
  let body;
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const response = await fetch(url, { method, headers, body, redirect: 'manual' });
  jar.store(response);
  return response;
}

// Follows redirects on the IdP until one leaves it (to the relying party) or a page is shown.
async function followIdp(jar, issuer, url) {
  let current = url;
  for (let hops = 0; hops < 10; hops += 1) {
    const response = await browse(jar, current);
    if (![302, 303].includes(response.status)) return { response, url: current };
    const next = new URL(response.headers.get('location'), current).href;
    if (!next.startsWith(`${issuer}/`)) return { response, url: next };
    current = next;
  }
  throw new Failure(`too many redirects from ${url}`);
}

async function tokenRequest(discovery, form) {
  const basic = Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64');
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: response.status, body: await response.json() };
}

// Verifies an RS256/ES256 compact JWS against the IdP's JWKS and returns its payload.
async function verifyJwt(discovery, jwt) {
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const { keys } = await (await fetch(discovery.jwks_uri)).json();
  const jwk = keys.find((k) => k.kid === header.kid);
  check(jwk, `no JWKS key for kid ${header.kid}`);
  check(!('d' in jwk), 'JWKS publishes a private key');
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const options = header.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key;
  check(['RS256', 'ES256'].includes(header.alg), `unexpected alg ${header.alg}`);
  check(verify('sha256', Buffer.from(`${h}.${p}`), options, Buffer.from(s, 'base64url')), 'bad JWT signature');
  return JSON.parse(Buffer.from(p, 'base64url'));
}

async function userinfo(discovery, accessToken) {
  return fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
}

// === fixtures ===

// Receives back-channel logout tokens, as a relying party's logout endpoint would.
async function startLogoutReceiver() {
  const received = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    received.push(new URLSearchParams(body).get('logout_token'));
    res.writeHead(200).end();
  });
  await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  return { server, received, uri: `http://127.0.0.1:${server.address().port}/logout` };
}

async function startIdp(dir, backchannelUri) {
  const readyFile = join(dir, 'ready.json');
  const clients = [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    post_logout_redirect_uris: [POST_LOGOUT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    backchannel_logout_uri: backchannelUri,
    backchannel_logout_session_required: true,
  }];
  const child = spawn(process.execPath, [SERVER], {
    env: {
      ...process.env,
      IDP_READY_FILE: readyFile,
      IDP_CLIENTS: JSON.stringify(clients),
      IDP_ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL),
      IDP_ID_TOKEN_TTL: String(ID_TOKEN_TTL),
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => { child.on('exit', (code, signal) => resolve({ code, signal })); });

  const deadline = Date.now() + READY_DEADLINE_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Failure(`server exited early (${child.exitCode}):\n${stderr}`);
    try {
      const ready = JSON.parse(readFileSync(readyFile, 'utf8'));
      return { child, ready, exited, stderr: () => stderr };
    } catch { /* not written yet */ }
    if (Date.now() > deadline) throw new Failure(`no ready file within ${READY_DEADLINE_MS} ms:\n${stderr}`);
    await sleep(50);
  }
}

// === the test ===

async function run(idp, logout) {
  const { issuer, port } = idp.ready;
  check(issuer === `http://127.0.0.1:${port}` && port > 0, `bad ready file ${JSON.stringify(idp.ready)}`);
  step(`ready file: ${issuer}`);

  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check(discovery.issuer === issuer, `discovery issuer ${discovery.issuer}`);
  check(discovery.end_session_endpoint === `${issuer}/session/end`, 'no end_session_endpoint');
  check(discovery.backchannel_logout_supported === true, 'backchannel_logout_supported is not true');
  check(JSON.stringify(discovery.code_challenge_methods_supported) === '["S256"]', 'code_challenge_methods_supported is not [S256]');
  check(discovery.scopes_supported.includes('groups'), 'groups scope not supported');
  step('discovery: end_session_endpoint, backchannel_logout_supported, S256 only');

  const jar = new CookieJar();
  const verifier = b64url(randomBytes(32));
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  const authParams = {
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile email groups',
    state,
    nonce,
  };

  // PKCE is required: a request without a challenge is bounced back to the RP with an error.
  const noPkce = await followIdp(new CookieJar(), issuer, `${discovery.authorization_endpoint}?${new URLSearchParams(authParams)}`);
  check(new URL(noPkce.url).searchParams.get('error') === 'invalid_request', `request without PKCE not rejected: ${noPkce.url}`);
  step('authorization request without code_challenge is rejected');

  const authUrl = `${discovery.authorization_endpoint}?${new URLSearchParams({
    ...authParams,
    code_challenge: b64url(createHash('sha256').update(verifier).digest()),
    code_challenge_method: 'S256',
  })}`;
  const login = await followIdp(jar, issuer, authUrl);
  const loginHtml = await login.response.text();
  check(login.response.status === 200 && /\/interaction\/[^/]+$/.test(new URL(login.url).pathname), `expected login page, got ${login.response.status} at ${login.url}`);
  for (const id of ['username', 'password', 'login']) check(loginHtml.includes(`id="${id}"`), `login page lacks id="${id}"`);
  step('login page has #username, #password, #login');

  const wrong = await browse(jar, login.url, { method: 'POST', form: { username: 'alice', password: 'nope' } });
  check(wrong.status === 200 && (await wrong.text()).includes('invalid credentials'), 'wrong password not re-rendered with "invalid credentials"');
  step('wrong password: 200 with "invalid credentials"');

  const ok = await browse(jar, login.url, { method: 'POST', form: { username: 'alice', password: 'wonderland' } });
  check(ok.status === 303, `login POST gave ${ok.status}`);
  const back = await followIdp(jar, issuer, new URL(ok.headers.get('location'), login.url).href);
  check(back.url.startsWith(`${REDIRECT_URI}?`), `expected redirect to the RP, ended at ${back.url} (${back.response.status})`);
  const callback = new URL(back.url).searchParams;
  check(callback.get('state') === state, 'state not returned');
  check(callback.get('iss') === issuer, 'iss not returned');
  check(callback.get('code'), `no code: ${callback.get('error')} ${callback.get('error_description')}`);
  step('login (consent automatic) redirects to the RP with code, state and iss');

  const exchanged = await tokenRequest(discovery, {
    grant_type: 'authorization_code',
    code: callback.get('code'),
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  });
  check(exchanged.status === 200, `code exchange: ${exchanged.status} ${JSON.stringify(exchanged.body)}`);
  const tokens = exchanged.body;
  check(tokens.access_token && tokens.id_token && tokens.refresh_token, `missing tokens: ${Object.keys(tokens)}`);
  check(tokens.expires_in === ACCESS_TOKEN_TTL, `expires_in ${tokens.expires_in}, expected ${ACCESS_TOKEN_TTL}`);
  const idToken = await verifyJwt(discovery, tokens.id_token);
  check(idToken.iss === issuer && idToken.aud === CLIENT_ID && idToken.nonce === nonce, 'id_token iss/aud/nonce wrong');
  check(idToken.sub === 'alice' && idToken.email === 'alice@example.test' && idToken.email_verified === true, 'id_token email claims wrong');
  check(idToken.name === 'Alice' && JSON.stringify(idToken.groups) === '["staff","admins"]', 'id_token name/groups wrong');
  check(idToken.exp - idToken.iat === ID_TOKEN_TTL, `id_token lifetime ${idToken.exp - idToken.iat}`);
  check(typeof idToken.sid === 'string', 'id_token has no sid (needed for back-channel logout)');
  step(`code exchange (client_secret_basic): id_token verified, refresh_token, expires_in ${tokens.expires_in}`);

  const info = await userinfo(discovery, tokens.access_token);
  check(info.status === 200 && (await info.json()).groups?.includes('admins'), `userinfo ${info.status}`);
  step('userinfo accepts the access token');

  // Poll until the token has expired: server.js allows 1 s of clock tolerance,
  // and whole-second rounding may add one more; give up well after that.
  const expiryDeadline = Date.now() + (ACCESS_TOKEN_TTL + 10) * 1000;
  let expired = await userinfo(discovery, tokens.access_token);
  while (expired.status === 200 && Date.now() < expiryDeadline) {
    await sleep(100);
    expired = await userinfo(discovery, tokens.access_token);
  }
  check(expired.status === 401, `expired access token gave ${expired.status}`);
  step(`access token rejected after ${ACCESS_TOKEN_TTL}s`);

  const refreshed = await tokenRequest(discovery, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  check(refreshed.status === 200, `refresh: ${refreshed.status} ${JSON.stringify(refreshed.body)}`);
  check(refreshed.body.access_token && refreshed.body.id_token && refreshed.body.refresh_token, 'refresh gave no access_token/id_token/refresh_token');
  check((await userinfo(discovery, refreshed.body.access_token)).status === 200, 'refreshed access token rejected');
  step('refresh_token grant gives a working access token');

  const endUrl = `${discovery.end_session_endpoint}?${new URLSearchParams({
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: POST_LOGOUT_URI,
    state: 'bye',
  })}`;
  const confirmPage = await browse(jar, endUrl);
  const confirmHtml = await confirmPage.text();
  check(confirmPage.status === 200 && confirmHtml.includes('id="logout-confirm"'), `logout page ${confirmPage.status} lacks #logout-confirm`);
  // What clicking #logout-confirm submits: the provider's form fields plus logout=yes.
  const action = confirmHtml.match(/<form[^>]*action="([^"]+)"/)?.[1];
  const xsrf = confirmHtml.match(/name="xsrf" value="([^"]+)"/)?.[1];
  check(action && xsrf, 'logout form has no action/xsrf');
  const done = await browse(jar, new URL(action, issuer).href, { method: 'POST', form: { xsrf, logout: 'yes' } });
  const doneAt = new URL(done.headers.get('location') ?? '', issuer);
  check(done.status === 303 && `${doneAt.origin}${doneAt.pathname}` === POST_LOGOUT_URI && doneAt.searchParams.get('state') === 'bye', `logout confirm gave ${done.status} to ${doneAt}`);
  step('RP-initiated logout: page with #logout-confirm, then redirect to post_logout_redirect_uri');

  check(logout.received.length === 1, `expected one back-channel logout token, got ${logout.received.length}`);
  const logoutToken = await verifyJwt(discovery, logout.received[0]);
  check(logoutToken.iss === issuer && logoutToken.aud === CLIENT_ID && logoutToken.sub === 'alice', 'logout token iss/aud/sub wrong');
  check(logoutToken.sid === idToken.sid, 'logout token sid does not match the id_token sid');
  check('http://schemas.openid.net/event/backchannel-logout' in (logoutToken.events ?? {}), 'logout token lacks the logout event');
  step('back-channel logout token delivered with matching sid');

  const afterLogout = await tokenRequest(discovery, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token });
  check(afterLogout.status === 400 && afterLogout.body.error === 'invalid_grant', `refresh after logout gave ${afterLogout.status}`);
  step('refresh token invalid after logout');

  const plainEnd = await browse(new CookieJar(), `${discovery.end_session_endpoint}/success`);
  check((await plainEnd.text()).includes('signed out'), 'post-logout success page lacks "signed out"');
  step('post-logout success page says "signed out"');
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-idp-'));
  const logout = await startLogoutReceiver();
  let idp;
  try {
    idp = await startIdp(dir, logout.uri);
    await run(idp, logout);
    idp.child.kill('SIGTERM');
    const { code, signal } = await idp.exited;
    check(code === 0, `server exit on SIGTERM: code ${code} signal ${signal}`);
    step('server exits 0 on SIGTERM');
    process.stdout.write('idp selftest: 1 passed, 0 failed\n');
  } catch (err) {
    process.stderr.write(`FAIL ${err instanceof Failure ? err.message : err.stack}\n`);
    if (idp) process.stderr.write(`--- server stderr ---\n${idp.stderr()}`);
    process.stdout.write('idp selftest: 0 passed, 1 failed\n');
    process.exitCode = 1;
  } finally {
    if (idp && idp.child.exitCode === null) {
      idp.child.kill('SIGKILL');
      await idp.exited;
    }
    logout.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
