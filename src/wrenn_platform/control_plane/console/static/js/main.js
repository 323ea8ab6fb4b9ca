// The console's router: hash routes (`#/capsules/ID`), so `/` is the only page the server serves;
// the email link's `/activate` is the same page. Each view renders into <main> and returns a
// cleanup function (closing its streams) that runs when the user leaves it.
import { get, post, setUnauthorizedHandler } from "./api.js";
import { h } from "./dom.js";
import { HOME, go, toLogin } from "./nav.js";
import * as session from "./session.js";
import { activateView, forgotView, loginView, resetView, signupView } from "./pages/auth.js";
import { capsulesView } from "./pages/capsules.js";
import { capsuleView } from "./pages/capsule.js";
import { activityView } from "./pages/activity.js";
import { adminUsersView } from "./pages/admin_users.js";
import { hostsView } from "./pages/hosts.js";
import { keysView } from "./pages/keys.js";
import { teamView } from "./pages/team.js";

const ROUTES = [
  { pattern: /^\/login$/, view: loginView, open: true },
  { pattern: /^\/signup$/, view: signupView, open: true },
  { pattern: /^\/forgot$/, view: forgotView, open: true },
  { pattern: /^\/capsules$/, view: capsulesView, nav: "capsules" },
  { pattern: /^\/capsules\/([A-Za-z0-9_-]+)$/, view: capsuleView, nav: "capsules" },
  { pattern: /^\/keys$/, view: keysView, nav: "keys" },
  { pattern: /^\/team$/, view: teamView, nav: "team" },
  { pattern: /^\/activity$/, view: activityView, nav: "activity" },
  { pattern: /^\/hosts$/, view: hostsView, nav: "hosts" },
  { pattern: /^\/admin\/users$/, view: adminUsersView, nav: "admin" },
];

let cleanup = null;

function hashPath() {
  return location.hash.replace(/^#/, "") || "/capsules";
}

function header(active) {
  const top = document.getElementById("top");
  const who = session.current();
  const link = (key, href, text) => h("a", { href, "aria-current": active === key ? "page" : null }, text);
  top.replaceChildren(...[
    h("a", { class: "brand", href: HOME }, "Wrenn"),
    who
      ? h("nav", { "aria-label": "Main" },
          link("capsules", "#/capsules", "Capsules"), link("keys", "#/keys", "API keys"), link("team", "#/team", "Team"),
          link("activity", "#/activity", "Activity"), link("hosts", "#/hosts", "Hosts"),
          who.is_admin ? link("admin", "#/admin/users", "Admin") : null)
      : h("nav"),
    who ? teamSwitcher(who) : null,
    who ? h("span", { class: "who" }, `${who.email} · ${who.role}`) : null,
    who ? h("button", { type: "button", id: "logout", onclick: logout }, "Log out") : null,
  ].filter(Boolean));
}

// The user's teams; choosing one switches the session to it (new cookie and CSRF token).
function teamSwitcher(who) {
  const select = h("select", { "aria-label": "Team", id: "team-switcher" },
    h("option", { value: who.team_id }, "…"));
  get("/v1/teams").then((teams) => {
    select.replaceChildren(...teams.map((t) => h("option", { value: t.id, selected: t.id === who.team_id }, t.name)));
  }, () => {});
  select.addEventListener("change", async () => {
    try {
      session.remember(await post("/v1/auth/switch-team", { team_id: select.value }));
    } catch (error) {
      alert(`Could not switch team: ${error.message}`);
    }
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  });
  return select;
}

async function logout() {
  try {
    await post("/v1/auth/logout", undefined, { quiet: true });
  } catch {
    /* an ended session is logged out already */
  }
  session.forget();
  go("#/login");
}

setUnauthorizedHandler(toLogin);

async function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById("main");
  // The email links' pages: the same document under their own paths.
  const linkView = { "/activate": activateView, "/reset-password": resetView }[location.pathname];
  if (linkView) {
    header(null);
    main.replaceChildren();
    cleanup = (await linkView(main)) || null;
    return;
  }
  const path = hashPath();
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route) {
    header(null);
    main.replaceChildren(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: HOME }, "Back to capsules")));
    return;
  }
  // Without a remembered session there is no team to show; an expired cookie answers 401 later.
  if (!route.open && !session.current()) return toLogin();
  header(route.nav);
  const params = path.match(route.pattern).slice(1);
  main.replaceChildren();
  cleanup = (await route.view(main, ...params)) || null;
  // Screen readers and Tab start at the new content, unless the view focused a field of its own.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", render);
render();
