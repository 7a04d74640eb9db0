// The admin console: a coupon with every option; its campaign (codes, assignments,
// distributions previewed first, closing, statistics, grants page by page); and saved
// audiences to distribute to.
import { $, api, element, EVENTS, idempotent, problem, waitingUpTo, words } from "./common.js";
import { showCoupons } from "./coupons.js";

async function createCoupon(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const number = (name) => Number(form.get(name));
  const start = form.get("start") ? new Date(form.get("start")) : new Date();
  const body = {
    code: form.get("code"), message: form.get("message"), description: form.get("description"),
    count: number("count"), start_time: start.toISOString(),
    expiry: new Date(start.getTime() + number("days") * 86_400_000).toISOString(),
    per_user_limit: number("per_user_limit"), daily_limit: form.get("daily_limit") === "on",
    hold_seconds: number("hold_seconds"), lock_seconds: number("lock_seconds"),
    redemptions_per_grant: number("redemptions_per_grant"),
    redemptions_per_user: number("redemptions_per_user"),
    release_on_disconnect: form.get("release_on_disconnect") === "on",
    code_source: form.get("code_source"), code_pattern: form.get("code_pattern"),
    code_alphabet: form.get("code_alphabet"),
  };
  const answer = await api("POST", "/v1/coupons", body, { ...idempotent(), ...waitingUpTo() });
  if (answer.status === 201) {
    $("#create-said").textContent = `Created ${answer.data.code} (${answer.data.id})`;
    return showCoupons();
  }
  $("#create-said").textContent = problem(answer);
}

// A coupon's campaign: codes, assignments, distributions (previewed first), closing,
// statistics and its grants, page by page.
const managed = () => $("#manage").value;
const adminSay = (text) => { $("#admin-said").textContent = text; };

function table(rows) {
  $("#admin-table tbody").replaceChildren(...rows.map((cells) => element("tr", {},
    ...cells.map((cell) => element("td", { textContent: String(cell ?? "") })))));
}

function fillManaged(coupons) {
  const chosen = managed();
  $("#manage").replaceChildren(...coupons.map((c) => element("option", { value: c.id, textContent: c.code })));
  if (chosen) $("#manage").value = chosen;
}

async function campaign(method, path, body, headers = {}) {
  const answer = await api(method, `/v1/coupons/${managed()}${path}`, body,
                           { ...idempotent(), ...waitingUpTo(), ...headers });
  if (answer.status >= 400) adminSay(problem(answer));
  return answer;
}

async function uploadCodes(event) {
  event.preventDefault();
  const answer = await campaign("POST", "/codes", await $("#codes-file").files[0].text());
  if (answer.status === 200) adminSay(`${answer.data.added} codes added; ${answer.data.codes_left} left`);
}

async function assign(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await campaign("POST", "/assignments", { user_id: form.get("user_id"), code: form.get("code") });
  if (answer.status === 201) adminSay(`Assigned ${answer.data.code} to ${answer.data.user_id}`);
}

// A preview's seed and audience version go with its Apply, so that what is applied is what
// was previewed, or refused when the audience was saved again since.
function distribution(dryRun) {
  const form = new FormData($("#distribute-form"));
  const { seed, version } = $("#distribute-form").dataset;
  const audience = form.get("audience");
  const people = audience
    ? { audience, audience_version: dryRun || !version ? undefined : Number(version) }
    : { users: String(form.get("users")).split(/\s+/).filter(Boolean) };
  return { ...people, strategy: form.get("strategy"), per_user: Number(form.get("per_user")),
           dry_run: dryRun, seed: dryRun ? undefined : seed };
}

async function distribute(dryRun) {
  const answer = await campaign("POST", "/distributions", distribution(dryRun));
  if (answer.status !== 200 && answer.status !== 201) return;
  const form = $("#distribute-form");
  form.dataset.seed = answer.data.seed; // the same order when applied
  if (answer.data.audience) form.dataset.version = answer.data.audience.version;
  table([["person", "grants"], ...answer.data.plan.map((p) => [p.user_id, p.grants]),
         ...answer.data.skipped.map((p) => [p.user_id, words(p.reason)])]);
  const to = answer.data.audience ? ` to ${answer.data.audience.name} (${answer.data.audience.size} people)` : "";
  adminSay(`${dryRun ? "Preview" : "Applied"}${to}: ${answer.data.granted} grants`);
  $("#apply").disabled = !dryRun;
  if (!dryRun) { previewAgain(); showCoupons(); }
}

function previewAgain() { // what changed was not previewed
  $("#apply").disabled = true;
  delete $("#distribute-form").dataset.seed;
  delete $("#distribute-form").dataset.version;
}

