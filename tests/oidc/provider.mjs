// A real OpenID Connect provider for the auth tests: panva's certified `oidc-provider`
// (installed by scripts/oidc-provider), with its development sign-in pages, on loopback.
//
//   node tests/oidc/provider.mjs   with env
//     OIDC_MODULES   the folder holding node_modules/oidc-provider
//     OIDC_PORT      the port to listen on (127.0.0.1)
//     OIDC_CLIENT    JSON: {client_id, client_secret, redirect_uris: [...]}
//
// Any login name signs in (the dev pages take any password); `<name>@example.test` is its
// verified email and `groups` holds "staff" for names starting with "staff". Prints
// "ready <issuer>" once it listens.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const modules = process.env.OIDC_MODULES;
const port = Number(process.env.OIDC_PORT);
const client = JSON.parse(process.env.OIDC_CLIENT);
const { default: Provider } = await import(
  pathToFileURL(join(modules, "node_modules", "oidc-provider", "lib", "index.js")).href);

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    ...client,
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["orun-test-cookie-key"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: id,
          email: `${id}@example.test`,
          email_verified: true,
          groups: id.startsWith("staff") ? ["staff"] : ["guests"],
        };
      },
    };
  },
});
provider.listen(port, "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
