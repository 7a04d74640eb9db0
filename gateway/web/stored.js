// Everything the web app keeps in the browser, and only here: each key named once, read and
// written by what it holds, and the one list that signing out (or a refused token) forgets.
//
// localStorage, across reloads:
//   token, user, admin, name   the sign-in: forgotten when it ends
//   claim:<user>:<coupon>      a claim in flight: its Idempotency-Key, kept before it is sent
//   ticket:<user>:<coupon>     and its ticket, once it has one (both kept for that person)
//   lock:<grant>               a grant's lock id, sent with its unlock and redeem
// sessionStorage, this tab only:
//   oidc                       a sign-in begun at the identity provider (signin.js)

const SIGN_IN = Object.freeze({ token: "token", user: "user", admin: "admin", name: "name" });
const claimKey = (user, couponId) => `claim:${user}:${couponId}`;
const ticketKey = (user, couponId) => `ticket:${user}:${couponId}`;
const lockKey = (grantId) => `lock:${grantId}`;
const OIDC_FLOW = "oidc";

// The sign-in this page runs under: read once when the page loads (another tab signing in
// as someone else changes what is stored, not who this page is).
let signIn = {
  token: localStorage.getItem(SIGN_IN.token),
  user: localStorage.getItem(SIGN_IN.user),
  admin: localStorage.getItem(SIGN_IN.admin) === "true",
  name: localStorage.getItem(SIGN_IN.name),
};

export const token = () => signIn.token;
export const user = () => signIn.user;
export const isAdmin = () => signIn.admin;
export const displayName = () => signIn.name || signIn.user;

export function rememberSignIn({ token, user, admin, name }) {
  signIn = { token, user, admin: Boolean(admin), name };
  localStorage.setItem(SIGN_IN.token, token);
  localStorage.setItem(SIGN_IN.user, user);
  localStorage.setItem(SIGN_IN.admin, String(signIn.admin));
  localStorage.setItem(SIGN_IN.name, name);
}

// What is kept per person (claims in flight) and per grant (lock ids) stays for them.
export function forgetSignIn() {
  signIn = { token: null, user: null, admin: false, name: null };
  for (const key of Object.values(SIGN_IN)) localStorage.removeItem(key);
}

// The signed-in person's claim in flight on a coupon: its key, and its ticket once it has one.
export const claimKept = (couponId) => localStorage.getItem(claimKey(signIn.user, couponId));
export const ticketKept = (couponId) => localStorage.getItem(ticketKey(signIn.user, couponId));
export function keepClaim(couponId, key) { localStorage.setItem(claimKey(signIn.user, couponId), key); }
export function keepTicket(couponId, ticket) { localStorage.setItem(ticketKey(signIn.user, couponId), ticket); }
export function forgetClaim(couponId) {
  localStorage.removeItem(claimKey(signIn.user, couponId));
  localStorage.removeItem(ticketKey(signIn.user, couponId));
}

export const lockKept = (grantId) => localStorage.getItem(lockKey(grantId));
export function keepLock(grantId, lockId) { localStorage.setItem(lockKey(grantId), lockId); }

// A sign-in begun at the provider ({ verifier, flow, nonce }): taken back once, on return.
export function keepFlow(started) { sessionStorage.setItem(OIDC_FLOW, JSON.stringify(started)); }
export function takeFlow() {
  const started = JSON.parse(sessionStorage.getItem(OIDC_FLOW) || "null");
  sessionStorage.removeItem(OIDC_FLOW);
  return started;
}
