// Live coupons: each with its units left, watchers and countdown moving live, and a
// "Claim" whose answer, place in line or held grant is shown on its card.
import {
  $, againButton, api, config, element, EVENTS, idempotent, problem, retrying, sessionSignal,
  waitingUpTo, words,
} from "./common.js";
import { showMine } from "./mine.js";
import { claimKept, forgetClaim, keepClaim, keepTicket, ticketKept } from "./stored.js";

// A claim waits this long for its decision before following its ticket: short, so a
// person in line sees their place at once rather than after the wait.
const CLAIM_WAIT_S = 0.5;
// Answers after which a claim is sent again with its key: nothing was accepted (docs/api.md).
const NOT_TAKEN = new Set([429, 503]);
const SHOWN = new Set(["live", "scheduled", "sold_out"]);
const COUNTDOWN_TICK_MS = 1000;
const HOLD_TICK_MS = 250; // a held grant's seconds left, a little sooner than each goes
const streams = new Map(); // coupon id: its live stream, closed when the coupons are drawn again

function remainingText(coupon) { return `${coupon.remaining} of ${coupon.count} left`; }

function countdown(card, coupon) {
  const start = Date.parse(coupon.start_time);
  const tick = () => {
    const left = Math.ceil((start - Date.now()) / 1000);
    $(".countdown", card).textContent = left > 0 ? `live in ${left} s` : "live now";
  };
  tick();
  card.timer = setInterval(tick, COUNTDOWN_TICK_MS);
}

// A coupon's card: what render() and the claim's answers fill in.
function couponCard(coupon) {
  const span = (className) => element("span", { className });
  const button = (className, textContent) => element("button", { type: "button", className, textContent });
  return element("li", { className: "coupon", attributes: { "data-coupon": coupon.id, "aria-label": coupon.code } },
    element("div", { className: "top" }, element("h3", { className: "code" }), span("state")),
    element("p", { className: "message" }),
    element("p", { className: "figures" }, span("remaining"), " · ", span("watching"), " · ", span("countdown")),
    button("claim", "Claim"),
    element("p", { className: "answer", attributes: { role: "status", "aria-live": "polite" } }),
    element("div", { className: "hold", hidden: true },
            button("confirm", "Confirm"), button("cancel secondary", "Cancel")));
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
  const stream = new EventSource(`${config().notifier}/v1/events?coupon=${coupon.id}`);
  sessionSignal().addEventListener("abort", () => stream.close()); // it reconnects by itself
  stream.addEventListener("availability", (e) => render(card, JSON.parse(e.data)));
  stream.addEventListener("watchers", (e) => {
    const { count } = JSON.parse(e.data);
    $(".watching", card).textContent = `${count} watching`;
  });
  streams.set(coupon.id, stream);
}

