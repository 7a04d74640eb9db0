// The web app: sign in, watch live coupons, claim one. It speaks only the public API:
// this gateway's routes and the notifier's tickets and live streams (docs/api.md).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { config: null, token: localStorage.getItem("token"), user: localStorage.getItem("user"),
                streams: new Map() };

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

async function signIn(event) {
  event.preventDefault();
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
  await showCoupons();
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
  list.replaceChildren();
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
  const code = document.createElement("code");
  code.textContent = grant.code;
  say(card, ["Granted: ", code], "granted");
}

function decided(card, body) {
  if (body.status === "granted") return granted(card, body.grant);
  say(card, [body.detail || `Not granted: ${(body.reason || body.status).replace(/_/g, " ")}`], "refused");
}

async function claim(card, couponId) {
  $(".claim", card).disabled = true;
  const key = crypto.randomUUID();
  const answer = await api("POST", `/v1/coupons/${couponId}/claims`, {},
                           { "Idempotency-Key": key, Prefer: "wait=2" });
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
    await new Promise((r) => setTimeout(r, 1000));
    const response = await fetch(ticket);
    if (response.status === 503) continue;
    body = await response.json();
    if (body.status !== "pending") {
      localStorage.removeItem(`ticket:${couponId}`);
      return decided(card, body);
    }
  }
}

async function start() {
  state.config = await (await fetch("/app/config.json")).json();
  $("#sign-in-form").addEventListener("submit", signIn);
  if (!state.config.dev_sign_in) {
    $("#sign-in-note").textContent = "Sign in through your identity provider.";
    $("#sign-in-form").hidden = true;
  }
  if (state.token) await signedIn();
}

start();
