// What every part of the web app shares: the API, its problems in words, and the state
// kept across redraws.

export const $ = (selector, root = document) => root.querySelector(selector);
export const state = {
  config: null, token: localStorage.getItem("token"), user: localStorage.getItem("user"),
  streams: new Map(), coupons: new Map(), histories: new Set(),
  said: new Map(), // per grant: what its last action answered, kept across redraws
  // From sign-in to sign-out: every loop and request of the person's runs under its signal,
  // so that ending it stops them all at once and nothing more is sent for them.
  session: new AbortController(),
};
export const words = (reason) => String(reason || "").replace(/_/g, " ");

export function beginSession() {
  state.session.abort(); // one set of loops per sign-in
  state.session = new AbortController();
  return state.session.signal;
}

export function endSession() { state.session.abort(); }

// `signal`: the session's unless told (null: a request of nobody's, as signing in is).
export async function api(method, path, body, headers = {}, signal = state.session.signal) {
  const json = body !== undefined && typeof body !== "string";
  const response = await fetch(path, {
    method, signal,
    headers: { "Content-Type": json || body === undefined ? "application/json" : "text/csv",
               ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}), ...headers },
    body: json ? JSON.stringify(body) : body,
  });
  const text = await response.text(); // read before a refusal ends the session, and its reads
  if (response.status === 401 && state.token) document.dispatchEvent(new Event("signed-out"));
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

// A button that asks again, for a loop that gave up.
export function againButton(label, again) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary";
  button.textContent = label;
  button.addEventListener("click", again, { once: true });
  return button;
}

// A problem+json answer, in words.
export function problem(answer) {
  const { title, detail } = answer.data;
  return [title, detail].filter(Boolean).join(": ") || `the service answered ${answer.status}`;
}
