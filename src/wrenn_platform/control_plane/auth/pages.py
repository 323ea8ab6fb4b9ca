"""The page the password-reset link opens (`/reset-password`); `/activate` is the console's.

Each is a static form that POSTs the token from its own URL to the JSON API; the token never
leaves the browser otherwise. A deployment with its own SPA points `public_url` at it instead.
"""

from __future__ import annotations

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Wrenn - {title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">
<h1>{title}</h1>
<form id="f">{fields}<button type="submit">{button}</button></form>
<p id="out" role="status"></p>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
document.getElementById("f").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const form = Object.fromEntries(new FormData(event.target));
  const response = await fetch("{endpoint}", {{method: "POST", credentials: "same-origin",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{...form, token}})}});
  const out = document.getElementById("out");
  if (response.ok) {{ out.textContent = "{done}"; return; }}
  const body = await response.json().catch(() => ({{}}));
  out.textContent = (body.error && body.error.message) || ("failed: " + response.status);
}});
</script></body></html>
"""

RESET_PAGE = _PAGE.format(
    title="Choose a new password",
    fields='<p><label>New password <input name="new_password" type="password" minlength="8" required '
    'autocomplete="new-password"></label></p>',
    button="Set password", endpoint="/v1/me/password/reset/confirm",
    done="Your password is changed; sign in with it.",
)

# The token is in the page's URL: keep it out of Referer headers and out of frames.
HEADERS = {"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
