// The web app: sign in, watch live coupons, claim one. It speaks only the public API:
// this gateway's routes and the notifier's tickets and live streams (docs/api.md).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { config: null, token: localStorage.getItem("token"), user: localStorage.getItem("user"),
                streams: new Map(), coupons: new Map(), histories: new Set(),
                said: new Map() }; // per grant: what its last action answered, kept across redraws
// A claim waits this long for its decision before following its ticket: short, so a
// person in line sees their place at once rather than after the wait.
const CLAIM_WAIT_S = 0.5;
const TICKET_POLL_MS = 500; // a place in line moves, and a hold passed down is short
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const words = (reason) => String(reason || "").replace(/_/g, " ");

async function api(method, path, body, headers = {}) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { detail: text }; }
  return { status: response.status, data, headers: response.headers };
}

// A problem+json answer, in words.
function problem(answer) {
  const { title, detail } = answer.data;
  return [title, detail].filter(Boolean).join(": ") || `the service answered ${answer.status}`;
}

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
  $("#admin-section").hidden = localStorage.getItem("admin") !== "true";
  await showCoupons();
  await showMine();
  followMe();
}

function remainingText(coupon) { return `${coupon.remaining} of ${coupon.count} left`; }

function countdown(card, coupon) {
  const start = Date.parse(coupon.start_time);
  const tick = () => {
    const left = Math.ceil((start - Date.now()) / 1000);
    $(".countdown", card).textContent = left > 0 ? `live in ${left} s` : "live now";
  };
  tick();
  card.timer = setInterval(tick, 1000);
}

function render(card, coupon) {
  $(".code", card).textContent = coupon.code;
  $(".message", card).textContent = coupon.message;
  $(".state", card).textContent = coupon.state.replace("_", " ");
  $(".state", card).className = `state ${coupon.state}`;
  $(".remaining", card).textContent = remainingText(coupon);
  $(".claim", card).disabled = coupon.state !== "live";
}

function follow(card, coupon) {
  // A coupon's live stream: no token needed (docs/api.md, "A coupon's stream").
  const stream = new EventSource(`${state.config.notifier}/v1/events?coupon=${coupon.id}`);
  stream.addEventListener("availability", (e) => render(card, JSON.parse(e.data)));
  stream.addEventListener("watchers", (e) => {
    const { count } = JSON.parse(e.data);
    $(".watching", card).textContent = `${count} watching`;
  });
  state.streams.set(coupon.id, stream);
}

async function showCoupons() {
  const answer = await api("GET", "/v1/coupons");
  if (answer.status !== 200) { $("#no-coupons").hidden = false; $("#no-coupons").textContent = problem(answer); return; }
  const shown = answer.data.items.filter((c) => ["live", "scheduled", "sold_out"].includes(c.state));
  $("#no-coupons").hidden = shown.length > 0;
  const list = $("#coupons");
  for (const stream of state.streams.values()) stream.close();
  state.streams.clear();
  for (const old of list.children) clearInterval(old.timer);
  list.replaceChildren();
  for (const coupon of answer.data.items) state.coupons.set(coupon.id, coupon);
  fillManaged(answer.data.items);
  for (const coupon of shown) {
    const card = $("#coupon-card").content.firstElementChild.cloneNode(true);
    card.dataset.coupon = coupon.id;
    card.setAttribute("aria-label", coupon.code);
    render(card, coupon);
    countdown(card, coupon);
    $(".claim", card).addEventListener("click", () => claim(card, coupon.id));
    list.append(card);
    follow(card, coupon);
    resume(card, coupon.id);
  }
}

function say(card, text, kind) {
  const answer = $(".answer", card);
  answer.className = `answer ${kind}`;
  answer.replaceChildren(...text);
}

function granted(card, grant) {
  $(".hold", card).hidden = true;
  clearInterval(card.holdTimer);
  if (grant.state === "held") return held(card, grant);
  const code = document.createElement("code");
  code.textContent = grant.code;
  say(card, ["Granted: ", code], "granted");
  showMine();
}

