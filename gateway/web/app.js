// The web app: sign in, watch live coupons, claim one. It speaks only the public API:
// this gateway's routes and the notifier's tickets and live streams (docs/api.md).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { config: null, token: localStorage.getItem("token"), user: localStorage.getItem("user"),
                streams: new Map(), coupons: new Map() };
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
  await signedIn();
}

async function signedIn() {
  $("#who").textContent = `Signed in as ${state.user}`;
  $("#sign-in").hidden = true;
  $("#coupons-section").hidden = false;
  $("#mine-section").hidden = false;
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
  $("details", row).addEventListener("toggle", (e) => { if (e.target.open) history(row, grant); });
  return row;
}

async function act(row, grant, action) {
  const lockId = localStorage.getItem(`lock:${grant.id}`);
  const body = lockId && action !== "lock" ? { lock_id: lockId } : {};
  const answer = await api("POST", `/v1/grants/${grant.id}/${action}`, body, { Prefer: "wait=5" });
  if (answer.status === 200) {
    if (answer.data.lock_id) localStorage.setItem(`lock:${grant.id}`, answer.data.lock_id);
    await showMine();
    const again = $(`li[data-grant="${grant.id}"] .said`);
    if (again) again.textContent = `${words(answer.data.state)}`;
    return;
  }
  $(".said", row).textContent = answer.data.detail || problem(answer);
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