export async function showCoupons() {
  const answer = await api("GET", "/v1/coupons");
  if (answer.status !== 200) { $("#no-coupons").hidden = false; $("#no-coupons").textContent = problem(answer); return; }
  const shown = answer.data.items.filter((c) => SHOWN.has(c.state));
  $("#no-coupons").hidden = shown.length > 0;
  const list = $("#coupons");
  for (const stream of streams.values()) stream.close();
  streams.clear();
  for (const old of list.children) { clearInterval(old.timer); clearInterval(old.holdTimer); }
  list.replaceChildren();
  document.dispatchEvent(new CustomEvent(EVENTS.coupons, { detail: answer.data.items }));
  for (const coupon of shown) {
    const card = couponCard(coupon);
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
  say(card, ["Granted: ", element("code", { textContent: grant.code })], "granted");
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
  card.holdTimer = setInterval(tick, HOLD_TICK_MS);
  $(".hold", card).hidden = false;
  $(".confirm", card).onclick = () => step(card, grant, "confirm");
  $(".cancel", card).onclick = () => step(card, grant, "cancel");
}

async function step(card, grant, action) {
  const answer = await api("POST", `/v1/grants/${grant.id}/${action}`, {}, waitingUpTo());
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
// At most one claim per coupon is under way; it ends with the session, and a redraw of the
// coupons hands it the coupon's new card.
const underWay = new Map(); // coupon id: { card, signal, said }
const kept = new Map(); // coupon id: stops the wait for news of a place kept (keep())

async function run(card, couponId, loop) {
  if (sessionSignal().aborted) return; // the sign-in ended: nothing is kept or sent for nobody
  const known = underWay.get(couponId);
  if (known && !known.signal.aborted) {
    known.card = card;
    if (known.said) say(card, ...known.said);
    return;
  }
  kept.get(couponId)?.abort();
  const under = { card, signal: sessionSignal(), said: null };
  underWay.set(couponId, under);
  $(".claim", card).disabled = true;
  try {
    await loop(under);
  } finally {
    if (underWay.get(couponId) === under) underWay.delete(couponId);
  }
}

function tell(under, text, kind) { // said on the card, and again on the card of a redraw
  under.said = [text, kind];
  say(under.card, text, kind);
}

function claim(card, couponId, kept = null) {
  return run(card, couponId, (under) => claiming(under, couponId, kept));
}

async function claiming(under, couponId, kept) {
  const key = kept || crypto.randomUUID();
  keepClaim(couponId, key);
  const answer = await retrying((attempt) => send(under, couponId, key, attempt), under.signal);
  if (under.signal.aborted) return;
  if (answer === null) {
    const again = againButton("Try again", () => claim(under.card, couponId, key));
    return tell(under, ["No answer from the service yet. Your claim is kept: ", again], "pending");
  }
  if (answer.status === 202) {
    const ticket = answer.headers.get("Location");
    keepTicket(couponId, ticket);
    const retryAfter = answer.headers.get("Retry-After");
    return pending(under, couponId, ticket, { ...answer.data, retryAfter });
  }
  forgetClaim(couponId);
  if (answer.status === 409 && answer.data.reason) return decided(under.card, answer.data);
  if (answer.status === 201) return granted(under.card, answer.data.grant);
  $(".claim", under.card).disabled = false;
  say(under.card, [problem(answer)], "refused");
}

async function send(under, couponId, key, attempt) {
  if (attempt > 0) tell(under, ["No answer yet, asking again…"], "pending");
  try {
    const answer = await api("POST", `/v1/coupons/${couponId}/claims`, {},
                             { ...idempotent(key), ...waitingUpTo(CLAIM_WAIT_S) },
                             under.signal);
    if (NOT_TAKEN.has(answer.status)) return { again: answer.headers.get("Retry-After") };
    return { done: answer };
  } catch { // no answer at all: the same key again is safe, whether or not it arrived
    return { again: null };
  }
}

const inFlight = (couponId) => claimKept(couponId) !== null;

function resume(card, couponId) {
  const ticket = ticketKept(couponId);
  const key = claimKept(couponId);
  if (ticket || key) $(".claim", card).disabled = true;
  if (ticket) run(card, couponId, (under) => pending(under, couponId, ticket, {}));
  else if (key) claim(card, couponId, key);
}

// A place in line: its ticket is asked no sooner than the notifier's Retry-After and less
// often as it stays put, or at once when the person's own stream brings news (mine.js);
// after BACKOFF.attempts_max tries the place is kept, in words, until news or a click.
async function pending(under, couponId, ticket, body) {
  const place = () => (body.position ? `, place ${body.position} in line` : "");
  const waiting = () => tell(under, [`Waiting for a decision${place()}…`], "pending");
  waiting();
  const decision = await retrying(async (attempt) => {
    // The claim's own answer was the first look: the ticket is asked after its Retry-After.
    if (attempt === 0 && body.status === "pending") return { again: body.retryAfter };
    const answer = await ask(ticket, under.signal);
    if (answer.data.status === "pending") { body = answer.data; waiting(); }
    return "again" in answer ? answer : { done: answer };
  }, under.signal, EVENTS.news);
  if (under.signal.aborted) return;
  if (decision === null) return keep(under, couponId, ticket, body, place());
  forgetClaim(couponId);
  if (decision.status === 200) return decided(under.card, decision.data);
  $(".claim", under.card).disabled = false;
  say(under.card, [problem(decision)], "refused");
}

// One look at a ticket: { again: retryAfter } while undecided or unanswered, else the answer.
async function ask(ticket, signal) {
  let response;
  try {
    response = await fetch(ticket, { signal });
    const data = await response.json();
    const again = response.status >= 500 || response.status === 429 || data.status === "pending";
    // The notifier is another origin and does not expose Retry-After to the page (CORS): a
    // place in line is asked about no more than once a second, as it says (its openapi.yaml).
    const retryAfter = response.headers.get("Retry-After")
      ?? (data.status === "pending" ? "1" : null);
    return again ? { again: retryAfter, data } : { status: response.status, data };
  } catch { // the notifier is away, or answered no JSON (a proxy's page): it will be back
    return { again: response ? response.headers.get("Retry-After") : null, data: {} };
  }
}

// A place in line whose polls gave up: kept, in words, until the person's stream brings
// news, the person asks, or a redraw follows the ticket again (any of them ends this wait).
function keep(under, couponId, ticket, body, place) {
  const stop = new AbortController();
  kept.set(couponId, stop);
  const again = () => run(under.card, couponId,
                          (next) => pending(next, couponId, ticket, { position: body.position }));
  document.addEventListener(EVENTS.news, again, { signal: stop.signal });
  under.signal.addEventListener("abort", () => stop.abort(), { signal: stop.signal });
  const button = againButton("Check again", again);
  tell(under, [`Still waiting for a decision${place}. We'll keep your place: `, button], "pending");
}
