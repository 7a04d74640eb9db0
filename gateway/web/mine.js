// My coupons: every grant, with its history and what may be done to it now, redrawn
// whenever the person's own stream says a grant changed.
import { $, api, problem, sleep, state, words } from "./common.js";

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
// send, so it is read with fetch. Any change to a grant redraws My coupons.
export async function followMe() {
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
