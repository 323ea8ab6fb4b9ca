// Moving between views; main.js renders on every `hashchange`.
import * as session from "./session.js";

export const HOME = "#/capsules";
const AFTER_LOGIN = "wrenn.after-login";

export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

// The session ended or never was: log in, then come back to where the user was.
export function toLogin() {
  session.forget();
  const back = location.hash && !location.hash.startsWith("#/login") ? location.hash : HOME;
  sessionStorage.setItem(AFTER_LOGIN, back);
  go("#/login");
}

export function afterLogin() {
  const back = sessionStorage.getItem(AFTER_LOGIN) || HOME;
  sessionStorage.removeItem(AFTER_LOGIN);
  go(back);
}
