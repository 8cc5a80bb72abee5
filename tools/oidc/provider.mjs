// A real OpenID provider on loopback for the gateway's policy tests: panva's oidc-provider
// (OpenID Certified), configured for the client-credentials grant with JWT access tokens.
//
// Usage:
//   tools/node22 tools/oidc/provider.mjs --config CONFIG.json [--port PORT]
// PORT defaults to $OIDC_PROVIDER_PORT, then 0 (pick a free port). The server binds 127.0.0.1
// only; once it listens it prints exactly one line `READY <issuer>` on stdout, where the issuer
// is `http://127.0.0.1:<port>`. Discovery is at <issuer>/.well-known/openid-configuration.
//
// CONFIG.json:
//   {
//     "keys": [<private JWK>, ...],
//     "resources": [{"audience": "http://127.0.0.1:8000/mcp", "alg": "RS256", "ttl": 300}],
//     "clients": [{"client_id": "...", "client_secret": "...", "scope": "tools:read tools:call",
//                  "groups": ["engineering"], "claims": {"tenant": "acme"}, "alg": "ES256"}]
//   }
//   keys       RSA and EC P-256 private JWKs with `kid`s. For each algorithm the first matching key
//              in the list signs; later ones are only published in the JWKS (rotation overlap).
//   resources  the resource indicators (RFC 8707) tokens may be issued for; `audience` becomes the
//              token's `aud`. A token request without `resource` gets the first one, so every
//              access token is a JWT. `alg` (default RS256) signs tokens for that audience.
//   clients    confidential clients for the client-credentials grant (client_secret_basic or
//              client_secret_post). `scope` lists the scopes the client may request; `groups`
//              (Keycloak style) and `claims` are added to its access tokens; `alg`, if given,
//              overrides the audience's signing algorithm for this client's tokens.
//              A client with `redirect_uris` is instead a native app of the authorization-code
//              grant with PKCE (S256) and refresh tokens (rotated on use), e.g.
//              {"client_id": "cli", "redirect_uris": ["http://127.0.0.1/callback"], "scope": "mcp"}:
//              public (no secret, auth method none) unless it has a `client_secret`. Loopback
//              redirect URIs match on any port (RFC 8252).
//   users      (optional) who may sign in: [{"username": "alice", "password": "...",
//              "groups": ["engineering"], "claims": {...}}]; the username is the token's `sub`,
//              `groups` and `claims` land in the user's access tokens.
//
// Sign-in (a scriptable stand-in for a real IdP's pages, plain HTML forms a test can submit):
//   GET  /interaction/<uid>          the login form (username, password) or the consent form
//   POST /interaction/<uid>/login    checks the user's password; a wrong one shows the form again (401)
//   POST /interaction/<uid>/confirm  grants the requested scopes and resource
//   POST /interaction/<uid>/abort    denies: the client gets error=access_denied
// Access tokens of the authorization-code and refresh grants are JWTs for the requested (else
// the granted) resource.
//
// Key rotation without a restart (the issuer and port stay the same):
//   POST <issuer>/__test/keys with body {"keys": [<private JWK>, ...]} replaces the signing keys
//   and answers {"kids": [...]} once new tokens are signed with them and the JWKS lists them.
//   SIGHUP re-reads CONFIG.json (keys, resources and clients) and prints `RELOADED <kids>`.
// Both rebuild the provider from the new configuration and swap it in; JWT access tokens are
// stateless, so nothing else is lost.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const INTERACTION_PATH = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/;
const MAX_FORM_BODY = 64 * 1024;
// One set of cookie keys for the process: a key rotation rebuilds the provider mid-login.
const COOKIE_KEYS = [randomBytes(32).toString('base64url')];
const ADMIN_KEYS_PATH = '/__test/keys';
const MAX_ADMIN_BODY = 1024 * 1024;

