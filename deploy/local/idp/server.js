// A local OpenID Connect provider for liftstack's tests and development, built on
// panva/oidc-provider (pinned in package-lock.json). It runs offline with:
//   - a fixed set of users (login, password, claims) from a JSON file,
//   - the clients from a JSON file (the console: authorization code + PKCE),
//   - its signing keys from a private JWKS file (RS256; first key signs), published
//     at /jwks so liftstack's services can verify tokens,
//   - JWT access tokens for the liftstack API (resource indicator = audience) that
//     carry each user's liftstack claims (workspace, role) next to sub/iss/aud/exp.
//
//   node server.js --port 8300 --issuer http://127.0.0.1:8300 --audience urn:liftstack:api \
//       --users users.json --clients clients.json --keys keys.json
//
// Login is a plain HTML form checked against the users file; consent is implicit for
// the configured (first-party) clients. Prints "ready <issuer>" once it listens.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";

import Provider from "oidc-provider";

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    issuer: { type: "string" },
    audience: { type: "string", default: "urn:liftstack:api" },
    users: { type: "string" },
    clients: { type: "string" },
    keys: { type: "string" },
    "access-token-ttl": { type: "string", default: "3600" },
  },
});
for (const name of ["port", "issuer", "users", "clients", "keys"]) {
  if (!args[name]) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}

const readJson = (path) => JSON.parse(fs.readFileSync(path, "utf8"));
const users = readJson(args.users).users;
const clients = readJson(args.clients).clients;
const jwks = readJson(args.keys);
const byLogin = new Map(users.map((u) => [u.login, u]));
// Profile claims go in the ID token under "profile"; every other claim a user has is
// a liftstack claim (workspace, role; whatever names the users file uses).
const PROFILE_CLAIMS = ["name", "email"];
const liftstackClaimNames = [
  ...new Set(users.flatMap((u) => Object.keys(u.claims ?? {}))),
].filter((c) => !PROFILE_CLAIMS.includes(c));
const LIFTSTACK_SCOPE = "liftstack";

function liftstackClaims(user) {
  const claims = {};
  for (const name of liftstackClaimNames) {
    if (user.claims?.[name] !== undefined) claims[name] = user.claims[name];
  }
  return claims;
}

const provider = new Provider(args.issuer, {
  clients,
  jwks,
  cookies: { keys: [crypto.randomBytes(32).toString("base64url")] },
  claims: { openid: ["sub"], profile: PROFILE_CLAIMS, [LIFTSTACK_SCOPE]: liftstackClaimNames },
  scopes: ["openid", "profile", LIFTSTACK_SCOPE],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // Sign-out needs no extra click: submit the provider's confirmation form at once.
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html><body>${form}
          <script>var f=document.forms[0];var i=document.createElement('input');
          i.type='hidden';i.name='logout';i.value='yes';f.appendChild(i);f.submit();</script>
          </body></html>`;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== args.audience) throw new Error(`unknown resource ${resource}`);
        return {
          scope: LIFTSTACK_SCOPE,
          audience: args.audience,
          accessTokenTTL: Number(args["access-token-ttl"]),
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const user = byLogin.get(token.accountId);
    return user ? liftstackClaims(user) : undefined;
  },
  findAccount: async (ctx, id) => {
    const user = byLogin.get(id);
    if (!user) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...user.claims }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  routes: { jwks: "/jwks" },
});

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Sign in · local identity provider</title></head>
<body><h1>Sign in</h1>${error ? `<p id="error" role="alert">${escape(error)}</p>` : ""}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input id="login" name="login" autocomplete="username" required></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button id="submit" type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error("form too large");
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function sameSecret(given, expected) {
  const a = Buffer.from(String(given));
  const b = Buffer.from(String(expected));
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (prompt.name === "login") {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(loginPage(uid));
    }
    const form = await readForm(req);
    const user = byLogin.get(form.get("login") ?? "");
    if (!user || !sameSecret(form.get("password") ?? "", user.password)) {
      res.writeHead(401, { "content-type": "text/html; charset=utf-8" });
      return res.end(loginPage(uid, "Unknown login or wrong password."));
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.login } }, { mergeWithLastSubmission: false });
  }
  // Consent: the configured clients are first-party, so grant what they asked for.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const handle = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((err) => {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(`interaction failed: ${err.message}`);
    });
    return;
  }
  handle(req, res);
});
server.listen(Number(args.port), args.host, () => {
  console.log(`ready ${args.issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