// A held grant: the person confirms it before its deadline, or it passes down the line.
function held(card, grant) {
  const until = Date.parse(grant.expires_at);
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    say(card, [`Held for you: confirm within ${left} s`], "pending");
  };
  tick();
  card.holdTimer = setInterval(tick, 250);
  $(".hold", card).hidden = false;
  $(".confirm", card).onclick = () => step(card, grant, "confirm");
  $(".cancel", card).onclick = () => step(card, grant, "cancel");
}

async function step(card, grant, action) {
  const answer = await api("POST", `/v1/grants/${grant.id}/${action}`, {}, { Prefer: "wait=5" });
  clearInterval(card.holdTimer);
  $(".hold", card).hidden = true;
  if (answer.status === 200 && action === "confirm") return granted(card, answer.data);
  if (answer.status === 200) { say(card, ["Cancelled: the unit went back"], "refused"); return showMine(); }
  say(card, [answer.data.detail || problem(answer)], "refused");
}

function decided(card, body) {
  if (body.status === "granted") return granted(card, body.grant);
  say(card, [body.detail || `Not granted: ${words(body.reason || body.status)}`], "refused");
}

async function claim(card, couponId) {
  $(".claim", card).disabled = true;
  const key = crypto.randomUUID();
  const answer = await api("POST", `/v1/coupons/${couponId}/claims`, {},
                           { "Idempotency-Key": key, Prefer: `wait=${CLAIM_WAIT_S}` });
  if (answer.status === 201 || answer.status === 409) {
    localStorage.removeItem(`ticket:${couponId}`);
    if (answer.status === 409 && answer.data.reason) return decided(card, answer.data);
    if (answer.status === 201) return granted(card, answer.data.grant);
  }
  if (answer.status === 202) {
    // Kept, so a reload follows the same claim (docs/api.md, tickets).
    localStorage.setItem(`ticket:${couponId}`, answer.headers.get("Location"));
    return pending(card, couponId, answer.headers.get("Location"), answer.data);
  }
  $(".claim", card).disabled = false;
  say(card, [problem(answer)], "refused");
}

function resume(card, couponId) {
  const ticket = localStorage.getItem(`ticket:${couponId}`);
  if (ticket) pending(card, couponId, ticket, {});
}

async function pending(card, couponId, ticket, body) {
  for (;;) {
    const place = body.position ? `, place ${body.position} in line` : "";
    say(card, [`Waiting for a decision${place}…`], "pending");
    await sleep(TICKET_POLL_MS);
    const response = await fetch(ticket);
    if (response.status === 503) continue;
    body = await response.json();
    if (body.status !== "pending") {
      localStorage.removeItem(`ticket:${couponId}`);
      return decided(card, body);
    }
  }
}

// The admin console: a coupon with every option.
async function createCoupon(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const number = (name) => Number(form.get(name));
  const start = form.get("start") ? new Date(form.get("start")) : new Date();
  const body = {
    code: form.get("code"), message: form.get("message"), description: form.get("description"),
    count: number("count"), start_time: start.toISOString(),
    expiry: new Date(start.getTime() + number("days") * 86_400_000).toISOString(),
    per_user_limit: number("per_user_limit"), daily_limit: form.get("daily_limit") === "on",
    hold_seconds: number("hold_seconds"), lock_seconds: number("lock_seconds"),
    redemptions_per_grant: number("redemptions_per_grant"),
    redemptions_per_user: number("redemptions_per_user"),
    release_on_disconnect: form.get("release_on_disconnect") === "on",
    code_source: form.get("code_source"), code_pattern: form.get("code_pattern"),
    code_alphabet: form.get("code_alphabet"),
  };
  const answer = await api("POST", "/v1/coupons", body, { "Idempotency-Key": crypto.randomUUID(), Prefer: "wait=5" });
  if (answer.status === 201) {
    $("#create-said").textContent = `Created ${answer.data.code} (${answer.data.id})`;
    return showCoupons();
  }
  $("#create-said").textContent = problem(answer);
}

