// The signed-in user and their session's team, as the last SessionResponse said (login, activate,
// switch-team). The cookie is the truth; this only remembers what the API answered with it.
const KEY = "wrenn.session";

export function current() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function remember(sessionResponse) {
  localStorage.setItem(KEY, JSON.stringify(sessionResponse));
}

export function forget() {
  localStorage.removeItem(KEY);
}
