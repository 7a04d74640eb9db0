// My coupons: every grant, with its history and what may be done to it now, redrawn
// whenever the person's own stream says a grant changed.
import {
  $, againButton, api, BACKOFF, backoffMs, config, element, EVENTS, pause, problem, sessionSignal,
  waitingUpTo, words,
} from "./common.js";
import { keepLock, lockKept, token } from "./stored.js";

const ACTIONS = { assigned: ["lock", "redeem"], locked: ["unlock", "redeem"] };
const LABELS = { lock: "Lock", unlock: "Unlock", redeem: "Redeem" };

// Kept across redraws: the coupons listed (coupons.js tells), what each grant's last action
// answered, and which grants' histories are open.
const coupons = new Map();
const said = new Map();
const histories = new Set();
document.addEventListener(EVENTS.coupons, (event) => {
  for (const coupon of event.detail) coupons.set(coupon.id, coupon);
});

export async function showMine() {
  const answer = await api("GET", "/v1/users/me/grants");
  if (answer.status !== 200) return;
  const list = $("#mine");
  list.replaceChildren(...answer.data.items.map(grantRow));
  $("#no-grants").hidden = answer.data.items.length > 0;
}

function grantRow(grant) {
  const coupon = coupons.get(grant.coupon_id);
  const allowed = ACTIONS[grant.state] || [];
  const history = element("ol", { className: "history" });
  const details = element("details", { open: histories.has(grant.id) }, // kept open across redraws
                          element("summary", { textContent: "History" }), history);
  if (details.open) showHistory(history, grant);
  details.addEventListener("toggle", () => {
    if (details.open) { histories.add(grant.id); showHistory(history, grant); } else histories.delete(grant.id);
  });
  const name = coupon ? coupon.code : "coupon";
  return element("li", { className: "grant",
                         attributes: { "data-grant": grant.id, "aria-label": `${name} ${grant.code}` } },
    element("div", { className: "top" },
            element("strong", { className: "code", textContent: grant.code }),
            element("span", { className: "state", textContent: words(grant.state) })),
    element("p", { className: "coupon-name note",
                   textContent: coupon ? `${coupon.code}: ${coupon.message}` : grant.coupon_id }),
    element("div", { className: "actions" }, ...Object.entries(LABELS).map(([action, label]) =>
      element("button", { type: "button", className: action, textContent: label,
                          hidden: !allowed.includes(action), onclick: () => act(grant, action) }))),
    element("p", { className: "said", textContent: said.get(grant.id) || "",
                   attributes: { role: "status", "aria-live": "polite" } }),
    details);
}

async function act(grant, action) {
  const lockId = lockKept(grant.id);
  const body = lockId && action !== "lock" ? { lock_id: lockId } : {};
  const answer = await api("POST", `/v1/grants/${grant.id}/${action}`, body, waitingUpTo());
  if (answer.status === 200 && answer.data.lock_id) keepLock(grant.id, answer.data.lock_id);
  said.set(grant.id, answer.status === 200 ? words(answer.data.state) : answer.data.detail || problem(answer));
  await showMine();
}

async function showHistory(list, grant) {
  const answer = await api("GET", `/v1/grants/${grant.id}/events`);
  if (answer.status !== 200) return;
  list.replaceChildren(...answer.data.items.map((e) => element("li", {
    textContent: `${words(e.to)} (${words(e.cause)}) at ${new Date(e.at).toLocaleTimeString()}`,
  })));
}

// The person's own stream (docs/api.md): it needs the token, which EventSource cannot
// send, so it is read with fetch. Any change to a grant redraws My coupons, and tells the
// page's places in line (coupons.js) to look at their tickets now ("news"). One stream per
// sign-in, closed when it ends; a stream that breaks is opened again with backoff, and after
// BACKOFF.attempts_max tries in a row the person is told and may reconnect.
let followed = null; // the signal of the session whose stream is followed

export function followMe() {
  const signal = sessionSignal();
  if (followed === signal || signal.aborted || !token()) return;
  followed = signal;
  live([]);
  follow(signal);
}

async function follow(signal) {
  for (let failures = 0; failures < BACKOFF.attempts_max;) {
    const opened = Date.now();
    let retryAfter = null;
    try {
      const response = await fetch(`${config().notifier}/v1/users/me/events`,
                                   { headers: { Authorization: `Bearer ${token()}` }, signal });
      if (response.status === 401) { document.dispatchEvent(new Event(EVENTS.signedOut)); return; }
      retryAfter = response.headers.get("Retry-After");
      if (response.ok) await read(response);
    } catch { /* broken or never reached: opened again below */ }
    if (signal.aborted) return;
    // A stream that stayed open a while was not a failure: the count starts again.
    const attempt = Date.now() - opened >= BACKOFF.cap_ms ? 0 : failures;
    failures = attempt + 1;
    if (failures < BACKOFF.attempts_max) await pause(backoffMs(attempt, retryAfter), signal);
  }
  followed = null;
  live(["Live updates have stopped: the service is not answering. ",
        againButton("Reconnect", followMe)]);
}

async function read(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (/^event: (granted|hold_released|redeemed|grant_changed)$/m.test(block)) showMine();
      if (/^event: (decision|granted|hold_released|grant_changed)$/m.test(block)) {
        document.dispatchEvent(new Event(EVENTS.news));
      }
    }
  }
}

function live(text) { $("#live-said").replaceChildren(...text); }
