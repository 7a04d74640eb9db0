// My coupons: every grant, with its history and what may be done to it now, redrawn
// whenever the person's own stream says a grant changed.
import { $, againButton, api, BACKOFF, backoffMs, pause, problem, state, words } from "./common.js";

const ACTIONS = { assigned: ["lock", "redeem"], locked: ["unlock", "redeem"] };

export async function showMine() {
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
// send, so it is read with fetch. Any change to a grant redraws My coupons, and tells the
// page's places in line (coupons.js) to look at their tickets now ("news"). One stream per
// sign-in, closed when it ends; a stream that breaks is opened again with backoff, and after
// BACKOFF.attempts_max tries in a row the person is told and may reconnect.
let followed = null; // the signal of the session whose stream is followed

export function followMe() {
  const { signal } = state.session;
  if (followed === signal || signal.aborted || !state.token) return;
  followed = signal;
  live([]);
  follow(signal);
}

async function follow(signal) {
  for (let failures = 0; failures < BACKOFF.attempts_max;) {
    const opened = Date.now();
    let retryAfter = null;
    try {
      const response = await fetch(`${state.config.notifier}/v1/users/me/events`,
                                   { headers: { Authorization: `Bearer ${state.token}` }, signal });
      if (response.status === 401) { document.dispatchEvent(new Event("signed-out")); return; }
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
        document.dispatchEvent(new Event("news"));
      }
    }
  }
}

function live(text) { $("#live-said").replaceChildren(...text); }
