// Live coupons: each with its units left, watchers and countdown moving live, and a
// "Claim" whose answer, place in line or held grant is shown on its card.
import { $, api, problem, sleep, state, words } from "./common.js";
import { showMine } from "./mine.js";

// A claim waits this long for its decision before following its ticket: short, so a
// person in line sees their place at once rather than after the wait.
const CLAIM_WAIT_S = 0.5;
const TICKET_POLL_MS = 500; // a place in line moves, and a hold passed down is short

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
  $(".claim", card).disabled = coupon.state !== "live" || inFlight(coupon.id);
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

export async function showCoupons() {
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
  document.dispatchEvent(new CustomEvent("coupons", { detail: answer.data.items }));
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

// A claim in flight survives a reload: its Idempotency-Key is kept before it is sent, and
// its ticket once it has one. A reload follows the ticket, or sends the claim again with
// the same key, which names the same request and gets the same decision (docs/api.md).
async function claim(card, couponId, kept = null) {
  $(".claim", card).disabled = true;
  const key = kept || crypto.randomUUID();
  localStorage.setItem(`claim:${state.user}:${couponId}`, key);
  let answer;
  try {
    answer = await api("POST", `/v1/coupons/${couponId}/claims`, {},
                       { "Idempotency-Key": key, Prefer: `wait=${CLAIM_WAIT_S}` });
  } catch { // no answer at all: the same key again is safe, whether or not it arrived
    say(card, ["No answer yet, asking again…"], "pending");
    await sleep(TICKET_POLL_MS);
    return claim(card, couponId, key);
  }
  if (answer.status === 202) {
    localStorage.setItem(`ticket:${state.user}:${couponId}`, answer.headers.get("Location"));
    return pending(card, couponId, answer.headers.get("Location"), answer.data);
  }
  forget(couponId);
  if (answer.status === 409 && answer.data.reason) return decided(card, answer.data);
  if (answer.status === 201) return granted(card, answer.data.grant);
  $(".claim", card).disabled = false;
  say(card, [problem(answer)], "refused");
}

const inFlight = (couponId) => localStorage.getItem(`claim:${state.user}:${couponId}`) !== null;

function forget(couponId) {
  localStorage.removeItem(`claim:${state.user}:${couponId}`);
  localStorage.removeItem(`ticket:${state.user}:${couponId}`);
}

function resume(card, couponId) {
  const ticket = localStorage.getItem(`ticket:${state.user}:${couponId}`);
  const key = localStorage.getItem(`claim:${state.user}:${couponId}`);
  if (ticket || key) $(".claim", card).disabled = true;
  if (ticket) pending(card, couponId, ticket, {});
  else if (key) claim(card, couponId, key);
}

async function pending(card, couponId, ticket, body) {
  for (;;) {
    const place = body.position ? `, place ${body.position} in line` : "";
    say(card, [`Waiting for a decision${place}…`], "pending");
    await sleep(TICKET_POLL_MS);
    let response;
    try { response = await fetch(ticket); } catch { continue; } // the notifier will be back
    if (response.status === 503) continue;
    body = await response.json();
    if (body.status !== "pending") {
      forget(couponId);
      return decided(card, body);
    }
  }
}
