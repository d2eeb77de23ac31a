// A real OpenID provider for the tests: panva's oidc-provider (OpenID Certified), pinned in
// package-lock.json beside this file. One confidential client (Relais), PKCE required, the
// library's own development sign-in and consent pages (any login name works, with any
// password: the login name is the account's id, its `sub`).
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port", "client_id", "client_secret", "redirect_uri", "accounts": {id: claims},
// "id_token_claims": false, "signed_userinfo": false}. With id_token_claims, the ID token
// carries the claims of the scopes granted too (else, as the library does by default, only
// the userinfo answer does); with signed_userinfo, the userinfo answer is a JWT signed with
// RS256 (as ProConnect answers).
// An account's claims (email, email_verified, name, organisation...) are given out by scope:
// email -> email, email_verified; profile -> name; organisation -> organisation. A login
// name that is not in `accounts` is an account with no claims but its `sub`.
// It prints "ready <issuer>" on stdout once it listens.

import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...(config.signed_userinfo ? { userinfo_signed_response_alg: 'RS256' } : {}),
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'organisation'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    organisation: ['organisation'],
  },
  conformIdTokenClaims: !config.id_token_claims,
  features: { devInteractions: { enabled: true }, jwtUserinfo: { enabled: true } },
  cookies: { keys: [config.client_secret] },
  async findAccount(_ctx, id) {
    const claims = config.accounts[id] ?? {};
    return {
      accountId: id,
      async claims() {
        return { ...claims, sub: id };
      },
    };
  },
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