async function closeCoupon(event) {
  event.preventDefault();
  const revoke = new FormData(event.target).get("revoke") === "on";
  const answer = await campaign("DELETE", revoke ? "?revoke=true" : "");
  if (answer.status === 200) { adminSay(`Closed; ${answer.data.revoked ?? 0} grants revoked`); showCoupons(); }
}

async function stats() {
  const answer = await campaign("GET", "/stats");
  if (answer.status === 200) table(Object.entries(answer.data).filter(([k]) => k !== "coupon_id").map(([k, v]) => [words(k), v]));
}

async function grantsPage(url) {
  const answer = url ? await api("GET", url) : await campaign("GET", "/grants?limit=20");
  if (answer.status !== 200) return;
  table([["seq", "person", "code", "state"], ...answer.data.items.map((g) => [g.seq, g.display_name || g.user_id, g.code, words(g.state)])]);
  $("#next-grants").hidden = !answer.data.next;
  $("#next-grants").onclick = () => grantsPage(answer.data.next);
}

// Saved audiences: named lists of people (docs/api.md, "Audiences").
async function showAudiences() {
  const answer = await api("GET", "/v1/audiences");
  if (answer.status !== 200) { $("#audiences-said").textContent = problem(answer); return; }
  const items = answer.data.items;
  $("#audiences").replaceChildren(...items.map((a) => element("li", {},
    element("span", { textContent: `${a.name}: ${a.size} ${a.size === 1 ? "person" : "people"}, version ${a.version}` }),
    element("button", { type: "button", className: "secondary", textContent: "Delete",
                        attributes: { "aria-label": `Delete audience ${a.name}` }, onclick: () => deleteAudience(a) }))));
  const chosen = $("#distribute-audience").value;
  const option = (value, textContent) => element("option", { value, textContent });
  $("#distribute-audience").replaceChildren(option("", "the people listed"),
                                            ...items.map((a) => option(a.name, `${a.name} (${a.size})`)));
  if (items.some((a) => a.name === chosen)) $("#distribute-audience").value = chosen;
}

async function saveAudience(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const file = $("#members-file").files[0];
  const body = file ? await file.text() : { members: String(form.get("members")).split(/\s+/).filter(Boolean) };
  const name = String(form.get("audience_name")).trim();
  const answer = await api("PUT", `/v1/audiences/${encodeURIComponent(name)}`, body);
  const said = answer.status < 300
    ? `Saved ${answer.data.name}: ${answer.data.size} people, version ${answer.data.version}`
      + (answer.data.dropped ? ` (${answer.data.dropped} repeated, kept once)` : "")
    : problem(answer);
  $("#audiences-said").textContent = said;
  if (answer.status < 300) { event.target.reset(); await showAudiences(); }
}

async function deleteAudience(audience) {
  const answer = await api("DELETE", `/v1/audiences/${encodeURIComponent(audience.name)}`, undefined,
                           { "If-Match": `"${audience.version}"` });
  $("#audiences-said").textContent = answer.status === 204 ? `Deleted ${audience.name}` : problem(answer);
  await showAudiences();
}

// A new coupon's bounds, from the gateway's own document, which has them from the rules the
// log holds each field to (schemas/storable.py): the form never writes them again.
const BOUNDS = {
  number: [["minimum", "min"], ["maximum", "max"]],
  text: [["minLength", "minlength"], ["maxLength", "maxlength"]],
};

async function boundCreateForm() {
  const answer = await api("GET", "/openapi.json", undefined, {}, null);
  const fields = answer.data.components?.schemas?.NewCoupon?.properties ?? {};
  for (const input of $("#create-form").querySelectorAll("input[name]")) {
    const rule = fields[input.name];
    for (const [key, attribute] of (rule && BOUNDS[input.type]) || []) {
      if (rule[key] !== undefined) input.setAttribute(attribute, rule[key]);
    }
  }
}

export function adminConsole() {
  boundCreateForm();
  $("#create-form").addEventListener("submit", createCoupon);
  $("#audience-form").addEventListener("submit", saveAudience);
  $("#codes-form").addEventListener("submit", uploadCodes);
  $("#assign-form").addEventListener("submit", assign);
  $("#distribute-form").addEventListener("submit", (e) => { e.preventDefault(); distribute(true); });
  $("#distribute-form").addEventListener("input", previewAgain);
  $("#manage").addEventListener("change", previewAgain);
  $("#apply").addEventListener("click", () => distribute(false));
  $("#close-form").addEventListener("submit", closeCoupon);
  $("#show-stats").addEventListener("click", stats);
  $("#show-grants").addEventListener("click", () => grantsPage());
  document.addEventListener(EVENTS.coupons, (event) => fillManaged(event.detail));
}

export const showAdmin = showAudiences;