// A coupon's campaign: codes, assignments, distributions (previewed first), closing,
// statistics and its grants, page by page.
const managed = () => $("#manage").value;
const adminSay = (text) => { $("#admin-said").textContent = text; };

function table(rows) {
  $("#admin-table tbody").replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) { const td = document.createElement("td"); td.textContent = String(cell ?? ""); tr.append(td); }
    return tr;
  }));
}

function fillManaged(coupons) {
  const chosen = managed();
  $("#manage").replaceChildren(...coupons.map((c) => {
    const option = document.createElement("option");
    option.value = c.id; option.textContent = c.code;
    return option;
  }));
  if (chosen) $("#manage").value = chosen;
}

async function campaign(method, path, body, headers = {}) {
  const answer = await api(method, `/v1/coupons/${managed()}${path}`, body,
                           { "Idempotency-Key": crypto.randomUUID(), Prefer: "wait=5", ...headers });
  if (answer.status >= 400) adminSay(problem(answer));
  return answer;
}

async function uploadCodes(event) {
  event.preventDefault();
  const text = await $("#codes-file").files[0].text();
  const codes = text.split(/\r?\n/).map((l) => l.split(",")[0].trim()).filter((c) => c && c !== "code");
  const answer = await campaign("POST", "/codes", { codes });
  if (answer.status === 200) adminSay(`${answer.data.added} codes added; ${answer.data.codes_left} left`);
}

async function assign(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await campaign("POST", "/assignments", { user_id: form.get("user_id"), code: form.get("code") });
  if (answer.status === 201) adminSay(`Assigned ${answer.data.code} to ${answer.data.user_id}`);
}

function distribution(dryRun) {
  const form = new FormData($("#distribute-form"));
  const users = String(form.get("users")).split(/\s+/).filter(Boolean);
  return { users, strategy: form.get("strategy"), per_user: Number(form.get("per_user")), dry_run: dryRun,
           seed: $("#distribute-form").dataset.seed || undefined };
}

async function distribute(dryRun) {
  const answer = await campaign("POST", "/distributions", distribution(dryRun));
  if (answer.status !== 200 && answer.status !== 201) return;
  $("#distribute-form").dataset.seed = answer.data.seed; // the same order when applied
  table([["person", "grants"], ...answer.data.plan.map((p) => [p.user_id, p.grants]),
         ...answer.data.skipped.map((p) => [p.user_id, words(p.reason)])]);
  adminSay(`${dryRun ? "Preview" : "Applied"}: ${answer.data.granted} grants`);
  $("#apply").disabled = !dryRun;
  if (!dryRun) { delete $("#distribute-form").dataset.seed; showCoupons(); }
}

async function closeCoupon(event) {
  event.preventDefault();
  const revoke = new FormData(event.target).get("revoke") === "on";
  const answer = await campaign("DELETE", revoke ? "?revoke=true" : "");
  if (answer.status === 200) { adminSay(`Closed; ${answer.data.revoked ?? 0} grants revoked`); showCoupons(); }
}

async function stats() {
  const answer = await campaign("GET", "/stats");
  if (answer.status === 200) table(Object.entries(answer.data).filter(([k]) => k !== "coupon_id").map(([k, v]) => [words(k), v]));
}

async function grantsPage(url) {
  const answer = url ? await api("GET", url) : await campaign("GET", "/grants?limit=20");
  if (answer.status !== 200) return;
  table([["seq", "person", "code", "state"], ...answer.data.items.map((g) => [g.seq, g.display_name || g.user_id, g.code, words(g.state)])]);
  $("#next-grants").hidden = !answer.data.next;
  $("#next-grants").onclick = () => grantsPage(answer.data.next);
}

