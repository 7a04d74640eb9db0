// Signing in. On the local stack: a name, through POST /v1/dev/token. Elsewhere: at the
// OpenID Connect provider, by the authorization code flow with PKCE (RFC 7636) as a
// public client, so that no secret lives in the page; the gateway and the notifier
// verify what the provider signed against its published keys.
import { $, api, config, problem } from "./common.js";
import { keepFlow, rememberSignIn, takeFlow } from "./stored.js";

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => `${location.origin}/`;

function claimsOf(jwt) { // read only: the signature is the services' to check
  const text = atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (c) => c.charCodeAt(0))));
}

export async function withName() {
  const name = $("#name").value.trim();
  const answer = await api("POST", "/v1/dev/token", { name, admin: $("#admin").checked }, {}, null);
  if (answer.status !== 200) throw new Error(problem(answer));
  const { token, user_id: user, admin } = answer.data;
  rememberSignIn({ token, user, admin, name: user });
}

async function discovery() {
  const where = `${config().oidc.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(where);
  if (!response.ok) throw new Error(`the identity provider's discovery document answered ${response.status}`);
  return response.json();
}

export async function atProvider() {
  const { client_id, scope } = config().oidc;
  const found = await discovery();
  const started = { verifier: random(), flow: random(), nonce: random() };
  keepFlow(started);
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(started.verifier)));
  const url = new URL(found.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code", client_id, redirect_uri: redirectUri(), scope, state: started.flow,
    nonce: started.nonce, code_challenge: challenge, code_challenge_method: "S256",
  });
  location.assign(url);
}

// Back from the provider with ?code=…&state=… (or ?error=…): true once signed in.
export async function backFromProvider() {
  const params = new URLSearchParams(location.search);
  if (!config().oidc || !(params.has("code") || params.has("error"))) return false;
  history.replaceState(null, "", location.pathname); // a code is used once: not kept
  const started = takeFlow();
  if (params.has("error")) throw new Error(`The identity provider said: ${params.get("error_description") || params.get("error")}`);
  if (!started || params.get("state") !== started.flow) throw new Error("This sign-in was not started on this page; sign in again.");
  const response = await fetch((await discovery()).token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"),
                                redirect_uri: redirectUri(), client_id: config().oidc.client_id,
                                code_verifier: started.verifier }),
  });
  const tokens = await response.json();
  if (!response.ok) throw new Error(`The identity provider refused the sign-in: ${tokens.error_description || tokens.error}`);
  const identity = claimsOf(tokens.id_token);
  if (identity.nonce !== started.nonce) throw new Error("The identity provider's answer is not for this sign-in; sign in again.");
  // An access token that is a JWT is the provider's token for APIs; an opaque one is for
  // the provider alone, and then the ID token (whose audience is this app) is sent.
  const jwt = tokens.access_token && tokens.access_token.split(".").length === 3;
  const token = jwt ? tokens.access_token : tokens.id_token;
  const claims = claimsOf(token);
  rememberSignIn({ token, user: claims.sub, admin: (claims.roles || []).includes("admin"),
                   name: identity.preferred_username || identity.name || claims.sub });
  return true;
}
