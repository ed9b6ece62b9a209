// A real, independent OpenID provider for the end-to-end tests: panva's `oidc-provider`
// (OpenID-certified), pinned in package.json. Started by the tests; prints one JSON line with its
// issuer once it listens.
//
// Environment:
//   REDIRECT_URIS            comma-separated redirect URIs of the client `pomerium`
//   POST_LOGOUT_REDIRECT_URIS comma-separated post-logout redirect URIs
//   ACCESS_TOKEN_TTL         seconds (default 3600); short in the refresh test
//   SUBSTITUTE_ID_TOKEN_FROM failure injection: a client id (`someone-else`) whose last ID token
//                            replaces the one the token endpoint gives `pomerium`
//   REFUSE_REFRESH           failure injection: every refresh-token grant is answered with
//                            `invalid_grant`, as when a user's grant is revoked at the provider
//   USERINFO_DELAY_MS        failure injection: a slow provider, whose userinfo endpoint answers
//                            only after this many milliseconds
//   USERINFO_FAIL_FIRST      failure injection: the first N userinfo calls answer 500 (a provider
//                            in trouble); each failure is printed
//   REFRESH_WITHOUT_ID_TOKEN failure injection: refresh-token grants answer without an ID token
//   USERINFO_ONLY_SUB        failure injection: userinfo answers with `sub` alone
//   REFRESH_ID_TOKEN_OF      failure injection: an account (`bob`) whose last code-grant ID token
//                            answers every other account's refresh
//   MUTABLE_ACCOUNTS         test hook: `POST /__test/accounts/<sub>/groups` with a form body
//                            `groups=a,b` replaces that account's groups, as an administrator would at the
//                            provider; later ID tokens and userinfo answers carry the new groups
//
// Users (the dev login form accepts any password): alice (engineering), bob (other.org).

import http from 'node:http';
import Provider from 'oidc-provider';

const list = (name) => (process.env[name] || '').split(',').map((s) => s.trim()).filter(Boolean);