const { values: options } = parseArgs({
  options: {
    config: { type: 'string' },
    port: { type: 'string', default: process.env.OIDC_PROVIDER_PORT ?? '0' },
  },
});
if (!options.config) {
  console.error('provider.mjs: --config CONFIG.json is required');
  process.exit(2);
}

function readConfig() {
  const config = JSON.parse(readFileSync(options.config, 'utf8'));
  for (const field of ['keys', 'resources', 'clients']) {
    if (!Array.isArray(config[field]) || config[field].length === 0) {
      throw new Error(`${options.config}: "${field}" must be a non-empty list`);
    }
  }
  return config;
}

function buildProvider(issuer, config) {
  const resources = new Map(config.resources.map((resource) => [resource.audience, resource]));
  const clients = new Map(config.clients.map((client) => [client.client_id, client]));
  const scopes = new Set(['openid']);
  for (const client of config.clients) {
    for (const scope of (client.scope ?? '').split(' ').filter(Boolean)) scopes.add(scope);
  }
  const allScopes = [...scopes].join(' ');

  const users = new Map((config.users ?? []).map((user) => [user.username, user]));

  const provider = new Provider(issuer, {
    jwks: { keys: config.keys },
    scopes: [...scopes],
    clients: config.clients.map(clientMetadata),
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300 },
    cookies: { keys: COOKIE_KEYS },
    interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => (users.has(sub) ? { accountId: sub, claims: async () => ({ sub }) } : undefined),
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? config.resources[0].audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator, client) => {
          const resource = resources.get(resourceIndicator);
          if (!resource) {
            throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
          }
          const alg = clients.get(client.clientId)?.alg ?? resource.alg ?? 'RS256';
          return {
            audience: resource.audience,
            scope: allScopes,
            accessTokenTTL: resource.ttl ?? 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const owner = token.accountId ? users.get(token.accountId) : clients.get(token.clientId);
      if (!owner) return undefined;
      return { ...owner.claims, ...(owner.groups ? { groups: owner.groups } : undefined) };
    },
  });
  for (const event of ['server_error', 'grant.error']) {
    provider.on(event, (ctx, error) => {
      console.error(`oidc.${event} client=${ctx.oidc?.client?.clientId ?? '-'} error=${error.message}`);
    });
  }
  return provider;
}

function clientMetadata(client) {
  if (!client.redirect_uris) {
    return {
      client_id: client.client_id,
      client_secret: client.client_secret,
      scope: client.scope ?? '',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
    };
  }
  return {
    client_id: client.client_id,
    ...(client.client_secret ? { client_secret: client.client_secret } : undefined),
    scope: client.scope ?? '',
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: client.client_secret ? 'client_secret_basic' : 'none',
  };
}

const kidsOf = (keys) => keys.map((key) => key.kid);

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(response, status, title, body) {
  response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  response.end(`<!DOCTYPE html><html><head><title>${escapeHtml(title)}</title></head><body>${body}</body></html>`);
}

function loginPage(response, uid, clientId, problem) {
  const notice = problem ? `<p role="alert">${escapeHtml(problem)}</p>` : '';
  page(response, problem ? 401 : 200, 'Sign in', `<h1>Sign in to ${escapeHtml(clientId)}</h1>${notice}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="username" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form>`);
}

function consentPage(response, uid, clientId, details) {
  const scopes = new Set([
    ...(details.missingOIDCScope ?? []),
    ...Object.values(details.missingResourceScopes ?? {}).flat(),
  ]);
  page(response, 200, 'Authorize', `<h1>${escapeHtml(clientId)} asks for: ${escapeHtml([...scopes].join(' '))}</h1>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit">Deny</button></form>`);
}

const digest = (text) => createHash('sha256').update(String(text)).digest();
const samePassword = (expected, given) => timingSafeEqual(digest(expected), digest(given));

async function readForm(request) {
  let text = '';
  for await (const chunk of request) {
    text += chunk;
    if (text.length > MAX_FORM_BODY) throw new Error('form too large');
  }
  return new URLSearchParams(text);
}

