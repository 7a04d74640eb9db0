// The web app: sign in, watch live coupons, claim one, look after what you hold, and (as
// an admin) run campaigns. It speaks only the public API: this gateway's routes and the
// notifier's tickets and live streams (docs/api.md). Plain ES modules, no build step.
import { adminConsole, showAdmin } from "./admin.js";
import { $, beginSession, config, endSession, EVENTS, loadConfig } from "./common.js";
import { showCoupons } from "./coupons.js";
import { followMe, showMine } from "./mine.js";
import { atProvider, backFromProvider, withName } from "./signin.js";
import { displayName, forgetSignIn, isAdmin, token } from "./stored.js";

let signingIn = false; // a second click while the first is on its way signs in once

async function signIn() {
  if (signingIn) return;
  signingIn = true;
  try {
    if (config().oidc) return await atProvider();
    await withName();
  } catch (error) {
    $("#sign-in-note").textContent = error.message;
    return;
  } finally {
    signingIn = false;
  }
  await signedIn();
}

async function signedIn() {
  const signal = beginSession();
  $("#who").textContent = `Signed in as ${displayName()}`;
  $("#sign-in").hidden = true;
  $("#coupons-section").hidden = false;
  $("#mine-section").hidden = false;
  $("#sign-out").hidden = false;
  const admin = isAdmin();
  $("#admin-section").hidden = !admin;
  try {
    if (admin) showAdmin();
    await showCoupons();
    if (!signal.aborted) await showMine(); // not if the token was refused on the way
    followMe();
  } catch (error) {
    if (!signal.aborted) throw error; // else a request cut short by the end of the session
  }
}

function signOut() {
  endSession();
  forgetSignIn();
  location.reload();
}

async function start() {
  $("#sign-in-form").addEventListener("submit", (event) => { event.preventDefault(); ready.then(signIn); });
  $("#sign-out").addEventListener("click", signOut);
  document.addEventListener(EVENTS.signedOut, ended);
  adminConsole();
  const { oidc, dev_sign_in } = await loadConfig();
  readied();
  if (oidc) {
    $("#dev-fields").hidden = true;
    $("#name").required = false;
    $("#sign-in-note").textContent = "You sign in at your identity provider.";
  } else if (!dev_sign_in) {
    $("#sign-in-note").textContent = "No sign-in is set up here: ask whoever runs it.";
    $("#sign-in-form").hidden = true;
  }
  try {
    await backFromProvider();
  } catch (error) {
    $("#sign-in-note").textContent = error.message;
  }
  if (token()) await signedIn(); // signed in before, or just now at the provider
}

// A token refused (it ran out, or its keys are gone): sign in again, nothing else lost.
function ended() {
  endSession();
  forgetSignIn();
  $("#who").textContent = "Not signed in";
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-note").textContent = "Your sign-in has ended: sign in again.";
}

let readied;
const ready = new Promise((resolve) => { readied = resolve; });
start();
