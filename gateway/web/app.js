// The web app: sign in, watch live coupons, claim one, look after what you hold, and (as
// an admin) run campaigns. It speaks only the public API: this gateway's routes and the
// notifier's tickets and live streams (docs/api.md). Plain ES modules, no build step.
import { adminConsole, showAdmin } from "./admin.js";
import { $, state } from "./common.js";
import { showCoupons } from "./coupons.js";
import { followMe, showMine } from "./mine.js";
import { atProvider, backFromProvider, withName } from "./signin.js";

async function signIn() {
  try {
    if (state.config.oidc) return await atProvider();
    await withName();
  } catch (error) {
    $("#sign-in-note").textContent = error.message;
    return;
  }
  await signedIn();
}

async function signedIn() {
  $("#who").textContent = `Signed in as ${localStorage.getItem("name") || state.user}`;
  $("#sign-in").hidden = true;
  $("#coupons-section").hidden = false;
  $("#mine-section").hidden = false;
  $("#sign-out").hidden = false;
  const admin = localStorage.getItem("admin") === "true";
  $("#admin-section").hidden = !admin;
  if (admin) showAdmin();
  await showCoupons();
  await showMine();
  followMe();
}

function signOut() { // what is kept per person (claims in flight, lock ids) stays for them
  for (const name of ["token", "user", "admin", "name"]) localStorage.removeItem(name);
  location.reload();
}

async function start() {
  $("#sign-in-form").addEventListener("submit", (event) => { event.preventDefault(); ready.then(signIn); });
  $("#sign-out").addEventListener("click", signOut);
  document.addEventListener("signed-out", ended);
  adminConsole();
  state.config = await (await fetch("/app/config.json")).json();
  readied();
  if (state.config.oidc) {
    $("#dev-fields").hidden = true;
    $("#name").required = false;
    $("#sign-in-note").textContent = "You sign in at your identity provider.";
  } else if (!state.config.dev_sign_in) {
    $("#sign-in-note").textContent = "No sign-in is set up here: ask whoever runs it.";
    $("#sign-in-form").hidden = true;
  }
  try {
    await backFromProvider();
  } catch (error) {
    $("#sign-in-note").textContent = error.message;
  }
  if (state.token) await signedIn(); // signed in before, or just now at the provider
}

// A token refused (it ran out, or its keys are gone): sign in again, nothing else lost.
function ended() {
  for (const name of ["token", "admin"]) localStorage.removeItem(name);
  state.token = null;
  $("#sign-in").hidden = false;
  $("#sign-in-note").textContent = "Your sign-in has ended: sign in again.";
}

let readied;
const ready = new Promise((resolve) => { readied = resolve; });
start();
