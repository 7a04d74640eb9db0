// What every part of the web app shares: the API, its problems in words, and the state
// kept across redraws.

export const $ = (selector, root = document) => root.querySelector(selector);
export const state = {
  config: null, token: localStorage.getItem("token"), user: localStorage.getItem("user"),
  streams: new Map(), coupons: new Map(), histories: new Set(),
  said: new Map(), // per grant: what its last action answered, kept across redraws
};
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const words = (reason) => String(reason || "").replace(/_/g, " ");

export async function api(method, path, body, headers = {}) {
  const json = body !== undefined && typeof body !== "string";
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": json || body === undefined ? "application/json" : "text/csv",
               ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}), ...headers },
    body: json ? JSON.stringify(body) : body,
  });
  if (response.status === 401 && state.token) document.dispatchEvent(new Event("signed-out"));
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { detail: text }; }
  return { status: response.status, data, headers: response.headers };
}

// A problem+json answer, in words.
export function problem(answer) {
  const { title, detail } = answer.data;
  return [title, detail].filter(Boolean).join(": ") || `the service answered ${answer.status}`;
}