const accounts = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example', groups: ['engineering', 'staff'] },
  bob: { email: 'bob@other.org', email_verified: true, name: 'Bob Other', groups: ['sales'] },
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'pomerium',
        client_secret: 'pomerium-test-secret',
        redirect_uris: list('REDIRECT_URIS'),
        post_logout_redirect_uris: list('POST_LOGOUT_REDIRECT_URIS'),
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // Another relying party: its ID tokens must not be accepted by pomerium.
        client_id: 'someone-else',
        client_secret: 'someone-else-secret',
        redirect_uris: list('REDIRECT_URIS'),
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    async findAccount(ctx, sub) {
      const account = accounts[sub];
      if (!account) return undefined;
      return { accountId: sub, async claims() { return { sub, ...account }; } };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Claims in the ID token too, so that the ID token alone identifies the user.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    pkce: { required: () => false },
    // A refresh token for every code grant, without demanding `prompt=consent`.
    issueRefreshToken: async () => true,
    ttl: {
      AccessToken: Number(process.env.ACCESS_TOKEN_TTL || 3600),
      IdToken: 3600,
      RefreshToken: 86400,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
    },
    cookies: { keys: ['pomerium-test-cookie-key'] },
  });
  provider.proxy = false;
  // Seen by the tests: every revocation, so that a sign-out can be checked to revoke.
  provider.on('grant.revoked', () => console.log(JSON.stringify({ event: 'revoked' })));
  provider.on('refresh_token.destroyed', () => console.log(JSON.stringify({ event: 'revoked' })));
  provider.on('access_token.destroyed', () => console.log(JSON.stringify({ event: 'revoked' })));
  provider.on('grant.success', () => console.log(JSON.stringify({ event: 'grant.success' })));
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  // Seen by the tests: every userinfo call, so that a test can tell a token never reached it.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/me') console.log(JSON.stringify({ event: 'userinfo' }));
    await next();
  });
  // Failure injection, only with USERINFO_DELAY_MS: a slow userinfo endpoint.
  const userinfoDelay = Number(process.env.USERINFO_DELAY_MS || 0);
  if (userinfoDelay > 0) {
    provider.use(async (ctx, next) => {
      if (ctx.path === '/me') await new Promise((resolve) => setTimeout(resolve, userinfoDelay));
      await next();
    });
  }
  // Failure injection, only with USERINFO_FAIL_FIRST: the provider fails its first userinfo calls.
  let userinfoFailures = Number(process.env.USERINFO_FAIL_FIRST || 0);
  if (userinfoFailures > 0) {
    provider.use(async (ctx, next) => {
      if (ctx.path === '/me' && userinfoFailures > 0) {
        userinfoFailures -= 1;
        ctx.status = 500;
        ctx.body = { error: 'server_error', error_description: 'failure injection' };
        console.log(JSON.stringify({ event: 'userinfo.failed' }));
        return;
      }
      await next();
    });
  }
  // Failure injection, only with REFUSE_REFRESH: the refresh-token grant fails as a revoked grant
  // does (400 invalid_grant); each refusal is printed.
  if (process.env.REFUSE_REFRESH) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'refresh_token') {
        ctx.status = 400;
        ctx.body = { error: 'invalid_grant', error_description: 'grant revoked (test)' };
        console.log(JSON.stringify({ event: 'refresh.refused' }));
      }
    });
  }

  // Failure injection, only with REFRESH_WITHOUT_ID_TOKEN: refresh-token grants answer without
  // an ID token (allowed by OpenID Connect), so the subject rests on userinfo.
  if (process.env.REFRESH_WITHOUT_ID_TOKEN) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'refresh_token' && ctx.body?.id_token) {
        const { id_token: _dropped, ...rest } = ctx.body;
        ctx.body = rest;
        console.log(JSON.stringify({ event: 'refresh.id_token_dropped' }));
      }
    });
  }
  // Failure injection, only with USERINFO_ONLY_SUB: userinfo answers with `sub` alone, a partial
  // answer that must not empty what is known of the user.
  if (process.env.USERINFO_ONLY_SUB) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/me' && ctx.status === 200 && ctx.body?.sub) {
        ctx.body = { sub: ctx.body.sub };
        console.log(JSON.stringify({ event: 'userinfo.partial' }));
      }
    });
  }
  // Failure injection, only with REFRESH_ID_TOKEN_OF=<account>: the last ID token a code grant
  // gave that account (genuine, signed, for `pomerium`) answers every other account's refresh,
  // as a confused or hostile provider would; each substitution is printed.
  const refreshTokenOf = process.env.REFRESH_ID_TOKEN_OF;
  if (refreshTokenOf) {
    let remembered;
    const subjectOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).sub;
    provider.use(async (ctx, next) => {
      await next();
      const idToken = ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body?.id_token;
      if (!idToken) return;
      const grant = ctx.oidc.params?.grant_type;
      if (grant === 'authorization_code' && subjectOf(idToken) === refreshTokenOf) {
        remembered = idToken;
      } else if (grant === 'refresh_token' && remembered && subjectOf(idToken) !== refreshTokenOf) {
        ctx.body = { ...ctx.body, id_token: remembered };
        console.log(JSON.stringify({ event: 'refresh.id_token_substituted' }));
      }
    });
  }
  // Failure injection, only with SUBSTITUTE_ID_TOKEN_FROM: a token substitution attack. The last
  // ID token the token endpoint issued to that client (genuine, signed by this provider, but for
  // another audience) replaces the one issued to `pomerium`; each substitution is printed.
  const substituteFrom = process.env.SUBSTITUTE_ID_TOKEN_FROM;
  if (substituteFrom) {
    let remembered;
    provider.use(async (ctx, next) => {
      await next();
      const idToken = ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body?.id_token;
      if (!idToken) return;
      const clientId = ctx.oidc.client?.clientId;
      if (clientId === substituteFrom) {
        remembered = idToken;
      } else if (clientId === 'pomerium' && remembered) {
        ctx.body = { ...ctx.body, id_token: remembered };
        console.log(JSON.stringify({ event: 'id_token.substituted', from: substituteFrom }));
      }
    });
  }
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const hook = process.env.MUTABLE_ACCOUNTS && req.method === 'POST'
      && /^\/__test\/accounts\/([a-z]+)\/groups$/.exec(req.url);
    if (!hook) return callback(req, res);
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const account = accounts[hook[1]];
      if (!account) { res.writeHead(404).end(); return; }
      const groups = new URLSearchParams(body).get('groups') || '';
      account.groups = groups.split(',').map((g) => g.trim()).filter(Boolean);
      console.log(JSON.stringify({ event: 'groups.changed' }));
      res.writeHead(204).end();
    });
  });
  console.log(JSON.stringify({ issuer }));
});