function adminConsole() {
  $("#create-form").addEventListener("submit", createCoupon);
  $("#codes-form").addEventListener("submit", uploadCodes);
  $("#assign-form").addEventListener("submit", assign);
  $("#distribute-form").addEventListener("submit", (e) => { e.preventDefault(); distribute(true); });
  $("#apply").addEventListener("click", () => distribute(false));
  $("#close-form").addEventListener("submit", closeCoupon);
  $("#show-stats").addEventListener("click", stats);
  $("#show-grants").addEventListener("click", () => grantsPage());
}

// My coupons: every grant, with its history and what may be done to it now.
const ACTIONS = { assigned: ["lock", "redeem"], locked: ["unlock", "redeem"] };

async function showMine() {
  const answer = await api("GET", "/v1/users/me/grants");
  if (answer.status !== 200) return;
  const list = $("#mine");
  list.replaceChildren(...answer.data.items.map(grantRow));
  $("#no-grants").hidden = answer.data.items.length > 0;
}

function grantRow(grant) {
  const row = $("#grant-row").content.firstElementChild.cloneNode(true);
  row.dataset.grant = grant.id;
  const coupon = state.coupons.get(grant.coupon_id);
  row.setAttribute("aria-label", `${coupon ? coupon.code : "coupon"} ${grant.code}`);
  $(".code", row).textContent = grant.code;
  $(".state", row).textContent = words(grant.state);
  $(".coupon-name", row).textContent = coupon ? `${coupon.code}: ${coupon.message}` : grant.coupon_id;
  const allowed = ACTIONS[grant.state] || [];
  for (const action of ["lock", "unlock", "redeem"]) {
    const button = $(`.${action}`, row);
    button.hidden = !allowed.includes(action);
    button.onclick = () => act(row, grant, action);
  }
  $(".said", row).textContent = state.said.get(grant.id) || "";
  const details = $("details", row);
  details.open = state.histories.has(grant.id); // kept open across redraws
  if (details.open) history(row, grant);
  details.addEventListener("toggle", () => {
    if (details.open) { state.histories.add(grant.id); history(row, grant); } else state.histories.delete(grant.id);
  });
  return row;
}

async function act(row, grant, action) {
  const lockId = localStorage.getItem(`lock:${grant.id}`);
  const body = lockId && action !== "lock" ? { lock_id: lockId } : {};
  const answer = await api("POST", `/v1/grants/${grant.id}/${action}`, body, { Prefer: "wait=5" });
  if (answer.status === 200 && answer.data.lock_id) localStorage.setItem(`lock:${grant.id}`, answer.data.lock_id);
  state.said.set(grant.id, answer.status === 200 ? words(answer.data.state) : answer.data.detail || problem(answer));
  await showMine();
}

async function history(row, grant) {
  const answer = await api("GET", `/v1/grants/${grant.id}/events`);
  if (answer.status !== 200) return;
  $(".history", row).replaceChildren(...answer.data.items.map((e) => {
    const item = document.createElement("li");
    item.textContent = `${words(e.to)} (${words(e.cause)}) at ${new Date(e.at).toLocaleTimeString()}`;
    return item;
  }));
}

// The person's own stream (docs/api.md): it needs the token, which EventSource cannot
// send, so it is read with fetch. Any change to a grant redraws My coupons.
async function followMe() {
  for (;;) {
    try {
      const response = await fetch(`${state.config.notifier}/v1/users/me/events`,
                                   { headers: { Authorization: `Bearer ${state.token}` } });
      if (!response.ok) throw new Error(String(response.status));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: (granted|hold_released|redeemed|grant_changed)$/m.test(block)) showMine();
        }
      }
    } catch { /* reconnect below */ }
    await sleep(1000);
  }
}

async function start() {
  const returning = Boolean(state.token); // signed in before this page was loaded
  $("#sign-in-form").addEventListener("submit", (event) => { event.preventDefault(); ready.then(() => signIn(event)); });
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