async function grantConsent(interaction) {
  const { prompt: { details }, params, session, grantId } = interaction;
  const grant = grantId
    ? await current.Grant.find(grantId)
    : new current.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scope] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scope.join(' '));
  }
  return grant.save();
}

async function interact(request, response, uid, action) {
  const interaction = await current.interactionDetails(request, response);
  if (interaction.uid !== uid) throw new Error('interaction does not match its cookie');
  const clientId = interaction.params.client_id;
  const prompt = interaction.prompt.name;
  if (request.method === 'GET' && !action) {
    if (prompt === 'login') loginPage(response, uid, clientId);
    else consentPage(response, uid, clientId, interaction.prompt.details);
    return;
  }
  if (request.method !== 'POST' || !action) {
    reply(response, 405, { error: 'method_not_allowed' });
    return;
  }
  if (action === 'abort') {
    const denied = { error: 'access_denied', error_description: 'The user denied the request.' };
    await current.interactionFinished(request, response, denied, { mergeWithLastSubmission: false });
  } else if (action === 'login' && prompt === 'login') {
    const form = await readForm(request);
    const user = (config.users ?? []).find((each) => each.username === form.get('username'));
    if (!user || !samePassword(user.password, form.get('password') ?? '')) {
      console.error(`oidc.login.failed client=${clientId}`);
      loginPage(response, uid, clientId, 'Invalid username or password.');
      return;
    }
    const result = { login: { accountId: user.username } };
    await current.interactionFinished(request, response, result, { mergeWithLastSubmission: false });
  } else if (action === 'confirm' && prompt === 'consent') {
    const result = { consent: { grantId: await grantConsent(interaction) } };
    await current.interactionFinished(request, response, result, { mergeWithLastSubmission: true });
  } else {
    reply(response, 400, { error: 'invalid_request', error_description: `no ${action} step now (${prompt})` });
  }
}

let config = readConfig();
let issuer;
let current;
let handle;

function install(provider) {
  current = provider;
  handle = provider.callback();
}

async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_ADMIN_BODY) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function reply(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

async function rotateKeys(request, response) {
  let keys;
  try {
    ({ keys } = await readBody(request));
    const rotated = { ...config, keys };
    install(buildProvider(issuer, rotated));
    config = rotated;
  } catch (error) {
    reply(response, 400, { error: 'invalid_keys', error_description: error.message });
    return;
  }
  console.error(`oidc.keys.rotated kids=${kidsOf(keys).join(',')}`);
  reply(response, 200, { kids: kidsOf(keys) });
}

const server = createServer((request, response) => {
  if (request.url === ADMIN_KEYS_PATH) {
    if (request.method !== 'POST') {
      reply(response, 405, { error: 'method_not_allowed' });
      return;
    }
    rotateKeys(request, response);
    return;
  }
  const interaction = INTERACTION_PATH.exec(new URL(request.url, issuer).pathname);
  if (interaction) {
    interact(request, response, interaction[1], interaction[2]).catch((error) => {
      console.error(`oidc.interaction.failed error=${error.message}`);
      if (!response.headersSent) reply(response, 400, { error: 'invalid_request', error_description: error.message });
    });
    return;
  }
  handle(request, response);
});

server.listen(Number(options.port), HOST, () => {
  const { port } = server.address();
  issuer = `http://${HOST}:${port}`;
  install(buildProvider(issuer, config));
  process.stdout.write(`READY ${issuer}\n`);
});

process.on('SIGHUP', () => {
  try {
    const reloaded = readConfig();
    install(buildProvider(issuer, reloaded));
    config = reloaded;
    process.stdout.write(`RELOADED ${kidsOf(config.keys).join(',')}\n`);
  } catch (error) {
    console.error(`oidc.reload.failed error=${error.message}`);
  }
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
