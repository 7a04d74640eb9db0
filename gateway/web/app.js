// The web app: sign in, watch live coupons, claim one, look after what you hold, and (as
// an admin) run campaigns. It speaks only the public API: this gateway's routes and the
// notifier's tickets and live streams (docs/api.md). Plain ES modules, no build step.
import { adminConsole, showAdmin } from "./admin.js";
import { $, api, problem, state } from "./common.js";
import { showCoupons } from "./coupons.js";
import { followMe, showMine } from "./mine.js";

async function signIn() {
  const name = $("#name").value.trim();
  const answer = await api("POST", "/v1/dev/token", { name, admin: $("#admin").checked });
  if (answer.status !== 200) { $("#sign-in-note").textContent = problem(answer); return; }
  state.token = answer.data.token; state.user = answer.data.user_id;
  localStorage.setItem("token", state.token); localStorage.setItem("user", state.user);
  localStorage.setItem("admin", String(answer.data.admin));
  await signedIn();
}

async function signedIn() {
  $("#who").textContent = `Signed in as ${state.user}`;
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
  for (const name of ["token", "user", "admin"]) localStorage.removeItem(name);
  location.reload();
}

async function start() {
  const returning = Boolean(state.token); // signed in before this page was loaded
  $("#sign-in-form").addEventListener("submit", (event) => { event.preventDefault(); ready.then(() => signIn(event)); });
  $("#sign-out").addEventListener("click", signOut);
  adminConsole();
  state.config = await (await fetch("/app/config.json")).json();
  readied();
  if (!state.config.dev_sign_in) {
    $("#sign-in-note").textContent = "Sign in through your identity provider.";
    $("#sign-in-form").hidden = true;
  }
  if (returning) await signedIn();
}

let readied;
const ready = new Promise((resolve) => { readied = resolve; });
start();
