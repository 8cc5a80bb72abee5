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
//
// Key rotation without a restart (the issuer and port stay the same):
//   POST <issuer>/__test/keys with body {"keys": [<private JWK>, ...]} replaces the signing keys
//   and answers {"kids": [...]} once new tokens are signed with them and the JWKS lists them.
//   SIGHUP re-reads CONFIG.json (keys, resources and clients) and prints `RELOADED <kids>`.
// Both rebuild the provider from the new configuration and swap it in; JWT access tokens are
// stateless, so nothing else is lost.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
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

  const provider = new Provider(issuer, {
    jwks: { keys: config.keys },
    scopes: [...scopes],
    clients: config.clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      scope: client.scope ?? '',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
    })),
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300 },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? config.resources[0].audience,
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
      const client = clients.get(token.clientId);
      if (!client) return undefined;
      return { ...client.claims, ...(client.groups ? { groups: client.groups } : undefined) };
    },
  });
  for (const event of ['server_error', 'grant.error']) {
    provider.on(event, (ctx, error) => {
      console.error(`oidc.${event} client=${ctx.oidc?.client?.clientId ?? '-'} error=${error.message}`);
    });
  }
  return provider;
}

const kidsOf = (keys) => keys.map((key) => key.kid);

let config = readConfig();
let issuer;
let handle;

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
    handle = buildProvider(issuer, rotated).callback();
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
  handle(request, response);
});

server.listen(Number(options.port), HOST, () => {
  const { port } = server.address();
  issuer = `http://${HOST}:${port}`;
  handle = buildProvider(issuer, config).callback();
  process.stdout.write(`READY ${issuer}\n`);
});

process.on('SIGHUP', () => {
  try {
    const reloaded = readConfig();
    handle = buildProvider(issuer, reloaded).callback();
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
