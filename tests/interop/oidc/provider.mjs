// node oidc-provider (a certified OpenID provider) on loopback for the interop tests:
// client credentials, RFC 8707 resource indicators with RFC 9068 JWT access tokens for exactly one
// resource (the gateway's URL), signed with an Ed25519 key that the provider names EdDSA.
// usage: node provider.mjs PORT RESOURCE_URL   (prints "ready <issuer>" once listening)
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const [port, resource] = [Number(process.argv[2]), process.argv[3]];
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ed25519');
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'ed25519-1', alg: 'EdDSA', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'reporting',
      client_secret: 's3cret-value',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      id_token_signed_response_alg: 'EdDSA',
    },
  ],
  jwks: { keys: [key] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'EdDSA' } },
        };
      },
    },
  },
  extraTokenClaims: () => ({ department: 'stats', roles: ['analyst'] }),
});
provider.proxy = false;
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
