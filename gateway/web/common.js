// What every part of the web app shares: the API, its problems in words, the session that
// its loops run under, and the one way it makes an element.
import { token } from "./stored.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const words = (reason) => String(reason || "").replace(/_/g, " ");

// The events the parts tell each other by, dispatched on document.
export const EVENTS = Object.freeze({
  coupons: "coupons", // the coupons were drawn again (detail: every coupon listed)
  news: "news", // the person's stream says a claim's decision or a grant changed
  signedOut: "signed-out", // the token was refused: signing in again is needed
});

// A write's `Prefer: wait` (docs/api.md): how long the gateway waits for the decision
// before it answers 202 with a ticket instead.
const DECISION_WAIT_S = 5;
export const waitingUpTo = (seconds = DECISION_WAIT_S) => ({ Prefer: `wait=${seconds}` });
// A write sent again with the same key is decided once (docs/api.md).
export const idempotent = (key = crypto.randomUUID()) => ({ "Idempotency-Key": key });

// What /app/config.json says: where the live streams are, and how people sign in here.
let settings = null;
export async function loadConfig() {
  settings = await (await fetch("/app/config.json")).json();
  return settings;
}
export const config = () => settings;

// From sign-in to sign-out: every loop and request of the person's runs under its signal,
// so that ending it stops them all at once and nothing more is sent for them.
let session = new AbortController();
export const sessionSignal = () => session.signal;

export function beginSession() {
  session.abort(); // one set of loops per sign-in
  session = new AbortController();
  return session.signal;
}

export function endSession() { session.abort(); }

// `signal`: the session's unless told (null: a request of nobody's, as signing in is).
export async function api(method, path, body, headers = {}, signal = sessionSignal()) {
  const json = body !== undefined && typeof body !== "string";
  const response = await fetch(path, {
    method, signal,
    headers: { "Content-Type": json || body === undefined ? "application/json" : "text/csv",
               ...(token() ? { Authorization: `Bearer ${token()}` } : {}), ...headers },
    body: json ? JSON.stringify(body) : body,
  });
  const text = await response.text(); // read before a refusal ends the session, and its reads
  if (response.status === 401 && token()) document.dispatchEvent(new Event(EVENTS.signedOut));
  let data;
  try { data = text ? JSON.parse(text) : {}; } catch { data = { detail: text }; }
  return { status: response.status, data, headers: response.headers };
}

// Every loop that asks again is bounded: it waits longer after each try (doubling from
// first_ms to cap_ms, with jitter so that many pages do not ask in step, and never sooner
// than the service's Retry-After), and gives up after attempts_max tries; then the person
// is told in words and may ask again. A test shortens these through window.COUPONS_BACKOFF.
export const BACKOFF = Object.freeze({ first_ms: 500, cap_ms: 8000, attempts_max: 8,
                                       ...globalThis.COUPONS_BACKOFF });
const RETRY_AFTER_S_MAX = 60; // a longer Retry-After is someone's mistake: not a reason to hang

// The wait after try `attempt` (from 0): between half and all of the doubled delay, so that
// each wait is at least the one before.
export function backoffMs(attempt, retryAfter = null) {
  const ceiling = Math.min(BACKOFF.cap_ms, BACKOFF.first_ms * 2 ** attempt);
  return Math.max(ceiling / 2 + Math.random() * (ceiling / 2), retryAfterMs(retryAfter));
}

function retryAfterMs(header) { // seconds, or an HTTP date (RFC 9110)
  if (!header) return 0;
  const seconds = /^\s*\d+\s*$/.test(header) ? Number(header) : (Date.parse(header) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), RETRY_AFTER_S_MAX) * 1000 : 0;
}

// Waits `ms`, or less when `signal` aborts or the event `wake` is dispatched on document.
export function pause(ms, signal, wake = null) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      if (wake) document.removeEventListener(wake, done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
    if (wake) document.addEventListener(wake, done);
  });
}

// Calls `once(attempt)` until it returns { done: answer }; after { again: retryAfter } it
// waits backoffMs (less if `wake` comes). The answer, or null once attempts_max tries went
// unanswered or `signal` aborted (the caller tells which: one gave up, the other left).
export async function retrying(once, signal, wake = null) {
  for (let attempt = 0; attempt < BACKOFF.attempts_max && !signal.aborted; attempt += 1) {
    const outcome = await once(attempt);
    if (signal.aborted) return null;
    if ("done" in outcome) return outcome.done;
    if (attempt + 1 < BACKOFF.attempts_max) await pause(backoffMs(attempt, outcome.again), signal, wake);
  }
  return null;
}

// The one way the script makes an element: its properties (textContent, className, type,
// hidden, onclick…), its attributes (aria-…, data-…, role), then its children, each text or
// an element. Text is only ever text: nothing the service says is read as HTML.
export function element(tag, properties = {}, ...children) {
  const { attributes = {}, ...rest } = properties;
  const made = Object.assign(document.createElement(tag), rest);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  made.append(...children);
  return made;
}

// A button that asks again, for a loop that gave up.
export function againButton(label, again) {
  const button = element("button", { type: "button", className: "secondary", textContent: label });
  button.addEventListener("click", again, { once: true });
  return button;
}

// A problem+json answer, in words.
export function problem(answer) {
  const { title, detail } = answer.data;
  return [title, detail].filter(Boolean).join(": ") || `the service answered ${answer.status}`;
}
